"""Sweeps: an experiment of strategies × seeds run as training processes, from the CLI and
from Python; a kill -9 of the sweep process and its resume; the experiment tables."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench.errors import ConfigError, StoreError, UnknownNameError
from workbench.experiments import Sweep, SweepSpec, run_sweep
from workbench.experiments import analysis as an
from workbench.experiments.sweep import child_env, default_parallel, parse_grid, parse_seeds
from workbench.store import RunStore
from workbench.store._experiments import ExperimentStore

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # fake_experiment
#: Tiny runs: 4 prompts × 4 samples, 8 evaluation problems × 8 samples, no 'seen' split.
TINY = {"rollout.group_size": "4", "rollout.prompts_per_step": "4", "eval.n": "8", "eval.max_problems": "8",
        "eval.seen_problems": "0", "eval.every": "0", "eval.samples_kept": "1"}


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _cli(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=_env())


def _sets(extra=()):
    out = []
    for k, v in TINY.items():
        out += ["--set", f"{k}={v}"]
    for item in extra:
        out += ["--set", item]
    return out


def test_sweep_from_the_cli_runs_every_cell_and_seed_paired(tmp_path):
    ws = tmp_path / "ws"
    res = _cli("sweep", "--strategies", "grpo,bbg", "--seeds", "2", "--steps", "3", *_sets(), "--name", "cli2x2",
               "--workspace", str(ws), "--parallel", "2", "--json")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert out["experiment"] == "cli2x2" and out["ok"] is True
    assert out["run_ids"] == ["cli2x2-grpo-s0", "cli2x2-grpo-s1", "cli2x2-bbg-s0", "cli2x2-bbg-s1"]
    store = ExperimentStore(ws)
    exp = store.get_experiment("cli2x2")
    assert [(r["cell"]["strategy"], r["seed"], r["status"], r["last_step"]) for r in exp["runs"]] == [
        ("grpo", 0, "finished", 3), ("grpo", 1, "finished", 3), ("bbg", 0, "finished", 3), ("bbg", 1, "finished", 3)]
    configs = {rid: store.get_run(rid)["config"] for rid in out["run_ids"]}
    # paired design: seed s of every cell is the same run seed, everything else equal but the strategy
    assert configs["cli2x2-grpo-s1"]["seed"] == configs["cli2x2-bbg-s1"]["seed"] == 1
    assert configs["cli2x2-grpo-s0"]["strategy"] == "grpo" and configs["cli2x2-bbg-s0"]["strategy"] == "bbg"
    strip = lambda c: {k: v for k, v in c.items() if k not in ("strategy", "name", "seed")}  # noqa: E731
    assert strip(configs["cli2x2-grpo-s0"]) == strip(configs["cli2x2-bbg-s1"])
    assert configs["cli2x2-grpo-s0"]["rollout"]["group_size"] == 4 and configs["cli2x2-grpo-s0"]["steps"] == 3
    # common random numbers: the base model's evaluation is identical for every run
    bases = {rid: store.evaluations(rid, label="base", split="eval")[0]["summary"]["eval/pass@1"] for rid in out["run_ids"]}
    assert len(set(bases.values())) == 1
    # the statistics see 2 seeds per cell
    rows = an.figure_table(store, an.load(store, "cli2x2"), k=8, baseline="grpo")
    assert [r.values["pass@1"].n for r in rows] == [2, 2]
    assert rows[1].effects["pass@1"].n == 2 and rows[0].effects["pass@1"] is None
    lst = _cli("sweep", "--list", "--workspace", str(ws))
    assert "cli2x2" in lst.stdout and "4 finished" in lst.stdout


def _wait(cond, timeout, what):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_sweep_from_python_survives_kill_9_and_resumes(tmp_path):
    """The sweep (Python API, in its own process, one run at a time) is killed with SIGKILL
    while its second run trains: that trainer dies with it; `workbench sweep --resume` keeps
    the finished run, resumes the interrupted one from its checkpoint and runs the rest."""
    ws = tmp_path / "ws"
    # enough steps that the second run cannot finish between its first checkpoint and the kill
    # (a step of this tiny run takes well under a tenth of a second; the poll is every 0.2 s)
    STEPS = 12
    code = (
        "from workbench.experiments import run_sweep\n"
        f"r = run_sweep({str(ws)!r}, 'k9', strategies=['grpo', 'bbg'], seeds=2, steps={STEPS}, "
        f"sets={{**{TINY!r}, 'checkpoint_every': '1'}}, parallel=1)\n"
        "print('done', r.ok)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    store = ExperimentStore(ws)
    first, second = "k9-grpo-s0", "k9-grpo-s1"

    def second_has_checkpoint():
        if proc.poll() is not None:
            raise AssertionError("the sweep ended before it could be killed: " + proc.stdout.read()[-3000:])
        try:
            return bool(store.checkpoints(second))
        except (UnknownNameError, StoreError):
            return False

    _wait(second_has_checkpoint, 200, "the second run's first checkpoint")
    assert store.get_run(first)["status"] == "finished"
    trainer = next(r["pid"] for r in store.experiment_runs("k9") if r["run_id"] == second)
    assert trainer and _alive(trainer)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    _wait(lambda: not _alive(trainer), 20, "the killed sweep's trainer to end with it")
    assert store.get_run(second)["status"] != "finished"
    assert store.get_run(second)["last_step"] < STEPS

    res = _cli("sweep", "--resume", "k9", "--workspace", str(ws), "--parallel", "2")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert f"kept {first}" in res.stdout and f"resuming {second}" in res.stdout
    runs = {r["run_id"]: r for r in store.experiment_runs("k9")}
    assert all(r["status"] == "finished" and r["last_step"] == STEPS for r in runs.values()), runs
    assert runs[first]["attempts"] == 1 and runs[second]["attempts"] == 2
    assert not store.events(first, kind="resumed")
    resumed = store.events(second, kind="resumed")
    assert len(resumed) == 1 and resumed[0]["payload"]["from_step"] >= 1
    assert [s for s, _ in store.scalars(second, keys=["train/loss"])["train/loss"]] == list(range(1, STEPS + 1))
    # running a finished sweep again (from Python) starts nothing
    again = Sweep.load(ws, "k9").run()
    assert again.ok and {o.action for o in again.outcomes} == {"kept"}


def test_sweep_spec_errors_are_specific(tmp_path):
    def spec(**kw):
        base = dict(name="e", strategies=["grpo"], seeds=[0, 1], steps=3)
        return SweepSpec(**{**base, **kw})

    with pytest.raises(UnknownNameError, match="strategy 'nope'"):
        spec(strategies=["grpo", "nope"]).validate()
    with pytest.raises(ConfigError, match="use --seeds"):
        spec(sets={"seed": "3"}).validate()
    with pytest.raises(ConfigError, match="piece 'bbg' has no parameter 'kk'"):
        spec(strategies=["bbg"], sets={"bbg.kk": "3"}).validate()
    with pytest.raises(ConfigError, match="none of the strategies grpo uses the piece 'bbg'"):
        spec(sets={"bbg.k": "3"}).validate()
    with pytest.raises(ConfigError, match="rollout.group_size"):
        spec(grid={"rollout.group_size": ["4", "1"]}).validate()
    with pytest.raises(ConfigError, match="--name"):
        spec(name="bad name!").validate()
    with pytest.raises(ConfigError, match="expected a count"):
        parse_seeds("x")
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["optim.lr=1,2", "optim.lr=3"])
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("4,1") == [4, 1]
    # a strategy parameter goes only to the runs whose strategy has that piece
    s = spec(strategies=["grpo", "bbg"], sets={"bbg.k": "16"}, grid={"optim.lr": ["1e-3", "5e-4"]}).validate()
    plan = s.plan()
    assert len(plan) == 8 and len({r.run_id for r in plan}) == 8
    grpo_args, bbg_args = s.train_args(plan[0], tmp_path), s.train_args(plan[-1], tmp_path)
    assert "bbg.k=16" not in grpo_args and "bbg.k=16" in bbg_args and "optim.lr=5e-4" in bbg_args
    ws = tmp_path / "ws"
    Sweep.create(ws, spec())
    with pytest.raises(StoreError, match="--resume e"):
        Sweep.create(ws, spec())
    res = _cli("sweep", "--strategies", "grpo", "--name", "x y", "--workspace", str(ws))
    assert res.returncode == 2 and "--name 'x y'" in res.stderr and "Traceback" not in res.stderr


def test_experiment_tables_on_a_store_that_predates_them(tmp_path):
    """A store written without the experiment tables stays readable (no experiments) and gets
    them on the first experiment; planned runs that never started read as pending."""
    ws = tmp_path / "old"
    old = RunStore(ws)
    old.create_run({"x": 1}, run_id="plain")
    with old._db.write() as c:
        c.execute("DROP TABLE IF EXISTS experiment_runs")
        c.execute("DROP TABLE IF EXISTS experiments")
    store = ExperimentStore(ws)
    assert store.list_experiments() == [] and store.experiment_of_run("plain") is None
    with pytest.raises(UnknownNameError, match="unknown experiment 'nope'"):
        store.get_experiment("nope")
    store.create_experiment("ex", {"steps": 1}, [{"run_id": "plain", "cell": {"strategy": "grpo"},
                                                  "cell_key": "strategy=grpo", "seed": 0},
                                                 {"run_id": "later", "cell": {"strategy": "grpo"},
                                                  "cell_key": "strategy=grpo", "seed": 1}])
    runs = store.experiment_runs("ex")
    assert [(r["run_id"], r["status"]) for r in runs] == [("plain", "created"), ("later", "pending")]
    assert store.experiment_of_run("later") == ("ex", {"strategy": "grpo"}, 1)
    assert RunStore(ws).get_run("plain")["run_id"] == "plain"


def test_threads_per_run_reach_torch(monkeypatch):
    """The pool's per-run thread count is what torch uses in the child, whatever the sweep
    process itself inherited (2 threads here)."""
    assert default_parallel(1) >= 1 and default_parallel(10_000) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("MKL_NUM_THREADS", "2")
    env = {**child_env(1), "HF_HUB_OFFLINE": "1"}
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "1", out.stderr[-2000:]


def test_sweep_on_a_local_ray_instance(tmp_path):
    """One local Ray instance (started once: it takes 10-30 s) runs both storage modes."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        for storage in ("shared", "per-run"):
            ws = tmp_path / storage
            res = run_sweep(ws, "ray2", strategies=["grpo", "bbg"], seeds=1, steps=2, sets=TINY, parallel=2,
                            backend="ray", ray_storage=storage)
            assert res.ok and len(res.run_ids) == 2 and {o.action for o in res.outcomes} == {"fresh"}
            store = ExperimentStore(ws)
            assert all(store.get_run(r)["last_step"] == 2 for r in res.run_ids)
            assert not (ws / "parts").exists() or not any((ws / "parts").iterdir())
    finally:
        ray.shutdown()


