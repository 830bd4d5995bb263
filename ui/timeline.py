"""The strategy timeline and the small data helpers every step-axis figure shares.

A ``strategy`` event written at step s means that strategy is in force from step s+1 on
(the first one is written at step 0). A span therefore covers the steps s+1 .. e and is
drawn from x = s + 0.5 to e + 0.5, so an evaluation at step s (taken before the switch)
stays inside the old strategy's span and the switch line sits between s and s+1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ui.style import span_color


@dataclass(frozen=True)
class Span:
    name: str          # the strategy (preset or composition) in force
    start: int         # the event's step: in force from step start + 1
    end: int           # the last step it was in force (or the run's last step so far)
    params: dict       # the event payload's params and loss overrides (for hover text)

    @property
    def x0(self) -> float:
        return 0.0 if self.start <= 0 else self.start + 0.5

    @property
    def x1(self) -> float:
        return self.end + 0.5


def strategy_spans(store: Any, run_id: str, last_step: int | None = None) -> list[Span]:
    """The run's strategy spans, in order, from its ``strategy`` events.

    Several switches at the same step (e.g. while paused) leave only the last one; the
    final span reaches ``last_step`` (default: the run's last written step, at least 0).
    """
    events = store.events(run_id, kind="strategy")
    if last_step is None:
        last_step = store.last_step(run_id)
    return spans_from_events(events, last_step)


def spans_from_events(events: list[dict], last_step: int) -> list[Span]:
    by_step: dict[int, dict] = {}
    for ev in events:  # in id order: a later switch at the same step wins
        by_step[int(ev["step"])] = ev.get("payload") or {}
    starts = sorted(by_step)
    spans = []
    for i, s in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else max(last_step, s)
        p = by_step[s]
        name = str(p.get("name") or "+".join(p.get("pieces") or []) or "?")
        spans.append(Span(name, s, end, {"params": p.get("params") or {}, "loss": p.get("loss") or {}}))
    return spans


def span_shapes(spans: list[Span], labels: bool = True, yref: str = "paper") -> tuple[list[dict], list[dict]]:
    """(shapes, annotations) shading each span with its name; a dashed line at each switch."""
    shapes, notes = [], []
    colors: dict[str, str] = {}
    for i, sp in enumerate(spans):
        color = colors.setdefault(sp.name, span_color(len(colors)))
        if sp.x1 > sp.x0:
            shapes.append({"type": "rect", "xref": "x", "yref": yref, "x0": sp.x0, "x1": sp.x1, "y0": 0, "y1": 1,
                           "fillcolor": color, "opacity": 0.13, "line": {"width": 0}, "layer": "below"})
        if i > 0:
            shapes.append({"type": "line", "xref": "x", "yref": yref, "x0": sp.x0, "x1": sp.x0, "y0": 0, "y1": 1,
                           "line": {"color": "#555", "width": 1, "dash": "dash"}, "layer": "above"})
        if labels:
            notes.append({"x": sp.x0, "y": 1.0, "xref": "x", "yref": "paper", "xanchor": "left", "yanchor": "bottom",
                          "text": sp.name if i == 0 else f"→ {sp.name} (step {sp.start})", "showarrow": False,
                          "font": {"size": 10, "color": "#333"}, "bgcolor": color, "opacity": 0.9})
    return shapes, notes


def downsample(points: list[tuple[int, float]], max_points: int = 600) -> tuple[list[int], list[float]]:
    """(xs, ys) of at most ~max_points, keeping each bucket's min and max (spikes survive).

    NaN values are kept as gaps (None), so a plotted line breaks where a metric is undefined.
    """
    pts = [(s, None if v is None or (isinstance(v, float) and math.isnan(v)) else v) for s, v in points]
    if len(pts) <= max_points:
        return [s for s, _ in pts], [v for _, v in pts]
    n_buckets = max(1, max_points // 2)
    size = len(pts) / n_buckets
    xs: list[int] = []
    ys: list[float | None] = []
    for b in range(n_buckets):
        chunk = pts[int(b * size): int((b + 1) * size)]
        vals = [(s, v) for s, v in chunk if v is not None]
        if not vals:
            if chunk:
                xs.append(chunk[0][0])
                ys.append(None)
            continue
        lo = min(vals, key=lambda p: p[1])
        hi = max(vals, key=lambda p: p[1])
        for s, v in sorted({lo, hi}):
            xs.append(s)
            ys.append(v)
    return xs, ys


def finite(v: Any) -> float | None:
    """A plottable float, or None for missing / NaN / inf values."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
