"""Run integrity: checkpoint paths that survive another working directory, one trainer per
run, a status that tells the truth after a kill, corrupt checkpoints, half-written folders,
a full disk, and no duplicate final evaluation."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from workbench.cli import main
from workbench.errors import CheckpointError, StoreError
from workbench.session import Session
from workbench.store import SCHEMA_VERSION, RunStore

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "rollout.prompts_per_step": 4, "rollout.group_size": 4, "eval.n": 4, "eval.max_problems": 4,
    "eval.seen_problems": 0, "eval.every": 0, "checkpoint_every": 2,
}


def finished_run(ws, steps=4, **kw) -> str:
    sess = Session(workspace=str(ws), steps=steps, **{**TINY, **kw})
    list(sess.run())
    return sess.run_id


# -- 6: paths -----------------------------------------------------------------------------
def test_relative_workspace_resumes_from_another_directory(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    rid = finished_run("runs", steps=3)                          # checkpoints at steps 2 and 3
    store = RunStore("runs")
    assert [c["stored_path"] for c in store.checkpoints(rid)] == [f"checkpoints/{rid}/step-2",
                                                                  f"checkpoints/{rid}/step-3"]
    monkeypatch.chdir(tmp_path)
    sess = Session.resume(rid, workspace="a/runs", steps=4)
    assert sess.step_count == 3                                  # not 0
    assert [r["step"] for r in sess.run()] == [4]
    assert [s for s, _ in RunStore("a/runs").scalars(rid)["train/reward_mean"]] == [1, 2, 3, 4]


def test_checkpoint_records_of_older_versions_are_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rid = finished_run("runs", steps=2)
    store = RunStore("runs")
    for old in (f"runs/checkpoints/{rid}/step-2", str((tmp_path / f"runs/checkpoints/{rid}/step-2").resolve())):
        with store._db.write() as c:                             # as an older version wrote it
            c.execute("UPDATE checkpoints SET path = ? WHERE run_id = ?", (old, rid))
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(exist_ok=True)
        monkeypatch.chdir(elsewhere)
        sess = Session.resume(rid, workspace=tmp_path / "runs", steps=2)
        assert sess.step_count == 2
        sess.close()
        monkeypatch.chdir(tmp_path)


def test_no_checkpoint_found_refuses_instead_of_deleting_history(tmp_path):
    rid = finished_run(tmp_path, steps=3)
    store = RunStore(tmp_path)
    before = store.scalars(rid)
    shutil.rmtree(tmp_path / "checkpoints" / rid)               # moved away, deleted, another disk
    with pytest.raises(CheckpointError, match=r"no usable checkpoint.*step-3.*is missing.*Nothing in the store"):
        Session.resume(rid, workspace=tmp_path, steps=5)
    assert store.scalars(rid) == before and store.last_step(rid) == 3
    assert len(store.checkpoints(rid)) == 2

    rid2 = finished_run(tmp_path, steps=2, checkpoint_every=0)
    with store._db.write() as c:
        c.execute("DELETE FROM checkpoints WHERE run_id = ?", (rid2,))
    with pytest.raises(CheckpointError, match=r"steps 1\.\.2 in the store but no checkpoint.*nothing was changed"):
        Session.resume(rid2, workspace=tmp_path, steps=5)
    assert store.last_step(rid2) == 2


def test_run_stopped_before_its_first_checkpoint_starts_again_at_step_0(tmp_path):
    sess = Session(workspace=str(tmp_path), steps=4, **{**TINY, "checkpoint_every": 3})
    first = [sess.step()["train/reward_mean"] for _ in range(2)]
    sess.close()
    store = RunStore(tmp_path)
    assert store.get_run(sess.run_id)["status"] == "stopped"
    again = Session.resume(sess.run_id, workspace=tmp_path)
    assert again.step_count == 0 and store.last_step(sess.run_id) == -1
    [warn] = store.events(sess.run_id, kind="warning")
    assert "no checkpoint yet" in warn["payload"]["message"]
    assert [r["train/reward_mean"] for r in again.run()][:2] == pytest.approx(first)


# -- 7: one trainer per run ---------------------------------------------------------------------
def _claimer(ws: Path, rid: str) -> subprocess.Popen:
    """Another process that holds the run as a trainer would (no torch: starts fast)."""
    code = ("import sys, time; from workbench.store import RunStore; "
            f"lease = RunStore({str(ws)!r}).claim({rid!r}, interval=0.2); print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "held", proc.stderr.read()
    return proc


def test_second_trainer_is_refused_and_truncates_nothing(tmp_path, capsys):
    sess = Session(workspace=str(tmp_path), steps=6, **TINY)
    gen = sess.run()
    for _ in range(3):
        next(gen)                                                # steps 1-3 written, checkpoint at 2
    store = RunStore(tmp_path)
    with pytest.raises(StoreError, match=rf"run {sess.run_id} is being trained by another process .*{socket.gethostname()}"):
        Session.resume(sess.run_id, workspace=tmp_path)
    assert main(["train", "--quiet", "--workspace", str(tmp_path), "--resume", sess.run_id]) == 2
    assert "being trained by another process" in capsys.readouterr().err
    assert store.last_step(sess.run_id) == 3                     # the first trainer's rows are intact
    assert [r["step"] for r in gen] == [4, 5, 6]                 # and it goes on
    again = Session.resume(sess.run_id, workspace=tmp_path)      # once it has ended, a resume is fine
    assert again.step_count == 6


def test_another_process_holding_the_run_is_refused_until_it_dies(tmp_path):
    rid = finished_run(tmp_path, steps=2)
    proc = _claimer(tmp_path, rid)
    try:
        with pytest.raises(StoreError, match="being trained by another process"):
            Session.resume(rid, workspace=tmp_path, steps=3)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    sess = Session.resume(rid, workspace=tmp_path, steps=3)      # the OS dropped the lock with the process
    assert [r["step"] for r in sess.run()] == [3]


# -- 8: status ------------------------------------------------------------------------------
def test_killed_trainer_shows_as_crashed_everywhere(tmp_path, capsys):
    from ui import tables
    from ui.control import Controller

    rid = finished_run(tmp_path, steps=2)
    store = RunStore(tmp_path)
    store.set_status(rid, "running")                             # as a trainer that is at work
    proc = _claimer(tmp_path, rid)
    beat = store.get_run(rid)["heartbeat_at"]
    time.sleep(0.5)
    assert store.get_run(rid)["heartbeat_at"] > beat             # the heartbeat thread writes
    assert store.get_run(rid)["status"] == "running"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = store.get_run(rid)
    assert (run["status"], run["stored_status"]) == ("crashed", "running")
    assert store.version(rid)[3] == "crashed"

    assert main(["runs", "--workspace", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["status"] == "crashed"
    assert main(["runs", "--workspace", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert " crashed " in out and f"--resume RUN" in out
    assert tables.runs_table(store)[0][1] == "crashed"
    ctl = Controller(tmp_path)
    line = ctl.status_line(rid, store.version(rid))
    assert "crashed" in line and "Resume" in line
    started = []
    ctl.manager.start = lambda r, argv, append=False: started.append((r, argv))
    _, msg = ctl.send(rid, "resume")                             # restarts it from its checkpoint
    assert started and started[0][1][started[0][1].index("--resume") + 1] == rid
    assert "was crashed: continuing it from its last checkpoint" in msg
    with pytest.raises(Exception, match="crashed: no session applies commands"):
        ctl.send(rid, "pause")


def test_heartbeat_of_another_machine_goes_stale(tmp_path):
    store = RunStore(tmp_path)
    store.create_run({}, run_id="r")
    store.set_status("r", "running")
    assert store.get_run("r")["status"] == "running"            # never had a heartbeat: as stored
    with store._db.write() as c:
        c.execute("UPDATE runs SET heartbeat_at = ?, owner = 'other-host:1' WHERE run_id = 'r'", (time.time(),))
    assert store.get_run("r")["status"] == "running"
    with store._db.write() as c:
        c.execute("UPDATE runs SET heartbeat_at = ? WHERE run_id = 'r'", (time.time() - 3600,))
    assert store.get_run("r")["status"] == "crashed"
    store.set_status("r", "finished")
    assert store.get_run("r")["status"] == "finished"


def test_heartbeat_is_written_while_training(tmp_path):
    sess = Session(workspace=str(tmp_path), steps=2, **TINY)
    store = RunStore(tmp_path)
    run = store.get_run(sess.run_id)
    assert run["owner"] == f"{socket.gethostname()}:{os.getpid()}" and run["heartbeat_at"] > time.time() - 60
    assert run["status"] == "created"                            # the lock is held: not crashed
    list(sess.run())
    assert store.get_run(sess.run_id)["status"] == "finished"


def test_failed_base_evaluation_marks_the_run_failed(tmp_path, monkeypatch):
    sess = Session(workspace=str(tmp_path), steps=2, **TINY)

    def broken(*a, **kw):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(sess.evaluator, "evaluate_split", broken)
    with pytest.raises(RuntimeError):
        sess.ensure_base()
    store = RunStore(tmp_path)
    assert store.get_run(sess.run_id)["status"] == "failed"
    [err] = store.events(sess.run_id, kind="error")
    assert "base model's evaluation failed" in err["payload"]["message"] and "out of memory" in err["payload"]["message"]
    with pytest.raises(RuntimeError):
        list(sess.run())
    assert len(store.events(sess.run_id, kind="error")) == 1


def test_schema_migrates_a_version_1_store(tmp_path):
    import sqlite3

    store = RunStore(tmp_path)
    store.create_run({}, run_id="old")
    store.close()
    with sqlite3.connect(tmp_path / "store.sqlite") as c:       # a store written by version 1
        for column in ("heartbeat_at", "owner", "notes", "tags"):
            c.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        c.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    store = RunStore(tmp_path)
    run = store.get_run("old")
    assert run["heartbeat_at"] is None and run["status"] == "created" and run["tags"] == [] and run["notes"] == ""
    with sqlite3.connect(tmp_path / "store.sqlite") as c:
        assert c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


# -- 9: corrupt checkpoints, leftovers, full disk, finished runs ---------------------------------
@pytest.fixture(scope="module")
def four_steps(tmp_path_factory) -> tuple[Path, str]:
    """A finished 4-step run with checkpoints at steps 2 and 4 (copied by each test)."""
    ws = tmp_path_factory.mktemp("four-steps")
    return ws, finished_run(ws, steps=4, strategy="iac_dlc")


def _copy(four_steps, tmp_path) -> tuple[Path, str]:
    src, rid = four_steps
    shutil.copytree(src, tmp_path / "ws")
    shutil.rmtree(tmp_path / "ws" / "locks", ignore_errors=True)
    return tmp_path / "ws", rid


CORRUPTIONS = {
    "adapter.safetensors": b"\x00\x01 not a safetensors file",
    "optimizer.pt": b"garbage",
    "strategy_state.pt": b"PK\x03\x04 truncated zip",
    "state.json": b"",
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corrupt_checkpoint_falls_back_to_the_previous_one(four_steps, tmp_path, name):
    ws, rid = _copy(four_steps, tmp_path)
    bad = ws / "checkpoints" / rid / "step-4" / name
    assert bad.is_file()
    bad.write_bytes(CORRUPTIONS[name])
    sess = Session.resume(rid, workspace=ws, steps=5)
    assert sess.step_count == 2
    store = RunStore(ws)
    [warn] = store.events(rid, kind="warning")
    assert str(bad) in warn["payload"]["message"] and "resumed from the checkpoint of step 2" in warn["payload"]["message"]
    assert [r["step"] for r in sess.run()] == [3, 4, 5]


def test_no_usable_checkpoint_names_the_file(four_steps, tmp_path):
    ws, rid = _copy(four_steps, tmp_path)
    for step in (2, 4):
        (ws / "checkpoints" / rid / f"step-{step}" / "state.json").write_text("")
    with pytest.raises(CheckpointError, match=r"step-4/state\.json is unreadable.*step-2/state\.json is unreadable"):
        Session.resume(rid, workspace=ws)
    assert RunStore(ws).last_step(rid) == 4


def test_half_written_checkpoint_folders_are_removed_on_resume(four_steps, tmp_path):
    ws, rid = _copy(four_steps, tmp_path)
    left = ws / "checkpoints" / rid / "step-6.tmp-99999"
    left.mkdir()
    (left / "adapter.safetensors").write_bytes(b"partial")
    sess = Session.resume(rid, workspace=ws)
    assert not left.exists() and sess.step_count == 4
    assert any("step-6.tmp-99999" in e["payload"]["message"] for e in RunStore(ws).events(rid, kind="warning"))


def test_full_disk_during_a_checkpoint_is_a_clear_error_and_an_event(tmp_path, monkeypatch):
    sess = Session(workspace=str(tmp_path), steps=2, **{**TINY, "checkpoint_every": 0})
    sess.step()
    sess.checkpoint()

    def full(*a, **kw):  # what torch reports when the disk fills up mid-write
        raise RuntimeError("[enforce fail at inline_container.cc:595] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(torch, "save", full)
    sess.step()
    with pytest.raises(CheckpointError, match=r"step 2: could not write the checkpoint.*free disk space"):
        sess.checkpoint()
    store = RunStore(tmp_path)
    [err] = store.events(sess.run_id, kind="error")
    assert "could not write the checkpoint" in err["payload"]["message"]
    assert [c["step"] for c in store.checkpoints(sess.run_id)] == [1]
    assert not list((tmp_path / "checkpoints" / sess.run_id).glob("*.tmp-*"))


def test_resuming_a_finished_run_adds_no_duplicate_evaluation(four_steps, tmp_path):
    ws, rid = _copy(four_steps, tmp_path)
    store = RunStore(ws)
    before = [(e["label"], e["split"], e["step"]) for e in store.evaluations(rid)]
    assert before.count(("policy", "eval", 4)) == 1
    sess = Session.resume(rid, workspace=ws)
    assert list(sess.run()) == []
    assert [(e["label"], e["split"], e["step"]) for e in store.evaluations(rid)] == before
    assert store.get_run(rid)["status"] == "finished"


def test_partial_final_evaluation_is_redone_whole(tmp_path):
    ws = tmp_path / "ws"
    rid = finished_run(ws, steps=2, **{"eval.seen_problems": 2})
    store = RunStore(ws)
    seen = [e["eval_id"] for e in store.evaluations(rid, label="policy", split="seen") if e["step"] == 2]
    store.delete_evaluations(rid, seen)                          # killed between the two splits
    sess = Session.resume(rid, workspace=ws)
    assert list(sess.run()) == []
    final = sorted((e["split"], e["step"]) for e in store.evaluations(rid, label="policy"))
    assert final == [("eval", 2), ("seen", 2)]
