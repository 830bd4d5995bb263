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
from workbench import keys as K

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
        "entropy": _step_overlay(store, runs, K.ENTROPY, "Policy entropy", "nats/token", K.EVAL_MEAN_ENTROPY,
                                 max_points),
        "pass1": _step_overlay(store, runs, K.PASS1, "pass@1 (lines: training groups; diamonds: held-out eval)",
                               "pass@1", K.EVAL_PASS1, max_points),
    }
    # final Pass@k: each run's last evaluation; one dashed base curve per evaluation protocol
    data, all_ks, bases_drawn = [], set(), set()
    protocols = {rid: protocol(store, rid) for rid in runs}
    for i, rid in enumerate(runs):
        evs = eval_points(store, rid, "eval")
        base = [e for e in evs if e["label"] == "base"]
        policy = [e for e in evs if e["label"] != "base"]
        proto = protocols[rid]
        if base and proto not in bases_drawn:
            bases_drawn.add(proto)
            ks = _ks(base[0]["summary"])
            all_ks.update(ks)
            data.append(go.Scatter(x=ks, y=[finite(base[0]["summary"][K.eval_pass(k)]) for k in ks],
                                   name=f"base ({protocol_label(proto)})", mode="lines",
                                   line={"color": style.BASE_COLOR, "dash": ["dash", "dot", "dashdot"][
                                       (len(bases_drawn) - 1) % 3], "width": 2}))
        if policy:
            e = policy[-1]
            ks = _ks(e["summary"])
            all_ks.update(ks)
            data.append(go.Scatter(x=ks, y=[finite(e["summary"][K.eval_pass(k)]) for k in ks],
                                   name=f"{rid} @ step {e['step']}", mode="lines+markers",
                                   line={"color": style.color(i), "width": 2}))
    title = "Final Pass@k (held-out eval)"
    if len(set(protocols.values())) > 1:
        title += " — ⚠️ runs measured with different protocols: compare each with its own base curve"
    lay = style.layout(title, xaxis="k (samples)", yaxis="pass@k", hovermode="closest")
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


def protocol(store: Any, run_id: str) -> tuple:
    """A run's evaluation protocol: (model, task, held-out problems, n, temperature, sampling
    seed, generation limit). Figures of runs with different protocols are not comparable."""
    cfg = store.get_run(run_id).get("config") or {}
    ev, res = cfg.get("eval") or {}, cfg.get("resolved") or {}
    problems = (res.get("num_eval_problems") or {}).get("eval", ev.get("max_problems") or "all")
    return ((cfg.get("model") or {}).get("name_or_path"), (cfg.get("task") or {}).get("name"), problems,
            ev.get("n"), ev.get("temperature"), ev.get("seed"), res.get("max_new_tokens"))


def protocol_label(proto: tuple) -> str:
    model, task, problems, n, temp, seed, _ = proto
    return f"{model}, {task}: {problems} problems × n = {n}" + (f", T = {temp}" if temp not in (None, 1.0) else "")


def protocol_rows(store: Any, run_ids: list[str]) -> list[list[Any]]:
    """One row per run: its evaluation protocol, for the Compare tab's table."""
    rows = []
    for rid in dict.fromkeys(run_ids or []):
        if _has_run(store, rid):
            model, task, problems, n, temp, seed, max_new = protocol(store, rid)
            rows.append([rid, model, task, problems, n, temp, seed, max_new])
    return rows


PROTOCOL_COLUMNS = ["run", "model", "task", "held-out problems", "n", "temperature", "eval seed", "max new tokens"]


def metric_overlay(store: Any, run_ids: list[str], key: str | None, smoothing: float = 0.0,
                   max_points: int = 600) -> go.Figure:
    """Any step scalar of the chosen runs on one step axis (smoothing: EMA weight, raw faint)."""
    from ui.metrics_view import ema

    runs = [r for r in dict.fromkeys(run_ids or []) if _has_run(store, r)]
    if not runs or not key:
        return style.empty_figure("Metric", "pick runs and a metric")
    data = []
    for i, rid in enumerate(runs):
        xs, ys = downsample(store.scalars(rid, keys=[key])[key], max_points)
        col = style.color(i)
        if smoothing:
            data.append(go.Scatter(x=xs, y=ys, mode="lines", opacity=0.25, line={"color": col, "width": 1},
                                   showlegend=False, hoverinfo="skip", legendgroup=rid))
            ys = ema(ys, smoothing)
        data.append(go.Scatter(x=xs, y=ys, name=_label(store, rid), mode="lines", legendgroup=rid,
                               line={"color": col, "width": 1.6}))
    shapes, notes = _switch_marks(store, runs)
    lay = style.layout(key + (f" (smoothing {smoothing:.2f})" if smoothing else ""), yaxis=key)
    lay["shapes"], lay["annotations"] = shapes, notes
    return go.Figure(data=data, layout=lay)


