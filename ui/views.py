"""Pure view functions of the live run: a store (or ``ui.live.CachedStore``) -> plotly figures.

No Gradio here. Every figure whose x axis is the training step shades the strategy
timeline (``ui.timeline``). Evaluation points are plotted at the step they were taken
after (the base model at step 0). ``store`` only needs the read API of
``workbench.store.RunStore``: scalars, events, evaluations, eval_problems, last_step.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from ui import style
from ui.timeline import downsample, finite, span_shapes, strategy_spans
from workbench import keys as K

# --------------------------------------------------------------------- step figures
REWARD_KEYS = (K.REWARD_MEAN, K.PASS1)
ENTROPY_KEYS = (K.ENTROPY, K.LOGP_ADV_COV)
CLIP_KEYS = K.CLIP_KEYS
KL_KEYS = K.KL_KEYS
GROUP_KEYS = K.GROUP_KEYS
STEP_KEYS = REWARD_KEYS + ENTROPY_KEYS + CLIP_KEYS + KL_KEYS + GROUP_KEYS

LABELS = {
    K.REWARD_MEAN: "reward (mean)",
    K.PASS1: "pass@1 (training groups)",
    K.ENTROPY: "policy entropy (nats/token)",
    K.LOGP_ADV_COV: "cov(log π, A)",
    K.CLIP_FRAC_LOW: "clipped low (A<0)",
    K.CLIP_FRAC_HIGH: "clipped high (A>0)",
    K.CLIP_FRAC: "clipped (total)",
    K.KL_OLD: "KL(π_old‖π)",
    K.KL_REF: "KL(π‖π_ref)",
    K.KL_SAMPLE_POLICY: "KL(π_sample‖π) (off-policy sampling)",
    K.FRAC_ALL_CORRECT: "all correct",
    K.FRAC_MIXED: "mixed",
    K.FRAC_ALL_WRONG: "all wrong",
}


def _line(points: list[tuple[int, float]], name: str, color: str, max_points: int, **kw: Any) -> go.Scatter:
    xs, ys = downsample(points, max_points)
    return go.Scatter(x=xs, y=ys, name=name, mode="lines", line={"color": color, "width": 1.6}, **kw)


def _eval_markers(points: list[tuple[int, float]], name: str, color: str, **kw: Any) -> go.Scatter:
    return go.Scatter(x=[s for s, _ in points], y=[finite(v) for _, v in points], name=name, mode="markers",
                      marker={"color": color, "size": 8, "symbol": "diamond", "line": {"color": "white", "width": 1}},
                      **kw)


def _with_spans(fig_layout: dict, spans: list) -> dict:
    shapes, notes = span_shapes(spans)
    fig_layout["shapes"] = fig_layout.get("shapes", []) + shapes
    fig_layout["annotations"] = fig_layout.get("annotations", []) + notes
    return fig_layout


def _has_run(store: Any, run_id: str | None) -> bool:
    if not run_id:
        return False
    try:
        store.last_step(run_id)
    except Exception:  # noqa: BLE001 - an unknown run (not created yet) is "no data", not an error
        return False
    return True


def eval_points(store: Any, run_id: str, split: str = "eval", label: str | None = None) -> list[dict]:
    """Evaluations of a split in step order: the base model first, then one per policy step
    (an evaluation repeated at the same step, e.g. "evaluate now", keeps the latest)."""
    evs = store.evaluations(run_id, split=split)
    base = [e for e in evs if e["label"] == "base"][-1:]
    policy: dict[int, dict] = {}
    for e in evs:
        if e["label"] != "base":
            policy[int(e["step"])] = e
    out = base + [policy[s] for s in sorted(policy)]
    return [e for e in out if label is None or e["label"] == label]


def reward_figure(store: Any, run_id: str | None, max_points: int = 600) -> go.Figure:
    """Reward and pass@1 of the training groups per step; held-out pass@1 at evaluation points."""
    title = "Reward and pass@1"
    if not _has_run(store, run_id):
        return style.empty_figure(title, "no run selected (or it has not written anything yet)")
    sc = store.scalars(run_id, keys=REWARD_KEYS)
    if sc[K.PASS1] == sc[K.REWARD_MEAN]:
        # with 0/1 rewards the mean reward is the training pass@1: one line, said so
        data = [_line(sc[K.PASS1], "reward = pass@1 (0/1 rewards)", style.color(0), max_points)]
    else:
        data = [_line(sc[K.PASS1], LABELS[K.PASS1], style.color(1), max_points),
                _line(sc[K.REWARD_MEAN], LABELS[K.REWARD_MEAN], style.color(0), max_points)]
    evs = eval_points(store, run_id, "eval")
    data.append(_eval_markers([(e["step"], e["summary"].get(K.EVAL_PASS1)) for e in evs], "pass@1 (held-out eval)",
                              style.color(2)))
    lay = _with_spans(style.layout(title, yaxis="value"), strategy_spans(store, run_id))
    return go.Figure(data=data, layout=lay)


def entropy_figure(store: Any, run_id: str | None, max_points: int = 600) -> go.Figure:
    """Policy entropy (left axis) with the log-prob/advantage covariance (right axis)."""
    title = "Policy entropy and cov(log π, A)"
    if not _has_run(store, run_id):
        return style.empty_figure(title, "no run selected (or it has not written anything yet)")
    sc = store.scalars(run_id, keys=ENTROPY_KEYS)
    evs = eval_points(store, run_id, "eval")
    data = [
        _line(sc[K.ENTROPY], LABELS[K.ENTROPY], style.color(0), max_points),
        _eval_markers([(e["step"], e["summary"].get(K.EVAL_MEAN_ENTROPY)) for e in evs], "entropy (eval samples)",
                      style.color(5)),
        _line(sc[K.LOGP_ADV_COV], LABELS[K.LOGP_ADV_COV], style.color(1), max_points, yaxis="y2"),
    ]
    lay = style.layout(title, yaxis="entropy")
    lay["yaxis2"] = {**lay["yaxis"], "title": {"text": "covariance"}, "overlaying": "y", "side": "right",
                     "showgrid": False}
    lay["margin"] = {**lay["margin"], "r": 60}
    return go.Figure(data=data, layout=_with_spans(lay, strategy_spans(store, run_id)))


def diagnostics_figure(store: Any, run_id: str | None, max_points: int = 600) -> go.Figure:
    """Three stacked panels on one step axis: clip fractions, KLs, and group outcomes."""
    title = "Clipping, KL and group outcomes"
    if not _has_run(store, run_id):
        return style.empty_figure(title, "no run selected (or it has not written anything yet)", height=520)
    sc = store.scalars(run_id, keys=CLIP_KEYS + KL_KEYS + GROUP_KEYS)
    data = []
    for i, k in enumerate(CLIP_KEYS):
        data.append(_line(sc[k], LABELS[k], style.color(i), max_points, yaxis="y3", legendgroup="clip"))
    for i, k in enumerate(KL_KEYS):
        data.append(_line(sc[k], LABELS[k], style.color(3 + i), max_points, yaxis="y2", legendgroup="kl"))
    for i, k in enumerate(GROUP_KEYS):
        data.append(_line(sc[k], LABELS[k], [style.GAINED, style.KEPT, style.LOST][i], max_points, yaxis="y",
                          legendgroup="groups"))
    lay = style.layout(title, yaxis="", height=520)
    axis = {k: v for k, v in lay["yaxis"].items() if k != "title"}
    lay["yaxis"] = {**axis, "domain": [0.0, 0.28], "title": {"text": "groups"}, "range": [0, 1]}
    lay["yaxis2"] = {**axis, "domain": [0.36, 0.64], "title": {"text": "KL"}}
    lay["yaxis3"] = {**axis, "domain": [0.72, 1.0], "title": {"text": "clip frac"}}
    lay["legend"] = {**lay["legend"], "y": 1.1}
    return go.Figure(data=data, layout=_with_spans(lay, strategy_spans(store, run_id)))


# --------------------------------------------------------------------- evaluation figures
def _ks(summary: dict) -> list[int]:
    return sorted(int(k.split("@", 1)[1]) for k in summary if k.startswith(K.EVAL_PASS))


def default_passk_steps(policy_steps: list[int], most: int = 4) -> list[int]:
    """Up to ``most`` evenly spaced evaluation steps, always including the last."""
    if len(policy_steps) <= most:
        return list(policy_steps)
    idx = {round(i * (len(policy_steps) - 1) / (most - 1)) for i in range(most)}
    return [policy_steps[i] for i in sorted(idx)]


def _ramp(i: int, n: int) -> str:
    """Light-to-dark blue for the i-th of n curves (later evaluation points are darker)."""
    lo, hi = (158, 202, 225), (8, 48, 107)
    t = 1.0 if n <= 1 else i / (n - 1)
    r, g, b = (round(a + (c - a) * t) for a, c in zip(lo, hi))
    return f"rgb({r},{g},{b})"


def passk_figure(store: Any, run_id: str | None, steps: list[int] | None = None, split: str = "eval") -> go.Figure:
    """Pass@k curves (k = 1, 2, 4, ...) at chosen evaluation steps, the base model's dashed.

    ``steps`` None, empty or none of the run's: up to four evenly spaced evaluation points
    including the last.
    """
    title = f"Pass@k ({split} split)"
    if not _has_run(store, run_id):
        return style.empty_figure(title, "no run selected")
    evs = eval_points(store, run_id, split)
    if not evs:
        return style.empty_figure(title, "no evaluation yet (the base model is evaluated before step 1)")
    policy = [e for e in evs if e["label"] != "base"]
    wanted = {int(s) for s in steps or []}
    chosen = [e for e in policy if e["step"] in wanted]
    if not chosen:  # none chosen, or none of this run's: the automatic choice
        auto = set(default_passk_steps([e["step"] for e in policy]))
        chosen = [e for e in policy if e["step"] in auto]
    data, all_ks = [], set()
    for e in [x for x in evs if x["label"] == "base"]:
        ks = _ks(e["summary"])
        all_ks.update(ks)
        data.append(go.Scatter(x=ks, y=[finite(e["summary"][K.eval_pass(k)]) for k in ks], name="base model",
                               mode="lines+markers", line={"color": style.BASE_COLOR, "dash": "dash", "width": 2},
                               marker={"size": 5}))
    for i, e in enumerate(chosen):
        ks = _ks(e["summary"])
        all_ks.update(ks)
        data.append(go.Scatter(x=ks, y=[finite(e["summary"][K.eval_pass(k)]) for k in ks], name=f"step {e['step']}",
                               mode="lines+markers", line={"color": _ramp(i, len(chosen)), "width": 2},
                               marker={"size": 5}))
    lay = style.layout(title, xaxis="k (samples)", yaxis="pass@k", hovermode="closest")
    ticks = sorted(all_ks)
    lay["xaxis"] = {**lay["xaxis"], "type": "log", "tickvals": ticks, "ticktext": [str(k) for k in ticks]}
    lay["yaxis"] = {**lay["yaxis"], "range": [0, 1.02]}
    return go.Figure(data=data, layout=lay)


def _solved_counts(rows: list[dict]) -> dict[str, float]:
    """Boundary counts of the base model against itself (the curve's step-0 point)."""
    c1 = sum(1 for r in rows if r["c"] >= 1)
    c2 = sum(1 for r in rows if r["c"] >= 2)
    n = len(rows)
    return {"boundary/gained": 0, "boundary/lost": 0, "boundary/kept": c1, "boundary/never": n - c1,
            "boundary/gained_c2": 0, "boundary/lost_c2": 0, "boundary/kept_c2": c2, "boundary/never_c2": n - c2}


def boundary_figure(store: Any, run_id: str | None, split: str = "eval") -> go.Figure:
    """Problems gained / lost / kept against the base model over evaluation points; dotted: c ≥ 2."""
    title = f"Boundary against the base model ({split} split)"
    if not _has_run(store, run_id):
        return style.empty_figure(title, "no run selected")
    evs = eval_points(store, run_id, split)
    points: list[tuple[int, dict]] = []
    for e in evs:
        if e["label"] == "base":
            points.append((0, _solved_counts(store.eval_problems(run_id, e["eval_id"]))))
        elif "boundary/gained" in e["summary"]:
            points.append((int(e["step"]), e["summary"]))
    if not points:
        return style.empty_figure(title, "no evaluation yet")
    xs = [s for s, _ in points]
    data = []
    for name, col in (("gained", style.GAINED), ("lost", style.LOST), ("kept", style.KEPT), ("never", style.NEVER)):
        vis = "legendonly" if name == "never" else True
        data.append(go.Scatter(x=xs, y=[finite(p.get(f"boundary/{name}")) for _, p in points], name=name,
                               mode="lines+markers", line={"color": col, "width": 2}, legendgroup=name, visible=vis))
        data.append(go.Scatter(x=xs, y=[finite(p.get(f"boundary/{name}_c2")) for _, p in points],
                               name=f"{name} (c ≥ 2)", mode="lines+markers", legendgroup=name, visible=vis,
                               line={"color": col, "width": 1.5, "dash": "dot"}, marker={"symbol": "circle-open"}))
    # evaluation-axis figures end the last span at the last evaluation (not the last step),
    # so they need no redraw between evaluations
    last = points[-1][1]
    k = last.get("boundary/report_k")
    delta = finite(last.get(f"boundary/passk_delta@{int(k)}")) if k is not None and finite(k) is not None else None
    if delta is not None:   # the pass@k shift at the user's k (at k = n it only restates gained - lost)
        title += f" · Δpass@{int(k)} {delta:+.3f} at step {points[-1][0]}"
    lay = _with_spans(style.layout(title, yaxis="problems"), strategy_spans(store, run_id, last_step=max(xs)))
    return go.Figure(data=data, layout=lay)


COLOR_MODES = {
    "eff_modes": ("effective modes exp(H)", "Viridis", False),
    "collapse_index": ("collapse index", "YlOrRd", False),
}


def heatmap_matrix(store: Any, run_id: str, color: str = "eff_modes", split: str = "eval") -> dict[str, Any]:
    """The heatmap's data: problems (rows, base-solved first) x evaluation steps (columns).

    Cells are None where the value is undefined (no correct sample; collapse index of the
    base model, which is 0 by definition, is shown as 0). Also returns per-cell hover data.
    """
    if color not in COLOR_MODES:
        raise ValueError(f"color must be one of {', '.join(COLOR_MODES)}, got {color!r}")
    evs = eval_points(store, run_id, split)
    cols = [(int(e["step"]), e, {r["problem_id"]: r for r in store.eval_problems(run_id, e["eval_id"])}) for e in evs]
    base = next((rows for _, e, rows in cols if e["label"] == "base"), None)
    ids = {pid for _, _, rows in cols for pid in rows}
    order = sorted(ids, key=lambda p: (-(base[p]["c"] if base and p in base else -1), p))
    z, hover = [], []
    for pid in order:
        zr, hr = [], []
        for _, e, rows in cols:
            r = rows.get(pid)
            if r is None:
                zr.append(None)
                hr.append("not evaluated")
                continue
            if color == "collapse_index" and e["label"] == "base":
                v = 0.0 if r["c"] > 0 else None
            else:
                v = finite(r.get(color))
            zr.append(v)
            eff, ci = finite(r.get("eff_modes")), finite(r.get("collapse_index"))
            hr.append(f"c = {r['c']}/{r['n']}, modes {r.get('num_modes', 0)}"
                      + (f", eff. modes {eff:.2f}" if eff is not None else "")
                      + (f", collapse {ci:.2f} at m = {r.get('collapse_m')}" if ci is not None else ""))
        z.append(zr)
        hover.append(hr)
    return {"x": [s for s, _, _ in cols], "y": order, "z": z, "hover": hover,
            "labels": ["base" if e["label"] == "base" else str(s) for s, e, _ in cols]}


def collapse_heatmap(store: Any, run_id: str | None, color: str = "eff_modes", split: str = "eval") -> go.Figure:
    """Per-problem mode collapse: problems x evaluation points, colour = effective number of
    modes or collapse index; grey = undefined (no correct sample). Click a cell to drill down."""
    label, scale, _ = COLOR_MODES.get(color, COLOR_MODES["eff_modes"])
    title = f"Per-problem mode collapse: {label} ({split} split)"
    if not _has_run(store, run_id):
        return style.empty_figure(title, "no run selected")
    m = heatmap_matrix(store, run_id, color, split)
    if not m["x"]:
        return style.empty_figure(title, "no evaluation yet")
    n_rows = len(m["y"])
    zmax = 1.0 if color == "collapse_index" else None
    trace = go.Heatmap(
        x=m["x"], y=m["y"], z=m["z"], customdata=m["hover"], colorscale=scale, zmin=0 if zmax else None, zmax=zmax,
        hovertemplate="problem %{y}<br>step %{x}<br>%{customdata}<extra></extra>", xgap=1, ygap=1,
        colorbar={"title": {"text": label, "side": "right"}, "thickness": 12}, name="collapse",
    )
    lay = style.layout(title, xaxis="evaluation step (base = 0)", yaxis="problem", height=max(320, min(1100, 110 + 11 * n_rows)),
                       hovermode="closest")
    lay["plot_bgcolor"] = "#eeeeee"
    lay["xaxis"] = {**lay["xaxis"], "tickvals": m["x"], "ticktext": m["labels"], "showgrid": False}
    # every row labelled (plotly skips every other category label when they are dense)
    lay["yaxis"] = {**lay["yaxis"], "autorange": "reversed", "showgrid": False, "tickfont": {"size": 9},
                    "type": "category", "tickmode": "array", "tickvals": m["y"], "ticktext": m["y"]}
    shapes, notes = span_shapes(strategy_spans(store, run_id, last_step=max(m["x"])))
    # a heatmap hides shapes drawn below it: keep only the switch lines (drawn above) and
    # show the shading as a band above the plot area, with the names
    band = [{**s, "y0": 1.0, "y1": 1.03, "layer": "above", "opacity": 0.6} for s in shapes if s["type"] == "rect"]
    lines = [s for s in shapes if s["type"] == "line"]
    lay["shapes"] = band + lines
    lay["annotations"] = [{**a, "y": 1.03} for a in notes]
    return go.Figure(data=[trace], layout=lay)
