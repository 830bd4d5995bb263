"""kill -9 at random points across rollout, update, store commit, checkpoint write and
evaluation; each time the run is resumed from its checkpoint by a new process, and in
the end the store is compared step for step with an uninterrupted run of the same config.

One run is killed again and again (a chain): each new ``workbench train --resume`` process
is itself killed at the next point, so every kill is followed by a real resume. The points
are drawn at random (seeded: WORKBENCH_KILL_SEED; WORKBENCH_KILLS sets how many, 12 by
default) among the occurrences the resumed process is sure to reach, plus kills at a
random moment from outside. Tiny sizes keep it to about a minute on 2 CPU cores.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench.session import Session
from workbench.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
CFG = {
    "rollout.prompts_per_step": 4, "rollout.group_size": 4, "optim.updates_per_batch": 1,
    "eval.n": 4, "eval.max_problems": 4, "eval.seen_problems": 2, "eval.every": 3,
    "checkpoint_every": 2, "steps": 12,
}
STEPS, CK_EVERY, EVAL_EVERY, SPLITS = 12, 2, 3, 2
COMPARED = ["train/reward_mean", "train/entropy", "train/loss", "train/grad_norm", "train/kl_old",
            "train/pass@1", "train/adv_std"]
#: (phase, variant): the hooks of tests/killpoint.py
POINTS = [("rollout", "before"), ("rollout", "after"), ("update", "backward"), ("update", "optimizer"),
          ("commit", "-"), ("checkpoint", "adapter"), ("checkpoint", "rename"), ("evaluation", "compute"),
          ("evaluation", "write")]
PHASES = ["rollout", "update", "commit", "checkpoint", "evaluation"]
KILLS = int(os.environ.get("WORKBENCH_KILLS", "12"))
SEED = int(os.environ.get("WORKBENCH_KILL_SEED", "20261201"))
RUN = "kill9-chain"


def occurrences(phase: str, start: int, base_done: bool) -> int:
    """How many times a process resumed at step ``start`` will reach ``phase`` for sure."""
    todo = range(start + 1, STEPS + 1)
    if phase in ("rollout", "update", "commit"):
        return len(todo)
    if phase == "checkpoint":
        return sum(s % CK_EVERY == 0 for s in todo)
    evals = sum(s % EVAL_EVERY == 0 for s in todo) + (STEPS % EVAL_EVERY != 0 and start < STEPS)
    return SPLITS * (evals + (not base_done))


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-4, abs=1e-6)


def check_prefix(store: RunStore, ref: RunStore, ref_id: str) -> int:
    """Everything the killed run has stored agrees with the uninterrupted run; returns its last step."""
    last = store.last_step(RUN)
    got, want = store.scalars(RUN, keys=COMPARED), ref.scalars(ref_id, keys=COMPARED)
    for key in COMPARED:
        assert [s for s, _ in got[key]] == list(range(1, last + 1)), key          # whole steps, each once
        assert all(same(v, w) for (_, v), (_, w) in zip(got[key], want[key])), key
    ref_evals = {(e["label"], e["split"], e["step"]): e["summary"] for e in ref.evaluations(ref_id)}
    for e in store.evaluations(RUN):
        want_summary = ref_evals[(e["label"], e["split"], e["step"])]
        assert all(same(e["summary"][k], want_summary[k]) for k in want_summary), (e["label"], e["step"])
    return last


def _chain(plan, rng, store, ref, ref_id, ws, new_run, resume, start, ended, alive, log, child_log, counts) -> None:
    """Start, kill and check one training process per planned point."""
    for phase in plan:
        exists = (ws / "store.sqlite").exists() and RUN in [r["run_id"] for r in store.list_runs()]
        start_step = store.checkpoints(RUN)[-1]["step"] if exists and store.checkpoints(RUN) else 0
        base_done = exists and len(store.evaluations(RUN, label="base")) == SPLITS
        argv = resume if exists else new_run
        if phase == "outside":
            before = len(store.events(RUN, kind="resumed")) if exists else 0
            target = max(start_step, min(start_step + rng.randint(0, 3), STEPS - 2))
            delay = rng.uniform(0.0, 0.1)
            pid = start("outside", "-", 0, argv)
            deadline = time.time() + 120
            while time.time() < deadline and alive(pid):  # wait until it trained to a random step, then strike
                if (ws / "store.sqlite").exists() and RUN in [r["run_id"] for r in store.list_runs()] \
                        and (not exists or len(store.events(RUN, kind="resumed")) > before) \
                        and store.last_step(RUN) >= target:
                    break
                time.sleep(0.01)
            time.sleep(delay)
            point = f"outside, {delay:.2f} s after step {target}"
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        else:
            variant = rng.choice([v for p, v in POINTS if p == phase])
            n = occurrences(phase, start_step, base_done)
            assert n > 0, f"the plan reached the end of the run before the {phase} kill"
            nth = rng.randint(1, max(1, (n + 1) // 2))                 # the first half: the chain keeps going
            point = f"{phase}/{variant} #{nth} (of {n})"
            start(phase, variant, nth, argv)
        code = ended()
        if code != -signal.SIGKILL:
            assert phase == "outside" and code == 0, f"{point}: exit {code}\n{child_log.read_text()[-3000:]}"
            log.append(f"{point}: finished before the kill")
            continue
        counts["tried"] += 1
        if RUN in [r["run_id"] for r in store.list_runs()]:
            run = store.get_run(RUN)
            if run["stored_status"] in ("created", "running", "paused"):
                assert run["status"] == "crashed", point                 # the status tells the truth
            last = check_prefix(store, ref, ref_id)
        else:
            last = -1
        counts["survived"] += 1
        log.append(f"{point}: resumed from step {start_step}, killed at step {last}")


def test_kill9_at_random_points_then_resume_matches_an_uninterrupted_run(tmp_path):
    rng = random.Random(SEED)
    ref_sess = Session(workspace=str(tmp_path / "ref"), **CFG)
    list(ref_sess.run())
    ref = RunStore(tmp_path / "ref")

    ws = tmp_path / "killed"
    store = RunStore(ws)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    new_run = ["train", "--quiet", "--workspace", str(ws), "--run-id", RUN]
    for k, v in CFG.items():
        new_run += [f"--{k}", str(v)]
    resume = ["train", "--quiet", "--workspace", str(ws), "--resume", RUN]

    # the plan: every phase at least twice, then random phases; two kills from outside at random moments
    plan = [p for p in PHASES for _ in range(2)]
    plan += [rng.choice(PHASES) for _ in range(max(0, KILLS - 2 - len(plan)))]
    rng.shuffle(plan)
    plan[1:1] = ["outside"]
    plan[5:5] = ["outside"]
    plan = plan[:max(KILLS, 1)]
    log: list[str] = []
    zygote = subprocess.Popen([sys.executable, str(ROOT / "tests" / "killpoint.py"), "--serve"], env=env, cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert zygote.stdout.readline().strip() == "ready", zygote.stderr.read()
    child_log = tmp_path / "trainer.log"

    def start(phase: str, variant: str, nth: int, argv: list[str]) -> int:
        zygote.stdin.write(json.dumps({"phase": phase, "variant": variant, "nth": nth, "argv": argv,
                                       "log": str(child_log)}) + "\n")
        zygote.stdin.flush()
        return int(zygote.stdout.readline().split()[1])

    def ended() -> int:
        return int(zygote.stdout.readline().split()[1])

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    try:
        _chain(plan, rng, store, ref, ref_sess.run_id, ws, new_run, resume, start, ended, alive, log, child_log,
               counts := {"tried": 0, "survived": 0})
    finally:
        zygote.stdin.close()
        zygote.wait(60)
    tried, survived = counts["tried"], counts["survived"]

    final = Session.resume(RUN, workspace=ws)
    list(final.run())
    got, want = store.scalars(RUN), ref.scalars(ref_sess.run_id)
    identical = total = 0
    for key in COMPARED + ["train/kl_ref"]:
        assert [s for s, _ in got[key]] == [s for s, _ in want[key]], key      # every step exactly once
        for (_, v), (_, w) in zip(got[key], want[key]):
            assert same(v, w), key
            identical += v == w or (math.isnan(v) and math.isnan(w))
            total += 1
    evs = [(e["label"], e["split"], e["step"]) for e in store.evaluations(RUN)]
    assert evs == [(e["label"], e["split"], e["step"]) for e in ref.evaluations(ref_sess.run_id)]
    for a, b in zip(store.evaluations(RUN), ref.evaluations(ref_sess.run_id)):
        assert all(same(a["summary"][k], b["summary"][k]) for k in b["summary"]), (a["label"], a["step"])
    assert [c["step"] for c in store.checkpoints(RUN)] == [c["step"] for c in ref.checkpoints(ref_sess.run_id)]
    assert store.get_run(RUN)["status"] == "finished"
    assert not list((ws / "checkpoints" / RUN).glob("*.tmp-*"))
    print(f"\nkill -9 suite (seed {SEED}): {tried} kills, {survived} resumed and matching; "
          f"{identical}/{total} compared values bit-identical\n  " + "\n  ".join(log))
    assert tried >= min(KILLS, 10) and survived == tried
