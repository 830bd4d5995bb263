"""``workbench report``: one experiment as a self-contained HTML file.

The file holds everything it needs (plotly's JavaScript is inlined once), so it opens
without a network: the experiment's config, a claims table, the final figures per cell
with 95% intervals over seeds and paired effects against a baseline cell, and the
curves as mean lines with bands. Torch-free.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import plotly.io as pio

from workbench import stats
from workbench.experiments import analysis as an
from workbench.experiments import figures as figs
from workbench.experiments.claims import Claim, engine_claims

CSS = """
body {font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1200px;
      color: #222; line-height: 1.45; padding: 0 16px}
h1 {font-size: 1.6em} h2 {font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd}
table {border-collapse: collapse; font-size: 0.86em; margin: 8px 0}
th, td {border: 1px solid #ddd; padding: 4px 7px; vertical-align: top}
th {background: #f4f4f4; text-align: left}
td.num {text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums}
.eff {color: #555; font-size: 0.92em}
.shown {background: #e3f4e1} .opposite {background: #fbe1e1} .notshown {background: #f6f3e6}
.grid {display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 8px}
pre {background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 0.82em}
.meta td:first-child {font-weight: 600; white-space: nowrap}
.note {color: #555; font-size: 0.9em}
"""

VERDICT_CLASS = {stats.SHOWN: "shown", stats.OPPOSITE: "opposite", stats.NOT_SHOWN: "notshown"}


def default_k(finals: dict) -> int:
    """64 when the evaluations drew n >= 64 samples per problem, else the largest k they have."""
    ns = [int(s.get("eval/n", 0)) for per in finals.values() for s in per.values() if s.get("eval/n")]
    n = min(ns) if ns else 64
    return 64 if n >= 64 else max(1, n)


def default_baseline(exp: an.Experiment) -> str:
    for c in exp.cells:
        if c.cell.get("strategy") == "grpo":
            return c.key
    return exp.cells[0].key


def _e(text: Any) -> str:
    return html.escape(str(text))


def _cell(e: stats.Estimate | None, digits: int = 3) -> str:
    if e is None:
        return "<td class='num'>—</td>"
    return f"<td class='num' title='{_e(e.fmt(6))}'>{_e(e.fmt(digits))}</td>"


def claims_table(claims: Sequence[Claim]) -> str:
    if not claims:
        return "<p class='note'>No claim applies to this experiment's cells.</p>"
    rows = []
    for c in claims:
        rows.append(
            f"<tr class='{VERDICT_CLASS[c.verdict]}'><td>{_e(c.claim)}</td><td>{_e(c.source)}</td><td>{_e(c.where)}</td>"
            f"<td>{_e(c.measure)}</td><td class='num'>{_e(c.expected)}</td>{_cell(c.effect, 4)}"
            f"<td><b>{_e(c.verdict)}</b>{'<br><span class=note>' + _e(c.note) + '</span>' if c.note else ''}</td></tr>")
    return ("<table><tr><th>claim (our words)</th><th>source (arXiv)</th><th>where</th><th>measured effect</th>"
            "<th>expected</th><th>mean [95% CI] (n seeds)</th><th>verdict</th></tr>" + "".join(rows) + "</table>")


def figures_table(rows: Sequence[an.TableRow], base: dict[str, stats.Estimate], baseline_label: str | None) -> str:
    labels = list(rows[0].values) if rows else []
    head = "".join(f"<th>{_e(label)}</th>" for label in labels)
    out = [f"<table><tr><th>cell</th>{head}</tr>"]
    if base:
        out.append("<tr><td><i>base model</i></td>" + "".join(_cell(base.get(label)) for label in labels) + "</tr>")
    for r in rows:
        out.append(f"<tr><td><b>{_e(r.cell.label)}</b></td>" + "".join(_cell(r.values[label]) for label in labels) + "</tr>")
        if baseline_label and any(v is not None for v in r.effects.values()):
            out.append(f"<tr class='eff'><td>&nbsp;&nbsp;− {_e(baseline_label)}</td>"
                       + "".join(_cell(r.effects[label]) for label in labels) + "</tr>")
    out.append("</table>")
    return "".join(out)


def runs_table(exp: an.Experiment) -> str:
    rows = "".join(f"<tr><td>{_e(r['run_id'])}</td><td>{_e(an.Cell(r['cell_key'], '', r['cell']).cell.get('strategy'))}"
                   f"</td><td>{_e(r['cell_key'])}</td><td class='num'>{r['seed']}</td><td>{_e(r['status'])}</td>"
                   f"<td class='num'>{r['last_step']}</td></tr>" for r in exp.runs)
    return ("<table><tr><th>run</th><th>strategy</th><th>cell</th><th>seed</th><th>status</th><th>last step</th></tr>"
            + rows + "</table>")


def _config_of(store: Any, exp: an.Experiment) -> dict[str, Any]:
    for r in exp.runs:
        try:
            cfg = store.get_run(r["run_id"]).get("config") or {}
        except Exception:  # noqa: BLE001 - not started
            continue
        return {k: v for k, v in cfg.items() if k not in ("seed", "strategy", "strategy_params", "name", "workspace")}
    return {}


def build_report(store: Any, exp_id: str, *, baseline: str | None = None, k: int | None = None, split: str = "eval",
                 claims: Sequence[Claim] | None = None, title: str | None = None,
                 meta: dict[str, Any] | None = None, sections: Sequence[tuple[str, str]] = (),
                 intro: str = "") -> str:
    """The report's HTML. ``claims`` None = the engine claims this experiment can check;
    ``sections``: extra (heading, HTML) blocks placed before the configuration."""
    exp = an.load(store, exp_id)
    finals = an.final_values(store, exp, split, k or 64)
    k = k or default_k(finals)
    if k != 64:
        finals = an.final_values(store, exp, split, k)
    base_key = exp.cell(baseline).key if baseline else default_baseline(exp)
    base_cell = exp.cell(base_key)
    rows = an.figure_table(store, exp, split, k, base_cell.key, finals=finals)
    claims = list(claims) if claims is not None else engine_claims(store, exp, k, split, finals)
    n_seeds = len(exp.seeds)

    plots, first = [], True
    for source, key, label in an.CURVES:
        key, label = key.format(k=k), label.format(k=k)
        bands = an.cell_bands(store, exp, source, key, split if source == "eval" else "eval")
        fig = figs.band_figure({exp.cell(ck).label: b for ck, b in bands.items()},
                               f"{label} — mean over seeds, 95% band", yaxis=label,
                               xaxis="step (evaluation points; 0 = base model)" if source == "eval" else "training step")
        plots.append(pio.to_html(fig, full_html=False, include_plotlyjs=True if first else False,
                                 config={"displaylogo": False}))
        first = False
    effect_rows = [(f"{r.cell.label} − {base_cell.label}", r.effects[f"pass@{k}"]) for r in rows
                   if r.effects.get(f"pass@{k}") is not None]
    if effect_rows:
        plots.append(pio.to_html(figs.interval_figure(effect_rows, f"pass@{k}: paired effect against "
                                                                   f"{base_cell.label} (95% CI)"),
                                 full_html=False, include_plotlyjs=False, config={"displaylogo": False}))

    meta = dict(meta or {})
    spec = exp.spec
    meta.setdefault("experiment", exp_id)
    meta.setdefault("command", spec.get("command") or "")
    meta.setdefault("cells × seeds", f"{len(exp.cells)} × {n_seeds} (seeds {', '.join(map(str, exp.seeds))})")
    meta.setdefault("steps per run", spec.get("steps"))
    meta.setdefault("runs", ", ".join(f"{v} {s}" for s, v in sorted(an.status_counts(exp).items())))
    meta.setdefault("table", f"split '{split}', k = {k}, effects against {base_cell.label}")
    meta.setdefault("written", _dt.datetime.now().strftime("%Y-%m-%d %H:%M"))
    odd = an.base_mismatch(store, exp, split)
    if odd:
        meta["WARNING"] = (f"the base-model evaluation of {', '.join(odd)} differs from the other runs': they did not "
                           "start from the same model or evaluation settings, so their comparisons are not paired")
    meta_html = "".join(f"<tr><td>{_e(a)}</td><td>{_e(b)}</td></tr>" for a, b in meta.items() if b not in (None, ""))

    base = an.base_row(finals, k)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{_e(title or 'Experiment ' + exp_id)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title or 'Experiment ' + exp_id)}</h1>",
        f"<table class='meta'>{meta_html}</table>",
        intro,
        "<p class='note'>One run is one seed. Every figure is the mean over seeds with a 95% percentile bootstrap "
        f"interval ({stats.RESAMPLES:,} resamples; n = number of seeds with a value, shown beside each interval). "
        "With fewer than 3 seeds the individual values are listed instead of an interval. Effects between cells are "
        "differences taken per seed first (the seeds of every cell share the adapter initialisation, the prompts "
        "and the sampling streams), then averaged. A verdict is <i>shown</i> when the interval excludes zero in "
        "the expected direction, <i>opposite</i> when it excludes zero the other way, and <i>not shown at this "
        "scale</i> otherwise.</p>",
        "<h2>Claims</h2>", claims_table(claims),
        f"<h2>Final figures ({_e(split)} split, last evaluation)</h2>",
        "<p class='note'>Rows in grey: the cell's paired effect against the baseline (cell − baseline).</p>",
        figures_table(rows, base, base_cell.label),
        "<h2>Curves</h2><div class='grid'>", *[f"<div>{p}</div>" for p in plots], "</div>",
    ]
    for heading, body in sections:
        parts += [f"<h2>{_e(heading)}</h2>", body]
    parts += ["<h2>Configuration</h2>", "<p class='note'>The sweep's spec, then the run configuration every run "
              "shares (seed and strategy vary by run).</p>",
              f"<pre>{_e(json.dumps(spec, indent=2))}</pre>",
              f"<pre>{_e(json.dumps(_config_of(store, exp), indent=2, default=str))}</pre>",
              "<h2>Runs</h2>", runs_table(exp), "</body></html>"]
    return "\n".join(parts)


def write_report(workspace: str | os.PathLike, exp_id: str, out: str | os.PathLike, **kw: Any) -> Path:
    """Write ``build_report`` to ``out`` atomically; returns the path."""
    from workbench.store._experiments import ExperimentStore

    store = ExperimentStore(Path(workspace))
    text = build_report(store, exp_id, **kw)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    return target


def _finite(v: float) -> bool:
    return v is not None and math.isfinite(v)
