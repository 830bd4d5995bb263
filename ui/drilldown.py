"""One problem across the evaluation points: its mode distribution over time, the
log-ratio log π_now − log π_base of each banked base-model correct mode, and samples.

Pure: a store (the read API of RunStore) -> plotly figures and table rows.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from ui import style
from ui.timeline import finite, span_shapes, strategy_spans
from ui.views import _has_run, eval_points

#: Distinct colours for a problem's modes (the most frequent first); the rest are "other".
MODE_COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
               "#9c755f", "#bab0ac"]
OTHER_COLOR = "#d0d0d0"
SAMPLE_COLUMNS = ["step", "correct", "mode", "reward", "completion"]


def problem_ids(store: Any, run_id: str | None, split: str = "eval") -> list[str]:
    """The problems of a split's evaluations (base model's order)."""
    if not _has_run(store, run_id):
        return []
    evs = eval_points(store, run_id, split)
    if not evs:
        return []
    return [r["problem_id"] for r in store.eval_problems(run_id, evs[0]["eval_id"])]


def _rows(store: Any, run_id: str, problem_id: str, split: str) -> list[tuple[dict, dict]]:
    out = []
    for e in eval_points(store, run_id, split):
        row = next((r for r in store.eval_problems(run_id, e["eval_id"]) if r["problem_id"] == problem_id), None)
        if row is not None:
            out.append((e, row))
    return out


def _bar_width(xs: list[int]) -> float:
    gaps = [b - a for a, b in zip(xs, xs[1:]) if b > a]
    return 0.7 * (min(gaps) if gaps else 1.0)


def mode_figure(store: Any, run_id: str, problem_id: str, split: str = "eval", top: int = 10) -> go.Figure:
    """Stacked bars per evaluation point: the share of the n samples in each correct mode
    (the stack's height is the problem's pass@1 there)."""
    title = f"{problem_id}: correct modes over time (share of the n samples)"
    pts = _rows(store, run_id, problem_id, split)
    if not pts:
        return style.empty_figure(title, f"problem {problem_id!r} has no evaluation rows in the {split} split")
    totals: dict[str, int] = {}
    for _, r in pts:
        for m, c in (r.get("mode_counts") or {}).items():
            totals[m] = totals.get(m, 0) + int(c)
    modes = sorted(totals, key=lambda m: (-totals[m], m))
    shown, rest = modes[:top], set(modes[top:])
    xs = [int(e["step"]) for e, _ in pts]
    width = _bar_width(xs)
    data = []
    for i, m in enumerate(shown):
        ys = [(r.get("mode_counts") or {}).get(m, 0) / max(r["n"], 1) for _, r in pts]
        data.append(go.Bar(x=xs, y=ys, name=m, marker={"color": MODE_COLORS[i % len(MODE_COLORS)]}, width=width,
                           hovertemplate=f"mode {m}<br>step %{{x}}: %{{y:.3f}}<extra></extra>"))
    if rest:
        ys = [sum(c for k, c in (r.get("mode_counts") or {}).items() if k in rest) / max(r["n"], 1) for _, r in pts]
        data.append(go.Bar(x=xs, y=ys, name=f"{len(rest)} other modes", marker={"color": OTHER_COLOR}, width=width))
    lay = style.layout(title, xaxis="evaluation step (base = 0)", yaxis="share of samples", barmode="stack",
                       hovermode="closest")
    lay["yaxis"] = {**lay["yaxis"], "range": [0, 1]}
    shapes, notes = span_shapes(strategy_spans(store, run_id, last_step=max(xs)))
    lay["shapes"], lay["annotations"] = shapes, notes
    return go.Figure(data=data, layout=lay)


def bank_figure(store: Any, run_id: str, problem_id: str, split: str = "eval") -> go.Figure:
    """One line per banked base-model correct mode: log π_now(o|q) − log π_base(o|q) over the
    evaluation points (0 at the base model). Below 0: that correct solution was sharpened away."""
    title = f"{problem_id}: banked base modes, log π_now − log π_base"
    bank = store.bank(run_id, problem_id=f"{split}:{problem_id}")
    if not bank:
        return style.empty_figure(title, "nothing banked: the base model solved no sample of this problem")
    pts = [(e, r) for e, r in _rows(store, run_id, problem_id, split) if e["label"] != "base"]
    data = []
    for j, b in enumerate(bank):
        xs, ys = [0], [0.0]
        for e, r in pts:
            lr = r.get("bank_logratios") or []
            if j < len(lr):
                xs.append(int(e["step"]))
                ys.append(finite(lr[j]))
        data.append(go.Scatter(x=xs, y=ys, name=str(b["mode_key"]), mode="lines+markers",
                               line={"color": MODE_COLORS[j % len(MODE_COLORS)], "width": 1.6},
                               hovertemplate=f"mode {b['mode_key']}<br>step %{{x}}: %{{y:.2f}}<extra></extra>"))
    lay = style.layout(title, xaxis="evaluation step", yaxis="log-ratio (nats)", hovermode="closest")
    last = max([int(e["step"]) for e, _ in pts], default=0)
    shapes, notes = span_shapes(strategy_spans(store, run_id, last_step=last))
    shapes.append({"type": "line", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": 0, "y1": 0,
                   "line": {"color": style.BASE_COLOR, "width": 1}})
    lay["shapes"], lay["annotations"] = shapes, notes
    return go.Figure(data=data, layout=lay)


def sample_rows(store: Any, run_id: str, problem_id: str, split: str = "eval", steps: int = 3) -> list[list[Any]]:
    """Stored completions of the problem at the base model and the last ``steps`` evaluation points."""
    pts = eval_points(store, run_id, split)
    chosen = pts[:1] + pts[1:][-steps:] if pts else []
    out = []
    for e in reversed(chosen):
        for s in store.eval_samples(run_id, e["eval_id"], problem_id=problem_id):
            out.append(["base" if e["label"] == "base" else e["step"], "✓" if s["correct"] else "✗",
                        s.get("mode_key") or "", finite(s.get("reward")), s["completion"]])
    return out


def problem_summary(store: Any, run_id: str, problem_id: str, split: str = "eval") -> str:
    """A markdown line: the problem at the base model and at the last evaluation point."""
    pts = _rows(store, run_id, problem_id, split)
    if not pts:
        return f"No evaluation rows for problem `{problem_id}` ({split} split)."

    def one(e: dict, r: dict) -> str:
        what = "base model" if e["label"] == "base" else f"step {e['step']}"
        m = int(r.get("num_modes") or 0)
        text = f"{what}: c = {r['c']}/{r['n']}, {m} correct mode{'' if m == 1 else 's'}"
        eff = finite(r.get("eff_modes"))
        ci = finite(r.get("collapse_index"))
        if eff is not None:
            text += f", effective {eff:.2f}"
        if ci is not None:
            matched = r.get("collapse_m")
            text += f", collapse index {ci:.2f}" + (f" (at m = {matched} correct samples)" if matched else "")
        return text

    parts = [one(*pts[0])] + ([one(*pts[-1])] if len(pts) > 1 else [])
    return f"**{problem_id}** ({split}) — " + " → ".join(parts)


def problem_detail(store: Any, run_id: str | None, problem_id: str | None, split: str = "eval") -> dict[str, Any]:
    """Everything the drill-down shows: {"summary", "modes", "bank", "samples"}."""
    if not _has_run(store, run_id) or not problem_id:
        msg = "click a problem in the heatmap (or pick one) to see its modes over time"
        return {"summary": msg, "modes": style.empty_figure("Modes over time", msg),
                "bank": style.empty_figure("Banked base modes", msg), "samples": []}
    return {
        "summary": problem_summary(store, run_id, problem_id, split),
        "modes": mode_figure(store, run_id, problem_id, split),
        "bank": bank_figure(store, run_id, problem_id, split),
        "samples": sample_rows(store, run_id, problem_id, split),
    }
