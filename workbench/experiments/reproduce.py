"""``workbench reproduce``: a fixed experiment on the embedded model plus the simulator
suite, written as one report with a claims table.

The engine part is an ordinary sweep (so it resumes like one: run the same command again
after an interruption); the simulator part takes seconds and is recomputed every time.
``quick`` is a smoke-sized version (2 strategies × 3 seeds × 3 steps, tiny evaluations):
it exercises every piece and shows no claim.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.experiments import analysis as an
from workbench.experiments.claims import QUICK_SIM, SimSettings, engine_claims, simulator_claims
from workbench.experiments.sweep import Sweep, SweepSpec
from workbench.store._experiments import ExperimentStore

#: The full reproduction: six strategies, three seeds, the embedded model and task.
FULL = SweepSpec(
    name="reproduce",
    strategies=["grpo", "iac", "iac_dlc", "bbg", "zero_success_only", "nsr"],
    seeds=[0, 1, 2],
    steps=40,
    sets={"eval.every": "20", "checkpoint_every": "20"},
)

#: The smoke-sized version the test suite runs.
QUICK = SweepSpec(
    name="reproduce-quick",
    strategies=["grpo", "bbg"],
    seeds=[0, 1, 2],
    steps=3,
    sets={"rollout.group_size": "4", "rollout.prompts_per_step": "4", "eval.n": "8", "eval.max_problems": "8",
          "eval.seen_problems": "4", "eval.every": "0", "checkpoint_every": "0", "eval.samples_kept": "1"},
)

SIM_NOTE = (
    "<p class='note'>The simulator (<code>workbench.sim</code>) is a softmax policy over P problems × M solution "
    "modes trained with the engine's own strategies and loss; pass@k, entropies and mode probabilities are exact "
    "functions of the policy, only the training groups are sampled. Each of its claims is measured over world and "
    "sampling seeds 0..{n} (paired by seed where two set-ups are compared). Its set-ups are those of the "
    "simulator's phenomenon tests (<code>tests/test_sim.py</code>): a held-out benchmark (train 32 problems, "
    "evaluate 16 others, coupling 0.5, Adam), finite groups against the exact expected update, the two-stage "
    "world, and a Zipf-skewed policy under random rewards with plain SGD.</p>"
)


def reproduce(workspace: str | os.PathLike, quick: bool = False, out: str | os.PathLike | None = None,
              name: str | None = None, parallel: int | None = None, threads: int = 1,
              echo: Callable[[str], None] = lambda m: None, command: str | None = None,
              sim: SimSettings | None = None) -> dict[str, Any]:
    """Run (or finish) the reproduction experiment and the simulator suite; write the report.

    Returns {"experiment", "report", "seconds", "ok", "claims": [claim dicts]}."""
    t0 = time.time()
    base = QUICK if quick else FULL
    spec = SweepSpec(name or base.name, list(base.strategies), list(base.seeds), base.steps, dict(base.sets))
    store = ExperimentStore(Path(workspace).resolve())
    existing = {e["exp_id"] for e in store.list_experiments()}
    if spec.name in existing:
        echo(f"continuing experiment {spec.name} in {store.root}")
        sweep = Sweep.load(workspace, spec.name)
    else:
        sweep = Sweep.create(workspace, spec, command=command)
        echo(f"experiment {spec.name}: {len(spec.strategies)} strategies × {len(spec.seeds)} seeds × {spec.steps} steps")
    result = sweep.run(parallel=parallel, threads=threads, echo=echo)
    t_engine = time.time() - t0
    span = engine_span(store, spec.name)

    settings = sim or (QUICK_SIM if quick else SimSettings())
    t1 = time.time()
    sim_claims = simulator_claims(settings, echo=echo)
    t_sim = time.time() - t1

    exp = an.load(store, spec.name)
    finals = an.final_values(store, exp, "eval", 64)
    from workbench.report import build_report, default_k, figures_table

    k = default_k(finals)
    if k != 64:
        finals = an.final_values(store, exp, "eval", k)
    eng = engine_claims(store, exp, k, "eval", finals)
    seen = an.final_values(store, exp, "seen", k)
    if seen:  # GRPO's pass@1 and the boundary calibrations also on training problems
        eng += [c for c in engine_claims(store, exp, k, "seen", seen)
                if c.claim.startswith(("zero-success-only", "BBG", "GRPO raises pass@1"))]
    claims = [*eng, *sim_claims]
    wall = time.time() - t0

    sections = [("Simulator suite", SIM_NOTE.format(n=settings.seeds - 1))]
    if seen:
        rows = an.figure_table(store, exp, "seen", k, sweep_baseline(exp), finals=seen)
        sections.append(("Final figures on the 'seen' split (training problems)",
                         "<p class='note'>The same figures on a sample of training problems (the 'seen' split), "
                         "where the strategies act directly rather than through generalisation.</p>"
                         + figures_table(rows, an.base_row(seen, k), exp.cell(sweep_baseline(exp)).label)))
    meta = {
        "command": command or f"workbench reproduce{' --quick' if quick else ''} --workspace {workspace}",
        "wall time": (f"{(span + t_sim) / 60:.1f} min: engine runs {span / 60:.1f} min (from the experiment's "
                      f"creation to its last run's end), simulator {t_sim:.0f} s"
                      + (f"; this command {wall:.0f} s (it continued an existing experiment)"
                         if abs(span - t_engine) > 60 else "")),
        "machine": f"{os.cpu_count()} CPU cores; {parallel or 'default'} runs at once, {threads} torch thread(s) each",
        "scale": "quick smoke test: too small to show any claim" if quick else
                 "the embedded model (tiny-primes, 0.86M parameters) on two_primes",
    }
    title = "Reproduction (quick)" if quick else "Reproduction of the research threads' claims"
    html = build_report(store, spec.name, baseline=sweep_baseline(exp), k=k, claims=claims, title=title, meta=meta,
                        sections=sections)
    target = Path(out) if out else Path(workspace) / ("reproduction-quick.html" if quick else "reproduction.html")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, target)
    return {"experiment": spec.name, "report": str(target), "seconds": wall, "engine_seconds": t_engine,
            "engine_span_seconds": span,
            "sim_seconds": t_sim, "ok": result.ok, "claims": [c.to_dict() for c in claims],
            "runs": result.to_dict()["runs"]}


def sweep_baseline(exp: an.Experiment) -> str:
    from workbench.report import default_baseline

    return default_baseline(exp)


def engine_span(store: ExperimentStore, exp_id: str) -> float:
    """Seconds from the experiment's creation to the last write of its last run: the engine
    runs' wall time, whether they ran in one command or were resumed."""
    exp = store.get_experiment(exp_id)
    ends = [store.get_run(r["run_id"])["updated_at"] for r in exp["runs"] if r["status"] != "pending"]
    return max(ends, default=exp["created_at"]) - exp["created_at"]
