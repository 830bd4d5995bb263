"""The "All metrics" view: every scalar a run logged, grouped by prefix, searchable, with
the plot controls users of experiment trackers expect (smoothing, log scale, x axis).

Pure functions of a store (the read API of ``workbench.store.RunStore``) -> data or plotly
figures; no Gradio here. Step scalars (``train/``, ``perf/``, ``time/``, ...) are drawn
per step; evaluation figures (``eval/``, ``collapse/``, ``boundary/``, ``sharpen/``, and
the "seen" split's as ``seen/...``) at their evaluation points.
"""

from __future__ import annotations

import bisect
import math
import re
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui import style
from ui.timeline import finite, strategy_spans
from ui.views import _has_run, eval_points
from workbench import keys as K

#: Prefix groups, in display order (anything else goes to "other").
GROUPS = ("train", "perf", "time", "eval", "collapse", "boundary", "sharpen", "seen")
X_AXES = {"step": "step", "wall": "wall time (s)", "tokens": "tokens seen"}
MAX_PANELS = 48
COLUMNS = 3


def group_of(key: str) -> str:
    head = key.split("/", 1)[0]
    return head if head in GROUPS else "other"


def metric_catalog(store: Any, run_id: str | None) -> dict[str, list[str]]:
    """{group: sorted keys} of every step scalar and evaluation figure the run has."""
    if not _has_run(store, run_id):
        return {}
    keys = set(store.scalar_keys(run_id))
    for split in ("eval", "seen"):
        for e in eval_points(store, run_id, split):
            prefix = "" if split == "eval" else "seen/"
            keys |= {prefix + k for k in e["summary"]}
    out: dict[str, list[str]] = {}
    for k in sorted(keys):
        out.setdefault(group_of(k), []).append(k)
    return {g: out[g] for g in (*GROUPS, "other") if g in out}


def select(catalog: dict[str, list[str]], query: str = "", groups: list[str] | None = None) -> list[str]:
    """Keys whose name matches every word of ``query`` (case-insensitive), in the chosen groups."""
    words = [w for w in re.split(r"\s+", (query or "").strip().lower()) if w]
    chosen = set(groups) if groups else set(catalog)
    return [k for g, ks in catalog.items() if g in chosen for k in ks if all(w in k.lower() for w in words)]


def ema(values: list[float | None], weight: float) -> list[float | None]:
    """TensorBoard-style exponential moving average with debiasing: s_t = w s_{t-1} + (1-w) x_t,
    divided by 1 - w^t so the first points are not pulled towards 0. Gaps (None) stay gaps
    and do not move the average. ``weight`` 0 returns the values unchanged."""
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {weight}")
    if weight == 0:
        return list(values)
    out: list[float | None] = []
    acc, n = 0.0, 0
    for v in values:
        if v is None:
            out.append(None)
            continue
        n += 1
        acc = weight * acc + (1 - weight) * v
        out.append(acc / (1 - weight ** n))
    return out


def x_values(store: Any, run_id: str, steps: list[int], axis: str = "step") -> list[float | None]:
    """The chosen x of each step: the step, seconds since the run's first record, or the
    number of training tokens seen up to and including that step (``train/num_tokens``)."""
    if axis == "step":
        return [float(s) for s in steps]
    if axis == "wall":
        times = store.step_times(run_id)
        t0 = store.get_run(run_id)["created_at"]
        return [None if s not in times else times[s] - t0 for s in steps]
    if axis == "tokens":
        at, cum, total = [], [], 0.0
        for s, v in store.scalars(run_id, keys=[K.NUM_TOKENS])[K.NUM_TOKENS]:
            total += v if v is not None and math.isfinite(v) else 0.0
            at.append(s)
            cum.append(total)
        # an evaluation after step s has seen the tokens of steps 1..s (the base model: 0)
        return [cum[i - 1] if (i := bisect.bisect_right(at, s)) else 0.0 for s in steps]
    raise ValueError(f"x axis must be one of {', '.join(X_AXES)}, got {axis!r}")


