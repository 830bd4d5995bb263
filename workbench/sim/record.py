"""Writing a simulator run to the run store, with the LLM engine's keys, so the dashboard
shows it like any other run.

- The run's config is ``{"engine": "sim", "sim": <SimConfig>, "strategy": ..., "steps": ...}``.
- Per step: the scalar record (``train/…`` as the engine logs them, plus exact ``sim/…``
  figures), and one row per trained problem {problem_id, split "train", n = G, c,
  num_modes, mode_counts, reward_mean, adv_abs_mean}. Exact (expected) steps have no
  samples, so no rows.
- Evaluations: label "base" at step 0 and "policy" afterwards, per split, as
  ``workbench.sim.evaluation`` describes (exact summary, n-sample rows).
- Events: every strategy switch ("strategy", with the strategy's description).
"""

from __future__ import annotations

import numpy as np

from workbench.store import RunStore


def attach(sim, store: RunStore | None, workspace: str, name: str | None) -> str:
    """Create the run, write what the simulator has recorded so far, and attach it."""
    if sim._store is not None:
        return sim.run_id
    store = store if store is not None else RunStore(workspace)
    cfg = sim.config
    config = {"engine": "sim", "sim": cfg.to_dict(), "strategy": cfg.strategy,
              "strategy_params": dict(cfg.strategy_params), "seed": cfg.seed, "steps": sim.step_count}
    run_id = store.create_run(config, name=name or cfg.name or "sim", strategy=cfg.strategy)
    sim._store, sim.run_id = store, run_id
    store.set_status(run_id, "running")
    for step, kind, payload in sim.events:
        store.add_event(run_id, step, kind, payload)
    evals = sorted(sim.evaluations, key=lambda e: (e["step"], e["label"] != "base"))
    records = {r["step"]: r for r in sim.records}
    samples = {e[0]: e for e in sim._samples}
    done_eval = 0
    for step in sorted(records):
        while done_eval < len(evals) and evals[done_eval]["step"] < step:
            sim._write_eval(evals[done_eval])
            done_eval += 1
        if step % cfg.log_every == 0:
            write_step(sim, records[step], samples.get(step))
    for ev in evals[done_eval:]:
        sim._write_eval(ev)
    store.set_status(run_id, "finished")
    return run_id


def write_step(sim, record: dict, sample: tuple | None) -> None:
    """One step's scalars and per-problem rows (one store transaction); ``sample`` is the
    step's (step, rows, modes, adv_abs, reward_mean, c) entry, None for an exact step."""
    step = record["step"]
    scalars = {k: v for k, v in record.items() if k != "step"}
    problems = []
    if sample is not None:
        _, rows, modes, adv_abs, reward_mean, _ = sample
        correct = sim.world.correct
        for b, p in enumerate(rows.tolist()):
            ms = modes[b].astype(np.int64)
            hit = correct[p, ms]
            counts = np.bincount(ms[hit], minlength=correct.shape[1])
            problems.append({"problem_id": sim.world.problem_ids[p], "split": "train", "n": int(len(ms)),
                             "c": int(hit.sum()), "num_modes": int((counts > 0).sum()),
                             "mode_counts": {str(m): int(counts[m]) for m in np.flatnonzero(counts)},
                             "reward_mean": float(reward_mean[b]), "adv_abs_mean": float(adv_abs[b])})
    sim._store.write_step(sim.run_id, step, scalars, problems)

