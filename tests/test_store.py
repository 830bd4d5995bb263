"""Tests of the run store (workbench/store): round trips, atomicity, concurrency, export."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from workbench.errors import ConfigError, StoreError, UnknownNameError
from workbench.store import SCHEMA_VERSION, STATUSES, RunStore

REPO = Path(__file__).resolve().parents[1]


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env,
    )


def popen_python(code: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
    )


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    s = RunStore(tmp_path / "ws")
    yield s
    s.close()


@pytest.fixture
def run(store: RunStore) -> str:
    return store.create_run({"lr": 1e-4, "task": "countdown"}, name="t", run_id="r1", strategy="grpo")


def problems(k: int, step: int) -> list[dict]:
    return [{"problem_id": f"p{i}", "split": "train", "n": 8, "c": (i + step) % 9, "num_modes": i} for i in range(k)]


def raw_count(store: RunStore, sql: str, params: tuple = ()) -> int:
    with sqlite3.connect(store.path) as c:
        return c.execute(sql, params).fetchone()[0]


# -- runs -------------------------------------------------------------------------------
def test_run_roundtrip_and_fields(store: RunStore, run: str) -> None:
    r = store.get_run(run)
    assert r["run_id"] == "r1" and r["name"] == "t" and r["strategy"] == "grpo"
    assert r["status"] == "created" and r["last_step"] == -1
    assert r["config"] == {"lr": 1e-4, "task": "countdown"}
    assert abs(r["created_at"] - time.time()) < 60 and r["updated_at"] >= r["created_at"]

    store.set_status(run, "running")
    store.set_strategy(run, "iac")
    store.update_config(run, {"lr": 2e-4})
    r = store.get_run(run)
    assert (r["status"], r["strategy"], r["config"]) == ("running", "iac", {"lr": 2e-4})
    with pytest.raises(ConfigError, match="finished"):
        store.set_status(run, "exploded")
    assert set(STATUSES) == {"created", "running", "paused", "finished", "failed", "stopped"}


def test_default_run_id_and_newest_first(store: RunStore) -> None:
    a = store.create_run({}, name="my run/1")
    time.sleep(0.01)
    b = store.create_run({})
    assert re.fullmatch(r"\d{8}-\d{6}-my-run-1-[0-9a-f]{4}", a), a
    assert re.fullmatch(r"\d{8}-\d{6}-run-[0-9a-f]{4}", b), b
    assert [r["run_id"] for r in store.list_runs()] == [b, a]


def test_duplicate_run_id_is_store_error(store: RunStore, run: str) -> None:
    with pytest.raises(StoreError, match="already exists"):
        store.create_run({}, run_id=run)
    with pytest.raises(ConfigError):
        store.create_run({}, run_id="../escape")


def test_unknown_run_lists_existing_ids(store: RunStore, run: str) -> None:
    store.create_run({}, run_id="other-run")
    for call in (
        lambda: store.get_run("nope"),
        lambda: store.scalars("nope"),
        lambda: store.write_step("nope", 1, {"a": 1.0}),
        lambda: store.send_command("nope", "pause"),
        lambda: store.version("nope"),
    ):
        with pytest.raises(UnknownNameError) as info:
            call()
        msg = str(info.value)
        assert "'nope'" in msg and "r1" in msg and "other-run" in msg and "workbench runs" in msg
        assert sorted(info.value.valid) == ["other-run", "r1"]


def test_delete_run_removes_rows_and_checkpoint_folder(store: RunStore, run: str) -> None:
    keep = store.create_run({}, run_id="keep")
    for rid in (run, keep):
        store.write_step(rid, 1, {"a": 1.0}, problems(2, 1))
        store.add_event(rid, 1, "x")
    folder = store.checkpoint_dir(run, 1)
    folder.mkdir(parents=True)
    (folder / "adapter.bin").write_bytes(b"x")
    store.delete_run(run)
    assert [r["run_id"] for r in store.list_runs()] == [keep]
    assert not folder.parent.exists()
    assert raw_count(store, "SELECT COUNT(*) FROM scalars") == 1
    assert raw_count(store, "SELECT COUNT(*) FROM step_problems") == 2
    assert raw_count(store, "SELECT COUNT(*) FROM events") == 1


# -- steps ------------------------------------------------------------------------------
def test_write_step_roundtrip(store: RunStore, run: str) -> None:
    samples = [{"problem_id": "p0", "completion": "1+2", "reward": 1.0, "correct": True, "mode_key": "(+ 1 2)", "len": 3},
               {"problem_id": "p1", "completion": "??", "reward": 0, "correct": False, "mode_key": None}]
    for step in (1, 2, 3):
        store.write_step(run, step, {"train/reward_mean": step / 10, "train/entropy": 2.0 - step},
                         problems(2, step), samples if step == 2 else ())
    assert store.last_step(run) == 3 and store.get_run(run)["last_step"] == 3
    assert store.scalar_keys(run) == ["train/entropy", "train/reward_mean"]
    got = store.scalars(run)
    assert got["train/reward_mean"] == [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert got["train/entropy"] == [(1, 1.0), (2, 0.0), (3, -1.0)]
    assert store.scalars(run, since_step=2) == {"train/entropy": [(3, -1.0)], "train/reward_mean": [(3, 0.3)]}
    assert store.scalars(run, keys=["train/entropy", "missing"], since_step=1) == {
        "train/entropy": [(2, 0.0), (3, -1.0)], "missing": []}
    assert store.scalars(run, keys=[]) == {}

    rows = store.step_problems(run)
    assert [(r["step"], r["problem_id"]) for r in rows] == [(1, "p0"), (1, "p1"), (2, "p0"), (2, "p1"), (3, "p0"), (3, "p1")]
    assert rows[3] == {"step": 2, "problem_id": "p1", "split": "train", "n": 8, "c": 3, "num_modes": 1}
    assert [r["step"] for r in store.step_problems(run, since_step=2, problem_id="p0")] == [3]

    got_samples = store.step_samples(run, step=2)
    assert got_samples[0] == {"step": 2, **samples[0]}
    assert got_samples[1]["correct"] is False and got_samples[1]["mode_key"] is None
    assert store.step_samples(run, step=1) == []
    assert len(store.step_samples(run, limit=1)) == 1


def test_nan_and_inf_round_trip(store: RunStore, run: str) -> None:
    store.write_step(run, 1, {"a": float("nan"), "b": float("inf"), "c": -float("inf"), "d": None, "e": True})
    got = store.scalars(run)
    assert math.isnan(got["a"][0][1]) and math.isnan(got["d"][0][1])
    assert got["b"] == [(1, math.inf)] and got["c"] == [(1, -math.inf)] and got["e"] == [(1, 1.0)]
    with pytest.raises(ConfigError, match="'s'"):
        store.write_step(run, 2, {"s": "text"})


def test_duplicate_step_is_store_error(store: RunStore, run: str) -> None:
    store.write_step(run, 1, {"a": 1.0})
    with pytest.raises(StoreError, match="truncate_after"):
        store.write_step(run, 1, {"a": 2.0})
    assert store.scalars(run) == {"a": [(1, 1.0)]}


def test_write_step_is_all_or_nothing(store: RunStore, run: str) -> None:
    store.write_step(run, 1, {"a": 1.0})
    rev = store.version(run)
    bad = problems(3, 2)
    bad[2]["payload"] = object()  # not JSON-serialisable, found after scalars were inserted
    with pytest.raises(ConfigError, match=r"problems\[2\]"):
        store.write_step(run, 2, {"a": 2.0, "b": 5.0}, bad)
    assert store.scalars(run) == {"a": [(1, 1.0)]}
    assert store.scalar_keys(run) == ["a"] and store.step_problems(run, since_step=1) == []
    assert store.last_step(run) == 1 and store.version(run) == rev
    # a sample lacking a field fails after the problems went in: also rolled back
    with pytest.raises(ConfigError, match="correct"):
        store.write_step(run, 2, {"a": 2.0}, problems(3, 2), [{"problem_id": "p0", "completion": "x", "reward": 1}])
    assert raw_count(store, "SELECT COUNT(*) FROM step_problems") == 0
    store.write_step(run, 2, {"a": 2.0}, problems(3, 2))  # the step is still free
    assert store.scalars(run)["a"] == [(1, 1.0), (2, 2.0)]


def test_objects_with_tolist_are_stored_as_lists(store: RunStore, run: str) -> None:
    class Arr:  # stands in for a numpy array / tensor without importing either
        def tolist(self) -> list[float]:
            return [0.5, -1.0]

    store.write_step(run, 1, {"a": 1.0}, [{"problem_id": 7, "n": 2, "c": 1, "logratios": Arr()}])
    assert store.step_problems(run)[0]["logratios"] == [0.5, -1.0]
    assert store.step_problems(run)[0]["problem_id"] == "7"
    with pytest.raises(ConfigError, match="step"):
        store.write_step(run, 2, {}, [{"problem_id": "p", "n": 1, "c": 0, "step": 2}])


def test_killed_writer_leaves_only_whole_steps(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    RunStore(root).create_run({}, run_id="k")
    proc = popen_python(f"""
        from workbench.store import RunStore
        s = RunStore({str(root)!r})
        for step in range(1, 100000):
            probs = [{{"problem_id": f"p{{i}}", "n": 8, "c": i % 9, "blob": "x" * 200}} for i in range(300)]
            s.write_step("k", step, {{f"k{{j}}": float(step) for j in range(50)}}, probs)
    """)
    store = RunStore(root)
    deadline = time.time() + 30
    while store.last_step("k") < 3 and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.037)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    last = store.last_step("k")
    assert last >= 3
    steps = [r[0] for r in sqlite3.connect(store.path).execute("SELECT step FROM steps WHERE run_id='k' ORDER BY step")]
    assert steps == list(range(1, last + 1))
    for step in steps:
        assert raw_count(store, "SELECT COUNT(*) FROM scalars WHERE step=?", (step,)) == 50
        assert raw_count(store, "SELECT COUNT(*) FROM step_problems WHERE step=?", (step,)) == 300
    assert raw_count(store, "SELECT COUNT(*) FROM scalars WHERE step>?", (last,)) == 0
    assert raw_count(store, "SELECT COUNT(*) FROM step_problems WHERE step>?", (last,)) == 0


# -- evaluations and bank ---------------------------------------------------------------
def test_evaluations_roundtrip(store: RunStore, run: str) -> None:
    eps = [{"problem_id": "p0", "n": 16, "c": 4, "num_modes": 2, "mode_counts": {"a": 3, "b": 1},
            "mode_entropy": 0.56, "mean_entropy": 1.2, "logratios": [0.1, -0.2]},
           {"problem_id": "p1", "n": 16, "c": 0}]
    samples = [{"problem_id": "p0", "completion": f"c{i}", "reward": 1.0, "correct": True, "mode_key": "a"} for i in range(3)]
    samples.append({"problem_id": "p1", "completion": "bad", "reward": 0.0, "correct": False, "mode_key": None})
    e2 = store.write_evaluation(run, 4, "policy", "test", {"pass@1": 0.125}, eps)
    e0 = store.write_evaluation(run, 0, "base", "test", {"pass@1": 0.1, "pass@16": 0.5}, eps, samples)
    store.write_evaluation(run, 4, "policy", "train", {"pass@1": 0.3}, [])
    assert e0 != e2
    evs = store.evaluations(run)
    assert [(e["step"], e["label"], e["split"]) for e in evs] == [(0, "base", "test"), (4, "policy", "test"), (4, "policy", "train")]
    assert evs[0]["eval_id"] == e0 and evs[0]["summary"] == {"pass@1": 0.1, "pass@16": 0.5}
    assert [e["eval_id"] for e in store.evaluations(run, label="policy", split="test")] == [e2]
    assert store.eval_problems(run, e0) == eps
    assert store.eval_samples(run, e0) == samples
    assert store.eval_samples(run, e0, problem_id="p1") == samples[3:]
    assert len(store.eval_samples(run, e0, problem_id="p0", limit=2)) == 2
    assert store.eval_samples(run, e2) == []
    assert store.version(run)[2] == 3
    with pytest.raises(UnknownNameError, match="evaluation"):
        store.eval_problems(run, 999)


def test_bank_roundtrip_idempotent_and_replace(store: RunStore, run: str) -> None:
    rows = [{"problem_id": "p0", "mode_key": "a", "completion": "1+2", "ref_logprob": -3.5},
            {"problem_id": "p0", "mode_key": "b", "completion": "2+1", "ref_logprob": -4.0, "tokens": 3}]
    store.write_bank(run, rows)
    assert store.bank(run) == rows
    store.write_bank(run, [{**rows[0], "ref_logprob": -1.0}])  # same identity: updated, not duplicated
    assert [r["ref_logprob"] for r in store.bank(run)] == [-1.0, -4.0]
    store.write_bank(run, [{"problem_id": "p9", "mode_key": "z", "completion": "9", "ref_logprob": 0.0}], replace=True)
    assert [r["problem_id"] for r in store.bank(run)] == ["p9"]
    with pytest.raises(ConfigError, match="mode_key"):
        store.write_bank(run, [{"problem_id": "p", "mode_key": None, "completion": "x", "ref_logprob": 0.0}])
    assert len(store.bank(run)) == 1


# -- events, commands, checkpoints ------------------------------------------------------
def test_events(store: RunStore, run: str) -> None:
    a = store.add_event(run, 3, "strategy_switch", {"from": "grpo", "to": "iac"})
    b = store.add_event(run, 5, "pause")
    assert b > a
    ev = store.events(run)
    assert [(e["id"], e["step"], e["kind"], e["payload"]) for e in ev] == [
        (a, 3, "strategy_switch", {"from": "grpo", "to": "iac"}), (b, 5, "pause", {})]
    assert [e["id"] for e in store.events(run, kind="pause")] == [b]
    assert [e["id"] for e in store.events(run, since_id=a)] == [b]
    with pytest.raises(ConfigError, match="payload"):
        store.add_event(run, 1, "x", {"bad": {1, 2}})


def test_commands(store: RunStore, run: str) -> None:
    c1 = store.send_command(run, "pause")
    c2 = store.send_command(run, "set_strategy", {"strategy": "iac", "params": {"alpha": 0.5}})
    pend = store.pending_commands(run)
    assert [(c["id"], c["kind"], c["payload"], c["status"]) for c in pend] == [
        (c1, "pause", {}, "pending"), (c2, "set_strategy", {"strategy": "iac", "params": {"alpha": 0.5}}, "pending")]
    store.mark_command(c1, "applied", step=7, message="paused at step 7")
    store.mark_command(c2, "rejected", message="unknown strategy")
    assert store.pending_commands(run) == []
    done = store.commands(run)
    assert [(c["status"], c["step"], c["message"]) for c in done] == [
        ("applied", 7, "paused at step 7"), ("rejected", None, "unknown strategy")]
    assert done[0]["handled_at"] >= done[0]["created_at"]
    with pytest.raises(StoreError, match="already applied"):
        store.mark_command(c1, "rejected")
    with pytest.raises(ConfigError):
        store.mark_command(c1, "done")
    with pytest.raises(UnknownNameError):
        store.mark_command(12345, "applied")


def test_checkpoints(store: RunStore, run: str) -> None:
    d = store.checkpoint_dir(run, 10)
    assert d == store.root / "checkpoints" / run / "step-10" and not d.exists()
    assert store.last_checkpoint(run) is None
    store.record_checkpoint(run, 10, d)
    store.record_checkpoint(run, 20, "/elsewhere/step-20")
    store.record_checkpoint(run, 10, "/moved/step-10")
    assert [(c["step"], c["path"]) for c in store.checkpoints(run)] == [(10, "/moved/step-10"), (20, "/elsewhere/step-20")]
    last = store.last_checkpoint(run)
    assert last is not None and (last["step"], last["path"]) == (20, "/elsewhere/step-20") and last["created_at"] > 0
    with pytest.raises(ConfigError):
        store.checkpoint_dir("../../etc", 1)


# -- resume -----------------------------------------------------------------------------
def test_truncate_after_removes_exactly_later_rows(store: RunStore, run: str) -> None:
    smp = [{"problem_id": "p0", "completion": "x", "reward": 1.0, "correct": True, "mode_key": "m"}]
    eps = [{"problem_id": "p0", "n": 4, "c": 1}]
    for step in range(1, 6):
        extra = {"late/only": 1.0} if step >= 4 else {}
        store.write_step(run, step, {"a": float(step), **extra}, problems(2, step), smp)
        store.add_event(run, step, "tick")
    evals = {s: store.write_evaluation(run, s, "base" if s == 0 else "policy", "test", {}, eps, smp) for s in (0, 2, 4)}
    for s in (2, 4):
        store.record_checkpoint(run, s, f"/ck/{s}")
    store.write_bank(run, [{"problem_id": "p0", "mode_key": "m", "completion": "x", "ref_logprob": -1.0}])
    cmd = store.send_command(run, "stop")

    counts = store.truncate_after(run, 3)
    assert counts["steps"] == 2 and counts["scalars"] == 4 and counts["evaluations"] == 1 and counts["events"] == 2

    assert store.last_step(run) == 3
    assert store.scalars(run) == {"a": [(1, 1.0), (2, 2.0), (3, 3.0)]}
    assert store.scalar_keys(run) == ["a"]
    assert sorted({r["step"] for r in store.step_problems(run)}) == [1, 2, 3]
    assert sorted({r["step"] for r in store.step_samples(run)}) == [1, 2, 3]
    assert [e["step"] for e in store.evaluations(run)] == [0, 2]
    assert raw_count(store, "SELECT COUNT(*) FROM eval_problems WHERE eval_id=?", (evals[4],)) == 0
    assert raw_count(store, "SELECT COUNT(*) FROM eval_samples WHERE eval_id=?", (evals[4],)) == 0
    assert store.eval_problems(run, evals[2]) == eps and store.eval_samples(run, evals[0]) == smp
    assert [e["step"] for e in store.events(run)] == [1, 2, 3]
    assert [c["step"] for c in store.checkpoints(run)] == [2]
    assert len(store.bank(run)) == 1 and [c["id"] for c in store.pending_commands(run)] == [cmd]
    store.write_step(run, 4, {"a": 40.0})  # the resumed session can rewrite step 4
    assert store.scalars(run, since_step=3) == {"a": [(4, 40.0)]}
    store.truncate_after(run, -1)
    assert store.last_step(run) == -1 and store.scalars(run) == {}


# -- concurrency ------------------------------------------------------------------------
def test_second_process_reads_while_writing_and_sends_command(store: RunStore, run: str) -> None:
    for step in (1, 2, 3):
        store.write_step(run, step, {"loss": step * 1.5})
    proc = popen_python(f"""
        import json, time
        from workbench.store import RunStore
        s = RunStore({str(store.root)!r})
        first = s.scalars("r1", ["loss"])["loss"]
        cmd = s.send_command("r1", "set_strategy", {{"strategy": "dlc"}})
        deadline = time.time() + 30
        while s.last_step("r1") < 8 and time.time() < deadline:
            time.sleep(0.01)
        later = s.scalars("r1", ["loss"], since_step=3)["loss"]
        print(json.dumps({{"first": first, "cmd": cmd, "later": later}}))
    """)
    for step in range(4, 9):  # keep writing while the other process reads
        time.sleep(0.05)
        store.write_step(run, step, {"loss": step * 1.5})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    got = json.loads(out)
    assert got["first"][:3] == [[1, 1.5], [2, 3.0], [3, 4.5]]
    assert got["later"] == [[s, s * 1.5] for s in range(4, 9)]
    pending = store.pending_commands(run)
    assert [(c["id"], c["kind"], c["payload"]) for c in pending] == [(got["cmd"], "set_strategy", {"strategy": "dlc", "params": {}})]


def test_reader_not_blocked_by_open_write_transaction(tmp_path: Path) -> None:
    writer, reader = RunStore(tmp_path), RunStore(tmp_path)
    writer.create_run({}, run_id="w")
    writer.write_step("w", 1, {"a": 1.0})
    with writer._db.write() as c:  # a step half-way through its transaction
        c.execute("INSERT INTO steps VALUES ('w', 2, 0)")
        c.execute("INSERT INTO scalars VALUES ('w', 2, 'a', 2.0)")
        t0 = time.time()
        assert reader.scalars("w") == {"a": [(1, 1.0)]}  # committed data only, at once
        assert time.time() - t0 < 1.0
    assert reader.scalars("w") == {"a": [(1, 1.0), (2, 2.0)]}


def test_threads_share_a_store(store: RunStore, run: str) -> None:
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(20):
                store.write_step(run, offset + i, {"t": float(offset)})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(o,)) for o in (0, 100, 200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(store.scalars(run)["t"]) == 60 and store.last_step(run) == 219


def test_version_changes_on_every_write(store: RunStore, run: str) -> None:
    v0 = store.version(run)
    assert v0[:4] == (-1, 0, 0, "created")
    store.send_command(run, "pause")
    v1 = store.version(run)
    assert v1 != v0 and v1[:4] == v0[:4]  # only the revision tells a command arrived
    store.write_step(run, 1, {"a": 1.0})
    store.add_event(run, 1, "pause")
    store.set_status(run, "paused")
    assert store.version(run)[:4] == (1, 1, 0, "paused")


# -- export -----------------------------------------------------------------------------
def _export_fixture(store: RunStore, run: str) -> None:
    store.write_step(run, 1, {"train/loss": 0.5, "train/reward_mean": 0.25})
    store.write_step(run, 2, {"train/loss": float("nan"), "eval/pass@1": 0.125})
    store.write_step(run, 3, {"train/loss": 1 / 3})


def test_export_csv(store: RunStore, run: str, tmp_path: Path) -> None:
    _export_fixture(store, run)
    out = store.export(run, tmp_path / "out" / "run.csv")
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["step", "eval/pass@1", "train/loss", "train/reward_mean"]
    assert rows[1] == ["1", "", "0.5", "0.25"]
    assert rows[2][:2] == ["2", "0.125"] and math.isnan(float(rows[2][2])) and rows[2][3] == ""
    assert float(rows[3][2]) == 1 / 3 and len(rows) == 4


def test_export_parquet(store: RunStore, run: str, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    _export_fixture(store, run)
    out = store.export(run, tmp_path / "run.data", fmt="parquet")
    table = pq.read_table(out)
    assert table.column_names == ["step", "eval/pass@1", "train/loss", "train/reward_mean"]
    data = table.to_pydict()
    assert data["step"] == [1, 2, 3] and data["eval/pass@1"] == [None, 0.125, None]
    assert data["train/loss"][0] == 0.5 and math.isnan(data["train/loss"][1]) and data["train/loss"][2] == 1 / 3
    assert str(table.schema.field("step").type) == "int64"


def test_export_unknown_format(store: RunStore, run: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="csv, parquet"):
        store.export(run, tmp_path / "x.xlsx")
    with pytest.raises(ConfigError, match="csv, parquet"):
        store.export(run, tmp_path / "x.csv", fmt="json")
    assert not list(tmp_path.glob("x.*"))


# -- opening, errors, schema ------------------------------------------------------------
def test_constructing_has_no_side_effects(tmp_path: Path) -> None:
    s = RunStore(tmp_path / "later")
    assert not (tmp_path / "later").exists()
    assert s.list_runs() == [] and s.path.is_file()


def test_schema_is_versioned_wal_and_idempotent(store: RunStore, run: str) -> None:
    store.write_step(run, 1, {"a": 1.0})
    store.close()
    again = RunStore(store.root)
    assert again.scalars(run) == {"a": [(1, 1.0)]}
    c = sqlite3.connect(store.path)
    assert c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn = again._db.conn()
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 10000
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    c.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    c.commit()
    c.close()
    with pytest.raises(StoreError, match="999"):
        RunStore(store.root).list_runs()


def test_not_a_database_is_store_error(tmp_path: Path) -> None:
    (tmp_path / "store.sqlite").write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError) as info:
        RunStore(tmp_path).list_runs()
    assert str(tmp_path / "store.sqlite") in str(info.value) and "not a SQLite" in str(info.value)


def test_unwritable_root_is_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="workspace"):
        RunStore(blocker / "ws").create_run({})


def test_lock_timeout_is_store_error(tmp_path: Path) -> None:
    holder = RunStore(tmp_path)
    holder.create_run({}, run_id="x")
    impatient = RunStore(tmp_path, timeout=0.2)
    with holder._db.write():
        t0 = time.time()
        with pytest.raises(StoreError, match="locked"):
            impatient.send_command("x", "pause")
        assert time.time() - t0 < 5
    assert impatient.send_command("x", "pause") > 0  # fine once the lock is gone


def test_store_imports_no_torch() -> None:
    res = run_python("""
        import sys
        import workbench.store
        assert 'torch' not in sys.modules, 'torch imported'
        assert 'pyarrow' not in sys.modules, 'pyarrow imported eagerly'
        print('ok')
    """)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