def series(store: Any, run_id: str, key: str) -> tuple[list[int], list[float | None], bool]:
    """(steps, values, is_evaluation) of one metric."""
    split, name = ("seen", key[len("seen/"):]) if key.startswith("seen/") else ("eval", key)
    if group_of(name) in ("eval", "collapse", "boundary", "sharpen"):
        evs = [e for e in eval_points(store, run_id, split) if name in e["summary"]]
        return [int(e["step"]) for e in evs], [finite(e["summary"][name]) for e in evs], True
    pts = store.scalars(run_id, keys=[key])[key]
    return [s for s, _ in pts], [finite(v) for _, v in pts], False


def all_metrics_figure(store: Any, run_id: str | None, query: str = "", groups: list[str] | None = None,
                       smoothing: float = 0.0, log_y: bool = False, x_axis: str = "step") -> go.Figure:
    """One small panel per matching metric (at most MAX_PANELS), three to a row. With
    smoothing, the raw series is drawn faint under its moving average."""
    title = "All metrics"
    if not _has_run(store, run_id):
        return style.empty_figure(title, "no run selected")
    keys = select(metric_catalog(store, run_id), query, groups)
    if not keys:
        return style.empty_figure(title, f"no metric matches {query!r}" if query else "no metric logged yet")
    shown = keys[:MAX_PANELS]
    rows = math.ceil(len(shown) / COLUMNS)
    more = f" — showing {len(shown)} of {len(keys)}: narrow the search" if len(keys) > len(shown) else ""
    fig = make_subplots(rows=rows, cols=COLUMNS, subplot_titles=shown, vertical_spacing=min(0.3 / rows, 0.08),
                        horizontal_spacing=0.07)
    spans = strategy_spans(store, run_id) if x_axis == "step" else []
    for i, key in enumerate(shown):
        r, c = divmod(i, COLUMNS)
        steps, ys, is_eval = series(store, run_id, key)
        xs = x_values(store, run_id, steps, x_axis)
        color = style.color(GROUPS.index(group_of(key)) if group_of(key) in GROUPS else 6)
        if is_eval or smoothing == 0:
            fig.add_trace(go.Scatter(x=xs, y=ys, name=key, mode="lines+markers" if is_eval else "lines",
                                     line={"color": color, "width": 1.6}, marker={"size": 5}, showlegend=False,
                                     hovertemplate=f"{key}<br>%{{x}}: %{{y:.4g}}<extra></extra>"),
                          row=r + 1, col=c + 1)
        else:
            fig.add_trace(go.Scatter(x=xs, y=ys, name=f"{key} (raw)", mode="lines", opacity=0.25,
                                     line={"color": color, "width": 1}, showlegend=False, hoverinfo="skip"),
                          row=r + 1, col=c + 1)
            fig.add_trace(go.Scatter(x=xs, y=ema(ys, smoothing), name=key, mode="lines",
                                     line={"color": color, "width": 1.8}, showlegend=False,
                                     hovertemplate=f"{key} (smoothed)<br>%{{x}}: %{{y:.4g}}<extra></extra>"),
                          row=r + 1, col=c + 1)
        for sp in spans[1:]:  # strategy switches as dashed lines in every step panel
            fig.add_vline(x=sp.x0, line={"color": "#555", "width": 1, "dash": "dash"}, row=r + 1, col=c + 1)
    fig.update_annotations(font_size=11)
    fig.update_xaxes(gridcolor="#e8e8e8", showline=True, linecolor="#999", automargin=True)
    fig.update_yaxes(gridcolor="#e8e8e8", showline=True, linecolor="#999", automargin=True,
                     type="log" if log_y else "linear")
    fig.update_layout(template="none", height=max(320, 230 * rows + 80), margin={"l": 50, "r": 20, "t": 80, "b": 40},
                      title={"text": f"{title} — x: {X_AXES.get(x_axis, x_axis)}"
                                     + (f", smoothing {smoothing:.2f}" if smoothing else "") + more,
                             "x": 0.01, "font": {"size": 14}},
                      paper_bgcolor="white", plot_bgcolor="white", uirevision="keep",
                      font={"family": "Inter, Helvetica, Arial, sans-serif", "size": 11, "color": "#222"})
    return fig
