"""A hand-filled experiment (no training): strategies × seeds with known final figures, so
tables, effects and verdicts can be checked against hand computations."""

from __future__ import annotations

from pathlib import Path

from workbench.store._experiments import ExperimentStore

STRATEGIES = ("grpo", "bbg")
SEEDS = (0, 1, 2)
BASE = {"eval/pass@1": 0.30, "eval/pass@8": 0.60, "eval/mean_entropy": 0.50, "eval/mean_distinct_correct_modes": 3.0,
        "eval/n": 8.0}


def final(strategy: str, seed: int) -> dict[str, float]:
    """GRPO: pass@1 +0.05 (+0.01 per seed), pass@8 -0.10 + 0.02 s; BBG: pass@1 0.02 below GRPO
    and pass@8 0.08 above it in every seed (a constant paired effect)."""
    p1 = 0.35 + 0.01 * seed
    p8 = 0.50 + 0.02 * seed
    lost = 4.0 + seed
    if strategy == "bbg":
        p1, p8, lost = p1 - 0.02, p8 + 0.08, lost - 2
    return {"eval/pass@1": p1, "eval/pass@8": p8, "eval/mean_entropy": 0.45 - 0.01 * seed,
            "eval/mean_distinct_correct_modes": 2.5, "eval/n": 8.0, "boundary/gained": 1.0 + seed,
            "boundary/lost": lost, "collapse/mean_index": 0.1 * (seed + 1), "sharpen/rate": 0.6,
            "sharpen/mass_now": 0.3, "sharpen/mass_ref": 0.4}


def fill(root: Path, name: str = "fake") -> ExperimentStore:
    store = ExperimentStore(root)
    planned = []
    for strategy in STRATEGIES:
        for seed in SEEDS:
            rid = f"{name}-{strategy}-s{seed}"
            planned.append({"run_id": rid, "cell": {"strategy": strategy}, "cell_key": f"strategy={strategy}",
                            "seed": seed})
            store.create_run({"seed": seed, "strategy": strategy, "steps": 3, "eval": {"n": 8}}, run_id=rid,
                             strategy=strategy)
            for step in (1, 2, 3):
                store.write_step(rid, step, {"train/reward_mean": 0.3 + 0.05 * step + 0.01 * seed,
                                             "train/entropy": 0.5 - 0.02 * step})
            problems = [{"problem_id": f"p{i}", "n": 8, "c": c} for i, c in enumerate((0, 2, 8))]
            store.write_evaluation(rid, 0, "base", "eval", BASE, problems)
            store.write_evaluation(rid, 3, "policy", "eval", final(strategy, seed), problems)
            store.set_status(rid, "finished")
    store.create_experiment(name, {"name": name, "strategies": list(STRATEGIES), "seeds": list(SEEDS), "steps": 3,
                                   "sets": {}, "grid": {}, "command": "workbench sweep (hand-filled)"}, planned)
    return store
