"""Overlay two or more runs: entropy, pass@1, the final Pass@k curves, boundary counts.

Each run keeps one colour in every figure. With several runs on one step axis, shading
every run's strategy spans would be unreadable: each switch after step 0 is drawn as a
dotted line in the run's colour, labelled with the new strategy.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from ui import style
from ui.timeline import downsample, finite, strategy_spans
from ui.views import _has_run, _ks, eval_points

BOUNDARY_COUNTS = ("gained", "lost", "kept", "never")


def _label(store: Any, run_id: str) -> str:
    """The run id with its strategies in order, e.g. "run (grpo → bbg)"."""
    names = [sp.name for sp in strategy_spans(store, run_id)]
    return f"{run_id} ({' → '.join(names) if names else '?'})"


def _switch_marks(store: Any, runs: list[str]) -> tuple[list[dict], list[dict]]:
    shapes, notes = [], []
    for i, rid in enumerate(runs):
        for sp in strategy_spans(store, rid)[1:]:
            shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": sp.x0, "x1": sp.x0, "y0": 0, "y1": 1,
                           "line": {"color": style.color(i), "width": 1.5, "dash": "dot"}})
            notes.append({"x": sp.x0, "y": 1.0, "xref": "x", "yref": "paper", "yanchor": "bottom", "xanchor": "left",
                          "text": f"→ {sp.name}", "showarrow": False, "font": {"size": 10, "color": style.color(i)}})
    return shapes, notes


def _step_overlay(store: Any, runs: list[str], key: str, title: str, yaxis: str, eval_key: str | None,
                  max_points: int) -> go.Figure:
    data = []
    for i, rid in enumerate(runs):
        xs, ys = downsample(store.scalars(rid, keys=[key])[key], max_points)
        data.append(go.Scatter(x=xs, y=ys, name=_label(store, rid), mode="lines", legendgroup=rid,
                               line={"color": style.color(i), "width": 1.6}))
        if eval_key:
            evs = eval_points(store, rid, "eval")
            data.append(go.Scatter(x=[e["step"] for e in evs], y=[finite(e["summary"].get(eval_key)) for e in evs],
                                   name=f"{rid} eval", mode="markers", legendgroup=rid, showlegend=False,
                                   marker={"color": style.color(i), "size": 8, "symbol": "diamond"}))
    lay = style.layout(title, yaxis=yaxis)
    lay["shapes"], lay["annotations"] = _switch_marks(store, runs)
    return go.Figure(data=data, layout=lay)


def compare_figures(store: Any, run_ids: list[str], max_points: int = 600) -> dict[str, go.Figure]:
    """{"entropy", "pass1", "passk", "boundary"} figures overlaying the runs (unknown ids are skipped)."""
    runs = [r for r in dict.fromkeys(run_ids or []) if _has_run(store, r)]
    if not runs:
        msg = "pick two or more runs to compare"
        return {k: style.empty_figure(t, msg) for k, t in
                (("entropy", "Entropy"), ("pass1", "pass@1"), ("passk", "Final Pass@k"), ("boundary", "Boundary"))}
    out = {
        "entropy": _step_overlay(store, runs, "train/entropy", "Policy entropy", "nats/token", "eval/mean_entropy",
                                 max_points),
        "pass1": _step_overlay(store, runs, "train/pass@1", "pass@1 (lines: training groups; diamonds: held-out eval)",
                               "pass@1", "eval/pass@1", max_points),
    }
    # final Pass@k: each run's last evaluation, its base model dashed (identical for runs of one model)
    data, all_ks, bases_drawn = [], set(), set()
    for i, rid in enumerate(runs):
        evs = eval_points(store, rid, "eval")
        base = [e for e in evs if e["label"] == "base"]
        policy = [e for e in evs if e["label"] != "base"]
        cfg = store.get_run(rid).get("config") or {}
        model_key = ((cfg.get("model") or {}).get("name_or_path"), (cfg.get("task") or {}).get("name"),
                     tuple(_ks(base[0]["summary"])) if base else ())
        if base and model_key not in bases_drawn:
            bases_drawn.add(model_key)
            ks = _ks(base[0]["summary"])
            all_ks.update(ks)
            data.append(go.Scatter(x=ks, y=[finite(base[0]["summary"][f"eval/pass@{k}"]) for k in ks],
                                   name=f"base ({model_key[0]})", mode="lines",
                                   line={"color": style.BASE_COLOR, "dash": "dash", "width": 2}))
        if policy:
            e = policy[-1]
            ks = _ks(e["summary"])
            all_ks.update(ks)
            data.append(go.Scatter(x=ks, y=[finite(e["summary"][f"eval/pass@{k}"]) for k in ks],
                                   name=f"{rid} @ step {e['step']}", mode="lines+markers",
                                   line={"color": style.color(i), "width": 2}))
    lay = style.layout("Final Pass@k (held-out eval)", xaxis="k (samples)", yaxis="pass@k", hovermode="closest")
    ticks = sorted(all_ks)
    lay["xaxis"] = {**lay["xaxis"], "type": "log", "tickvals": ticks, "ticktext": [str(k) for k in ticks]}
    lay["yaxis"] = {**lay["yaxis"], "range": [0, 1.02]}
    out["passk"] = go.Figure(data=data, layout=lay)
    # boundary counts at each run's last evaluation, c >= 1 solid and c >= 2 hatched
    bars = []
    for i, rid in enumerate(runs):
        policy = [e for e in eval_points(store, rid, "eval") if e["label"] != "base"]
        s = policy[-1]["summary"] if policy else {}
        for sfx, pattern in (("", ""), ("_c2", "/")):
            bars.append(go.Bar(x=list(BOUNDARY_COUNTS), y=[finite(s.get(f"boundary/{c}{sfx}")) for c in BOUNDARY_COUNTS],
                               name=f"{rid}" + (" (c ≥ 2)" if sfx else ""), legendgroup=rid,
                               marker={"color": style.color(i), "pattern": {"shape": pattern},
                                       "opacity": 1.0 if not sfx else 0.55}))
    lay = style.layout("Boundary at the last evaluation (hatched: c ≥ 2)", xaxis="", yaxis="problems",
                       barmode="group", hovermode="closest")
    out["boundary"] = go.Figure(data=bars, layout=lay)
    return out
