"""Colours and the shared plotly layout.

Figures use template "none" plus the few layout settings below: plotly's named templates
are validated on every figure (~25 ms each), which the live view cannot afford at every
poll (see benchmarks/dashboard_refresh.py).
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

#: Line colours (Okabe-Ito, colour-blind safe), in the order series are drawn.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]

#: Fill colours of strategy spans, in order of first appearance in a run.
SPAN_COLORS = ["#9ecae1", "#fdae6b", "#a1d99b", "#bcbddc", "#fdd0a2", "#c7e9c0", "#fcbba1", "#d9d9d9"]

BASE_COLOR = "#444444"   # the base model's reference curves
GAINED, LOST, KEPT, NEVER = "#009E73", "#D55E00", "#0072B2", "#999999"

_AXIS = {"gridcolor": "#e8e8e8", "zeroline": False, "linecolor": "#999", "showline": True, "ticks": "outside",
         "tickcolor": "#999", "automargin": True}


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def span_color(i: int) -> str:
    return SPAN_COLORS[i % len(SPAN_COLORS)]


def layout(title: str, xaxis: str = "step", yaxis: str = "", height: int = 320, **extra: Any) -> dict[str, Any]:
    """The common layout: white background, light grid, legend on top, room for span labels."""
    out: dict[str, Any] = {
        "template": "none",
        "title": {"text": title, "x": 0.01, "xanchor": "left", "y": 0.98, "yanchor": "top", "font": {"size": 14}},
        "height": height,
        "margin": {"l": 60, "r": 20, "t": 64, "b": 44},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "font": {"family": "Inter, Helvetica, Arial, sans-serif", "size": 12, "color": "#222"},
        "legend": {"orientation": "h", "x": 1.0, "xanchor": "right", "y": 1.16, "yanchor": "bottom",
                   "font": {"size": 11}, "bgcolor": "rgba(255,255,255,0)"},
        "hovermode": "x unified",
        "xaxis": {**_AXIS, "title": {"text": xaxis}},
        "yaxis": {**_AXIS, "title": {"text": yaxis}},
        "uirevision": "keep",  # zoom and hidden traces survive a redraw
    }
    out.update(extra)
    return out


def empty_figure(title: str, message: str, height: int = 320) -> go.Figure:
    """A figure with no data and a centred message (no run selected, no evaluation yet...)."""
    lay = layout(title, height=height)
    lay["xaxis"] = {"visible": False}
    lay["yaxis"] = {"visible": False}
    lay["annotations"] = [{"text": message, "x": 0.5, "y": 0.5, "xref": "paper", "yref": "paper",
                           "showarrow": False, "font": {"size": 13, "color": "#777"}}]
    return go.Figure(layout=lay)
