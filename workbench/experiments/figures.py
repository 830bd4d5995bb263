"""Plotly figures of an experiment: curves as a mean line per cell with a 95% band over
seeds, and intervals of final figures (used by the report and the dashboard's Compare).

Where fewer than 3 seeds have a value the band is not drawn: the seeds' own values are
shown as points instead (two points say more honestly how little is known).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from workbench import stats

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22")
BASE_COLOR = "#555555"


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _clean(v: float) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def layout(title: str, xaxis: str = "step", yaxis: str = "", **kw) -> dict:
    base = {"title": {"text": title, "font": {"size": 14}}, "template": "plotly_white", "height": 340,
            "margin": {"l": 55, "r": 15, "t": 45, "b": 45}, "hovermode": "x unified",
            "xaxis": {"title": {"text": xaxis}}, "yaxis": {"title": {"text": yaxis}},
            "legend": {"orientation": "h", "y": -0.22, "font": {"size": 11}}}
    base.update(kw)
    return base


def band_figure(bands: Mapping[str, stats.Band], title: str, yaxis: str = "", xaxis: str = "step") -> go.Figure:
    """One mean line per cell (label -> Band) with its 95% band where n >= 3, else the seeds' points."""
    data = []
    for i, (label, band) in enumerate(bands.items()):
        col = color(i)
        if not band.x:
            continue
        ok = [n >= stats.MIN_BAND for n in band.n]
        if any(ok):
            hi = [_clean(h) if k else None for h, k in zip(band.hi, ok)]
            lo = [_clean(v) if k else None for v, k in zip(band.lo, ok)]
            data.append(go.Scatter(x=band.x, y=hi, mode="lines", line={"width": 0}, showlegend=False,
                                   legendgroup=label, hoverinfo="skip", name=f"{label} upper"))
            data.append(go.Scatter(x=band.x, y=lo, mode="lines", line={"width": 0}, fill="tonexty",
                                   fillcolor=_rgba(col, 0.18), showlegend=False, legendgroup=label,
                                   hoverinfo="skip", name=f"{label} lower"))
        if not all(ok):  # some x with < 3 seeds: the seeds' values as points
            for seed, pts in band.points.items():
                shown = {x for x, k in zip(band.x, ok) if not k}
                xs = [x for x, v in pts if x in shown and v is not None and math.isfinite(v)]
                ys = [v for x, v in pts if x in shown and v is not None and math.isfinite(v)]
                if xs:
                    data.append(go.Scatter(x=xs, y=ys, mode="markers", legendgroup=label, showlegend=False,
                                           marker={"color": col, "size": 5, "opacity": 0.6, "symbol": "circle-open"},
                                           name=f"{label} seed {seed}"))
        n_txt = f"n={min(band.n)}" if min(band.n) == max(band.n) else f"n={min(band.n)}–{max(band.n)}"
        data.append(go.Scatter(x=band.x, y=[_clean(m) for m in band.mean], mode="lines+markers" if len(band.x) < 15
                               else "lines", name=f"{label} ({n_txt})", legendgroup=label,
                               line={"color": col, "width": 2}, marker={"size": 5},
                               customdata=list(zip(band.n, [_clean(v) for v in band.lo], [_clean(v) for v in band.hi])),
                               hovertemplate="%{y:.3f} [%{customdata[1]:.3f}, %{customdata[2]:.3f}] "
                                             "n=%{customdata[0]}<extra>" + label + "</extra>"))
    lay = layout(title, xaxis=xaxis, yaxis=yaxis)
    xs = sorted({x for b in bands.values() for x in b.x})
    if 0 < len(xs) <= 12:  # a few evaluation points: tick exactly there
        lay["xaxis"] = {**lay["xaxis"], "tickmode": "array", "tickvals": xs}
    fig = go.Figure(data=data, layout=lay)
    if not data:
        fig.add_annotation(text="no data yet", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return fig


def interval_figure(rows: Sequence[tuple[str, stats.Estimate]], title: str, zero_line: bool = True,
                    xaxis: str = "") -> go.Figure:
    """Horizontal intervals (label, estimate): the mean with its 95% interval (n >= 3) or the seeds' points."""
    data = []
    labels = [r[0] for r in rows][::-1]
    for i, (label, e) in enumerate(rows[::-1]):
        col = color(len(rows) - 1 - i)
        if e.band:
            data.append(go.Scatter(x=[e.mean], y=[label], mode="markers", marker={"color": col, "size": 10},
                                   error_x={"type": "data", "symmetric": False, "array": [e.hi - e.mean],
                                            "arrayminus": [e.mean - e.lo], "color": col, "thickness": 2},
                                   name=label, showlegend=False,
                                   hovertemplate=f"{e.fmt()}<extra>{label}</extra>"))
        else:
            data.append(go.Scatter(x=list(e.values), y=[label] * len(e.values), mode="markers",
                                   marker={"color": col, "size": 8, "symbol": "circle-open"}, showlegend=False,
                                   name=label, hovertemplate=f"{e.fmt()}<extra>{label}</extra>"))
    lay = layout(title, xaxis=xaxis, yaxis="", hovermode="closest", height=max(220, 60 + 34 * len(rows)))
    lay["yaxis"] = {"categoryorder": "array", "categoryarray": labels}
    if zero_line:
        lay["shapes"] = [{"type": "line", "x0": 0, "x1": 0, "y0": 0, "y1": 1, "yref": "paper",
                          "line": {"color": BASE_COLOR, "dash": "dot", "width": 1}}]
    return go.Figure(data=data, layout=lay)
