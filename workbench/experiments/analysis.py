"""What an experiment shows: per cell, the mean and 95% interval over seeds of every final
figure and of every curve, and paired effects between cells (torch-free: the dashboard
and the report use it).

A run's *final* figures come from its last policy evaluation (at the last step it ran);
"Δ vs base" figures subtract the run's own base-model evaluation (adapter disabled, the
same problems and sampling seed). Effects between cells are paired by seed
(``workbench.stats.paired_difference``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench import stats
from workbench.errors import ConfigError


@dataclass(frozen=True)
class Figure:
    """A final-evaluation figure: summary key (``{k}`` is the user's k), label, and whether
    it is a change against the base model."""

    key: str
    label: str
    vs_base: bool = False
    help: str = ""

    def resolve(self, k: int) -> "Figure":
        return Figure(self.key.format(k=k), self.label.format(k=k), self.vs_base, self.help)


#: The table's figures, in order (the report and the dashboard's Compare tab).
FIGURES = (
    Figure("eval/pass@1", "pass@1", help="held-out pass@1 at the last evaluation"),
    Figure("eval/pass@{k}", "pass@{k}", help="held-out pass@k for the chosen k"),
    Figure("eval/pass@1", "Δ pass@1 vs base", vs_base=True, help="pass@1 minus the base model's"),
    Figure("eval/pass@{k}", "Δ pass@{k} vs base", vs_base=True, help="pass@k minus the base model's"),
    Figure("boundary/gained", "boundary gained", help="problems solved now (c ≥ 1 of n) and not by the base"),
    Figure("boundary/lost", "boundary lost", help="problems the base solved and the policy no longer does"),
    Figure("collapse/mean_index", "collapse index", help="0 = as diverse as the base among correct samples, 1 = one mode"),
    Figure("sharpen/rate", "over-sharpened share", help="share of banked base correct modes now less likely than under the base"),
    Figure("sharpen/mass_now", "banked-mode mass", help="probability mass on the banked base correct modes"),
    Figure("eval/mean_distinct_correct_modes", "distinct correct modes", help="per solved problem, among n samples"),
    Figure("eval/mean_entropy", "entropy", help="mean token entropy of evaluation samples (nats)"),
)

#: Curves: (source, key, label). "train" = every training step; "eval" = evaluation points (base at step 0).
CURVES = (
    ("eval", "eval/pass@1", "held-out pass@1"),
    ("eval", "eval/pass@{k}", "held-out pass@{k}"),
    ("eval", "collapse/mean_index", "collapse index"),
    ("eval", "sharpen/rate", "over-sharpened share"),
    ("train", "train/reward_mean", "training reward"),
    ("train", "train/entropy", "policy entropy (training samples)"),
)


@dataclass
class Cell:
    key: str
    label: str
    cell: dict[str, str]
    runs: dict[int, str] = field(default_factory=dict)   # seed -> run_id


@dataclass
class Experiment:
    exp_id: str
    spec: dict[str, Any]
    cells: list[Cell]
    runs: list[dict[str, Any]]

    def cell(self, key_or_label: str) -> Cell:
        for c in self.cells:
            if key_or_label in (c.key, c.label, c.cell.get("strategy")):
                return c
        raise ConfigError(f"experiment {self.exp_id!r} has no cell {key_or_label!r}; its cells: "
                          f"{', '.join(c.label for c in self.cells)}")

    @property
    def seeds(self) -> list[int]:
        return sorted({s for c in self.cells for s in c.runs})


def load(store: Any, exp_id: str) -> Experiment:
    """The experiment's cells (in plan order) with their runs by seed."""
    from workbench.experiments.sweep import cell_label

    exp = store.get_experiment(exp_id)
    cells: dict[str, Cell] = {}
    for r in exp["runs"]:
        c = cells.setdefault(r["cell_key"], Cell(r["cell_key"], cell_label(r["cell"]), r["cell"]))
        c.runs[int(r["seed"])] = r["run_id"]
    return Experiment(exp_id, exp["spec"], list(cells.values()), exp["runs"])


# ---------------------------------------------------------------------- per-run values
def _has(store: Any, run_id: str) -> bool:
    try:
        store.get_run(run_id)
    except Exception:  # noqa: BLE001 - unknown run: not started
        return False
    return True


def pass_at_k(rows: Sequence[Mapping[str, Any]], k: int) -> float:
    """Dataset pass@k (mean over problems of 1 - C(n-c, k) / C(n, k)) from per-problem (n, c)."""
    vals = []
    for r in rows:
        n, c = int(r["n"]), int(r["c"])
        if k > n:
            return math.nan
        if n - c < k:
            vals.append(1.0)
            continue
        prod = 1.0
        for i in range(n - c + 1, n + 1):
            prod *= 1.0 - k / i
        vals.append(1.0 - prod)
    return float(sum(vals) / len(vals)) if vals else math.nan


def run_final(store: Any, run_id: str, split: str = "eval", k: int = 8, at_step: int | None = None
              ) -> dict[str, float] | None:
    """The run's last policy evaluation summary on ``split`` (with ``at_step``: the one at that
    step, so an unfinished run is left out rather than compared at an earlier step), with
    ``eval/pass@{k}`` filled in (from the per-problem rows if k was not on the stored curve)
    and ``base:``-prefixed base values; None when there is no such evaluation (yet)."""
    if not _has(store, run_id):
        return None
    evs = store.evaluations(run_id, split=split)
    policy = [e for e in evs if e["label"] != "base" and (at_step is None or e["step"] == at_step)]
    if not policy:
        return None
    out = {kk: _num(v) for kk, v in policy[-1]["summary"].items()}
    out["step"] = float(policy[-1]["step"])
    if f"eval/pass@{k}" not in out:
        out[f"eval/pass@{k}"] = pass_at_k(store.eval_problems(run_id, policy[-1]["eval_id"]), k)
    base = [e for e in evs if e["label"] == "base"]
    if base:
        bsum = {kk: _num(v) for kk, v in base[-1]["summary"].items()}
        if f"eval/pass@{k}" not in bsum:
            bsum[f"eval/pass@{k}"] = pass_at_k(store.eval_problems(run_id, base[-1]["eval_id"]), k)
        out.update({f"base:{kk}": v for kk, v in bsum.items()})
    return out


def _num(v: Any) -> float:
    try:
        return float(v) if v is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def figure_value(summary: Mapping[str, float] | None, fig: Figure) -> float:
    if summary is None:
        return math.nan
    v = summary.get(fig.key, math.nan)
    if fig.vs_base:
        v = v - summary.get(f"base:{fig.key}", math.nan)
    return float(v)


def final_values(store: Any, exp: Experiment, split: str = "eval", k: int = 8) -> dict[str, dict[int, dict]]:
    """{cell key: {seed: final summary}} of the runs that have one (an evaluation at the
    experiment's last step)."""
    out: dict[str, dict[int, dict]] = {}
    steps = exp.spec.get("steps")
    for c in exp.cells:
        for seed, rid in c.runs.items():
            s = run_final(store, rid, split, k, at_step=int(steps) if steps else None)
            if s is not None:
                out.setdefault(c.key, {})[seed] = s
    return out


def base_values(finals: Mapping[str, Mapping[int, dict]], fig: Figure) -> dict[int, float]:
    """The base model's value of ``fig`` per seed (from any cell's run of that seed)."""
    out: dict[int, float] = {}
    for per_seed in finals.values():
        for seed, s in per_seed.items():
            v = s.get(f"base:{fig.key}", math.nan)
            if seed not in out and math.isfinite(v):
                out[seed] = v
    return out


# ---------------------------------------------------------------------- tables
@dataclass
class TableRow:
    cell: Cell
    values: dict[str, stats.Estimate]            # figure label -> estimate over seeds
    effects: dict[str, stats.Estimate | None]    # figure label -> paired effect vs the baseline (None for it)


def figure_table(store: Any, exp: Experiment, split: str = "eval", k: int = 8, baseline: str | None = None,
                 figures: Sequence[Figure] = FIGURES, finals: Mapping | None = None) -> list[TableRow]:
    """One row per cell: every figure's mean and interval over seeds, and its paired effect
    (cell − baseline, by seed) when a baseline cell is given."""
    finals = finals if finals is not None else final_values(store, exp, split, k)
    figs = [f.resolve(k) for f in figures]
    base_cell = exp.cell(baseline) if baseline else None
    rows = []
    for c in exp.cells:
        per_seed = finals.get(c.key, {})
        values, effects = {}, {}
        for f in figs:
            by_seed = {s: figure_value(v, f) for s, v in sorted(per_seed.items())}
            values[f.label] = stats.bootstrap_mean(list(by_seed.values()), list(by_seed))
            if base_cell is not None and base_cell.key != c.key:
                ref = {s: figure_value(v, f) for s, v in finals.get(base_cell.key, {}).items()}
                effects[f.label] = stats.paired_difference(by_seed, ref)
            else:
                effects[f.label] = None
        rows.append(TableRow(c, values, effects))
    return rows


def base_row(finals: Mapping[str, Mapping[int, dict]], k: int = 8, figures: Sequence[Figure] = FIGURES) -> dict[str, stats.Estimate]:
    """The base model's figures (only those that exist for it: pass@k, entropy, modes)."""
    out = {}
    for f in (f.resolve(k) for f in figures):
        if f.vs_base or not f.key.startswith("eval/"):
            continue
        vals = base_values(finals, f)
        out[f.label] = stats.bootstrap_mean(list(vals.values()), list(vals))
    return out


# ---------------------------------------------------------------------- curves
def run_curve(store: Any, run_id: str, source: str, key: str, split: str = "eval") -> list[tuple[int, float]]:
    if not _has(store, run_id):
        return []
    if source == "train":
        return [(int(s), float(v)) for s, v in store.scalars(run_id, keys=[key])[key]]
    pts = []
    for e in store.evaluations(run_id, split=split):
        v = e["summary"].get(key)
        if v is None and e["label"] == "base" and key.startswith(("collapse/", "sharpen/")):
            v = 0.0 if key in ("collapse/mean_index", "sharpen/rate") else None  # the base against itself
        pts.append((int(e["step"]), _num(v)))
    return pts


def cell_bands(store: Any, exp: Experiment, source: str, key: str, split: str = "eval") -> dict[str, stats.Band]:
    """{cell key: the curve's per-step mean and band over seeds}."""
    return {c.key: stats.curve_band({s: run_curve(store, rid, source, key, split) for s, rid in sorted(c.runs.items())})
            for c in exp.cells}


def base_mismatch(store: Any, exp: Experiment, split: str = "eval", key: str = "eval/pass@1") -> list[str]:
    """Runs whose base-model evaluation differs from the most common one. With common random
    numbers every run evaluates the same base model on the same problems with the same
    sampling seed, so any difference means a run did not start from the same model (or
    evaluation settings) as the others and its comparisons are not paired. [] = all agree."""
    values: dict[str, float] = {}
    for r in exp.runs:
        if not _has(store, r["run_id"]):
            continue
        base = [e for e in store.evaluations(r["run_id"], label="base", split=split)]
        if base:
            values[r["run_id"]] = round(_num(base[0]["summary"].get(key)), 9)
    if not values:
        return []
    counts: dict[float, int] = {}
    for v in values.values():
        counts[v] = counts.get(v, 0) + 1
    common = max(counts, key=lambda v: counts[v])
    return sorted(rid for rid, v in values.items() if v != common)


def status_counts(exp: Experiment) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in exp.runs:
        out[r["status"]] = out.get(r["status"], 0) + 1
    return out