def metric_choices(store: Any, run_ids: list[str]) -> list[str]:
    """Step scalars logged by every chosen run (or by any, when they share none)."""
    sets = [set(store.scalar_keys(r)) for r in dict.fromkeys(run_ids or []) if _has_run(store, r)]
    if not sets:
        return []
    common = set.intersection(*sets)
    return sorted(common or set.union(*sets))


# ---------------------------------------------------------------------- experiments (strategies × seeds)
#: The table's figures, by the labels of ``workbench.experiments.analysis.FIGURES`` ({k} = the chosen k).
EXPERIMENT_FIGURES = ("pass@1", "pass@{k}", "Δ pass@{k} vs base", "boundary gained", "boundary lost", "collapse index",
                      "over-sharpened share")
#: The curves shown, by (source, key, label) of ``analysis.CURVES``.
EXPERIMENT_CURVES = ("held-out pass@1", "held-out pass@{k}", "collapse index", "policy entropy (training samples)")


def _experiment_store(store: Any):
    from workbench.store._experiments import ExperimentStore

    return store if hasattr(store, "list_experiments") else ExperimentStore(store.root)


def experiment_choices(store: Any) -> list[str]:
    """Names of the experiments in the store, newest first."""
    try:
        return [e["exp_id"] for e in _experiment_store(store).list_experiments()]
    except Exception:  # noqa: BLE001 - an unreadable store shows no experiments
        return []


def experiment_cells(store: Any, exp_id: str | None) -> list[str]:
    """Cell labels of an experiment (the baseline choices), in plan order."""
    from workbench.experiments import analysis as an

    if not exp_id or exp_id not in experiment_choices(store):
        return []
    return [c.label for c in an.load(_experiment_store(store), exp_id).cells]


def experiment_view(store: Any, exp_id: str | None, k: int = 8, baseline: str | None = None,
                    split: str = "eval") -> dict[str, Any]:
    """Everything the Compare tab shows for an experiment: ``figures`` (curves as mean lines with
    95% bands over seeds), ``values`` and ``effects`` tables (headers, rows: "mean [lo, hi] (n=…)"
    per figure; effects are paired by seed, cell − baseline) and a ``summary`` line."""
    from workbench import stats
    from workbench.experiments import analysis as an
    from workbench.experiments.figures import band_figure

    figs_out: dict[str, go.Figure] = {}
    if not exp_id or exp_id not in experiment_choices(store):
        msg = "pick an experiment (run one with `workbench sweep`)"
        for label in EXPERIMENT_CURVES:
            figs_out[label.format(k=k)] = style.empty_figure(label.format(k=k), msg)
        return {"figures": figs_out, "values": (["cell"], []), "effects": (["cell"], []), "summary": msg,
                "baseline": None, "cells": []}
    k = max(1, int(k or 8))
    es = _experiment_store(store)
    exp = an.load(es, exp_id)
    base_cell = exp.cell(baseline) if baseline else exp.cell(_default_baseline(exp))
    curves = {label.format(k=k): (src, key.format(k=k)) for src, key, label in an.CURVES}
    for label in EXPERIMENT_CURVES:
        label = label.format(k=k)
        src, key = curves[label]
        bands = an.cell_bands(es, exp, src, key, split if src == "eval" else "eval")
        figs_out[label] = band_figure({exp.cell(ck).label: b for ck, b in bands.items()},
                                      f"{label} (mean, 95% band over seeds)", yaxis=label,
                                      xaxis="step (0 = base)" if src == "eval" else "training step")
    wanted = [f.format(k=k) for f in EXPERIMENT_FIGURES]
    rows = an.figure_table(es, exp, split, k, base_cell.key)
    headers = ["cell", "seeds", *wanted]
    values = [[r.cell.label, max((e.n for e in r.values.values()), default=0),
               *[r.values[w].fmt() for w in wanted]] for r in rows]
    effects = [[f"{r.cell.label} − {base_cell.label}", *[r.effects[w].fmt() if r.effects[w] else "—" for w in wanted]]
               for r in rows if r.cell.key != base_cell.key]
    counts = ", ".join(f"{v} {s}" for s, v in sorted(an.status_counts(exp).items()))
    n_seeds = len(exp.seeds)
    summary = (f"**{exp_id}**: {len(exp.cells)} cells × {n_seeds} seeds, {exp.spec.get('steps')} steps per run "
               f"({counts}). Figures: mean [95% bootstrap interval] over seeds, n = seeds with a value"
               + ("; with fewer than 3 seeds the seeds' values are listed instead." if n_seeds < stats.MIN_BAND else ".")
               + f" Effects: per-seed difference against **{base_cell.label}**, then averaged.")
    return {"figures": figs_out, "values": (headers, values), "effects": (["effect", *wanted], effects),
            "summary": summary, "baseline": base_cell.label, "cells": [c.label for c in exp.cells]}


def _default_baseline(exp: Any) -> str:
    for c in exp.cells:
        if c.cell.get("strategy") == "grpo":
            return c.key
    return exp.cells[0].key
