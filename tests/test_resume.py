"""kill -9 a training process mid-run, resume it, and compare the store with an
uninterrupted run of the same config: no duplicated or missing steps, same numbers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from workbench.session import Session
from workbench.store import RunStore

CFG = {
    "rollout.prompts_per_step": 8, "rollout.group_size": 4, "eval.n": 8, "eval.max_problems": 8,
    "eval.seen_problems": 0, "eval.every": 4, "checkpoint_every": 2, "steps": 8,
}
COMPARED = ["train/reward_mean", "train/entropy", "train/loss", "train/grad_norm", "train/kl_old"]


def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    ws = tmp_path / "killed"
    args = [sys.executable, "-m", "workbench.cli", "train", "--quiet", "--workspace", str(ws)]
    for k, v in CFG.items():
        args += [f"--{k}", str(v)]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    store = RunStore(ws)
    deadline = time.time() + 240
    run_id = None
    while time.time() < deadline:
        if (ws / "store.sqlite").exists():
            runs = store.list_runs()
            if runs and runs[0]["last_step"] >= 3:
                run_id = runs[0]["run_id"]
                break
        if proc.poll() is not None:
            pytest.fail(f"training ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    assert run_id, "training did not reach step 3 in time"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = store.last_step(run_id)
    assert killed_at < 8

    sess = Session.resume(run_id, workspace=ws)
    assert sess.step_count % 2 == 0 and sess.step_count <= killed_at      # the last checkpoint
    list(sess.run())

    ref = Session(workspace=str(tmp_path / "ref"), **CFG)
    list(ref.run())

    got, want = store.scalars(run_id), RunStore(tmp_path / "ref").scalars(ref.run_id)
    for key in COMPARED:
        assert [s for s, _ in got[key]] == list(range(1, 9)), key          # each step exactly once
        assert [v for _, v in got[key]] == pytest.approx([v for _, v in want[key]], rel=1e-4, abs=1e-6), key
    assert [s for s, _ in got["train/kl_ref"]] == [1, 6]
    assert [v for _, v in got["train/kl_ref"]] == pytest.approx([v for _, v in want["train/kl_ref"]], rel=1e-4, abs=1e-6)
    evs = [(e["label"], e["step"]) for e in store.evaluations(run_id)]
    assert sorted(evs) == [("base", 0), ("policy", 4), ("policy", 8)]
    assert [e["summary"]["eval/pass@1"] for e in store.evaluations(run_id)] == pytest.approx(
        [e["summary"]["eval/pass@1"] for e in RunStore(tmp_path / "ref").evaluations(ref.run_id)])
    assert store.get_run(run_id)["status"] == "finished"