def test_merge_workspaces_keeps_every_row_and_renumbers_ids(tmp_path):
    """`workbench runs --merge`: runs trained in another workspace (another machine, a Ray
    task's own workspace) arrive with every row, their checkpoints and their experiment."""
    import fake_experiment as fx

    src = fx.fill(tmp_path / "src")
    src.record_checkpoint("fake-grpo-s0", 3, src.root / "checkpoints" / "fake-grpo-s0" / "step-3")
    (src.root / "checkpoints" / "fake-grpo-s0" / "step-3").mkdir(parents=True)
    (src.root / "checkpoints" / "fake-grpo-s0" / "step-3" / "weights.bin").write_bytes(b"w")
    dst = ExperimentStore(tmp_path / "dst")
    dst.create_run({"x": 1}, run_id="local")
    dst.write_evaluation("local", 0, "base", "eval", {"eval/pass@1": 0.1}, [{"problem_id": "q", "n": 2, "c": 1}])
    res = _cli("runs", "--workspace", str(dst.root), "--merge", str(src.root), "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)[0]
    assert sorted(out["runs"]) == sorted(f"fake-{s}-s{i}" for s in ("grpo", "bbg") for i in range(3))
    assert out["experiments"] == ["fake"]
    for rid in out["runs"]:
        assert dst.scalars(rid) == src.scalars(rid)
        ev_d, ev_s = dst.evaluations(rid), src.evaluations(rid)
        assert [(e["step"], e["label"], e["summary"]) for e in ev_d] == [(e["step"], e["label"], e["summary"]) for e in ev_s]
        assert [dst.eval_problems(rid, e["eval_id"]) for e in ev_d] == [src.eval_problems(rid, e["eval_id"]) for e in ev_s]
        assert dst.get_run(rid)["status"] == "finished"
    assert dst.evaluations("local")[0]["eval_id"] not in {e["eval_id"] for r in out["runs"] for e in dst.evaluations(r)}
    ck = dst.checkpoints("fake-grpo-s0")
    assert len(ck) == 1 and (Path(ck[0]["path"]) / "weights.bin").read_bytes() == b"w"
    assert Path(ck[0]["path"]).resolve().is_relative_to((tmp_path / "dst").resolve())
    rows = an.figure_table(dst, an.load(dst, "fake"), "eval", 8, "grpo")
    assert rows[1].effects["pass@8"].mean == pytest.approx(0.08)
    again = _cli("runs", "--workspace", str(dst.root), "--merge", str(src.root))
    assert again.returncode == 2 and "already exist" in again.stderr and "--skip-existing" in again.stderr
    from workbench.store.merge import merge_workspace

    skip = merge_workspace(dst, src.root, skip_existing=True)
    assert skip["runs"] == [] and len(skip["skipped"]) == 6


def test_schema_migration_adds_the_experiment_tables(tmp_path):
    """A store at the previous schema version (no experiment tables) is upgraded when opened:
    its runs are kept and experiments can be written."""
    import sqlite3

    from workbench.store.schema import SCHEMA_VERSION

    ws = tmp_path / "old"
    RunStore(ws).create_run({"x": 1}, run_id="kept")
    c = sqlite3.connect(ws / "store.sqlite")
    c.execute("DROP TABLE experiment_runs")
    c.execute("DROP TABLE experiments")
    c.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION - 1),))
    c.commit()
    c.close()
    store = RunStore(ws)
    assert store.get_run("kept")["run_id"] == "kept" and store.list_experiments() == []
    c = sqlite3.connect(ws / "store.sqlite")
    assert c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    assert {"experiments", "experiment_runs"} <= {r[0] for r in c.execute("SELECT name FROM sqlite_master")}
    c.close()
    store.create_experiment("e", {"steps": 1}, [{"run_id": "kept", "cell": {"strategy": "grpo"},
                                                 "cell_key": "strategy=grpo", "seed": 0}])
    assert store.experiment_of_run("kept") == ("e", {"strategy": "grpo"}, 0)
