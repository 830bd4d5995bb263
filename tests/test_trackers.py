"""report_to: the same per-step scalars and evaluation summaries reach TensorBoard, Trackio and
W&B (offline) as the run store has; a missing package is refused at start; a tracker that
fails mid-run loses nothing."""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from pathlib import Path

import pytest

# Trackio reads its folder once, when it is first imported: point it at a scratch folder
# before any test imports it (never the user's own Trackio database).
os.environ.setdefault("TRACKIO_DIR", tempfile.mkdtemp(prefix="workbench-trackio-"))

from workbench.cli import main  # noqa: E402
from workbench.errors import ConfigError  # noqa: E402
from workbench.store import RunStore  # noqa: E402
from workbench.trackers import check_report_to, parse_report_to  # noqa: E402

TINY = ["--steps", "2", "-B", "4", "-G", "2", "--eval.n", "4", "--eval.max_problems", "4",
        "--eval.seen_problems", "2", "--eval-every", "0", "--checkpoint_every", "0"]
SMALL = {"steps": 3, "rollout.prompts_per_step": 4, "rollout.group_size": 2, "eval.n": 4, "eval.max_problems": 4,
         "eval.seen_problems": 0, "eval.every": 0, "checkpoint_every": 0}


def test_report_to_names_follow_the_trainers_convention():
    assert parse_report_to("none") == [] and parse_report_to("") == [] and parse_report_to(None) == []
    assert parse_report_to(" TensorBoard, wandb,tensorboard ") == ["tensorboard", "wandb"]
    with pytest.raises(ConfigError, match=r"unknown tracker 'mlflow'.*trackio, tensorboard, wandb"):
        parse_report_to("tensorboard,mlflow")


def test_a_missing_tracker_package_is_refused_at_start_with_the_extra_to_install(tmp_path, monkeypatch, capsys):
    import workbench.trackers as trackers

    monkeypatch.setattr(trackers, "_installed", lambda module: module != "wandb")
    assert check_report_to("tensorboard") == ["tensorboard"]
    with pytest.raises(ConfigError, match=r"rlvr-workbench\[wandb\]"):
        check_report_to("tensorboard,wandb")
    ws = tmp_path / "runs"
    assert main(["train", "--quiet", "--workspace", str(ws), "--report-to", "wandb", *TINY]) == 2
    err = capsys.readouterr().err
    assert "pip install 'rlvr-workbench[wandb]'" in err and "Traceback" not in err
    assert not (ws / "store.sqlite").exists()            # refused before a run was created
    assert "wandb" not in parse_report_to("all")


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    """One CLI run of 2 steps mirrored to all three trackers (W&B offline)."""
    root = tmp_path_factory.mktemp("mirror")
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(root / "wandb-home"),
           "WANDB_CACHE_DIR": str(root / "wandb-cache"), "WANDB_CONFIG_DIR": str(root / "wandb-config"),
           "WANDB_DATA_DIR": str(root / "wandb-data"), "TRACKIO_PROJECT": f"test-{root.name}"}
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    ws = root / "runs"
    try:
        assert main(["train", "--quiet", "--workspace", str(ws), "--report-to", "trackio,tensorboard,wandb", *TINY]) == 0
    finally:
        mp.undo()
    store = RunStore(ws)
    run_id = store.list_runs()[0]["run_id"]
    steps = {k: dict(v) for k, v in store.scalars(run_id).items()}
    evals = {(e["label"], e["split"], e["step"]): e["summary"] for e in store.evaluations(run_id)}
    return {"ws": ws, "run_id": run_id, "steps": steps, "evals": evals, "project": env["TRACKIO_PROJECT"]}


def _expected(m):
    """What every tracker must have: the store's step scalars at their steps, and each
    evaluation's summary at its step (the base model at step 0; 'seen' prefixed)."""
    out: dict[str, dict[int, float]] = {}
    for key, series in m["steps"].items():
        out[key] = dict(series)
    for (label, split, step), summary in m["evals"].items():
        for key, value in summary.items():
            out.setdefault(("" if split == "eval" else f"{split}/") + key, {})[step] = value
    return out


def _same(got: dict[str, dict[int, float]], expected: dict[str, dict[int, float]], skip_nonfinite=False):
    for key in ["train/reward_mean", "train/entropy", "train/grad_norm", "perf/rollout_tok_s", "time/step",
                "eval/pass@1", "eval/pass@4", "collapse/mean_index", "boundary/gained", "seen/eval/pass@1"]:
        want = {s: v for s, v in expected[key].items() if not (skip_nonfinite and not math.isfinite(v))}
        assert set(got.get(key, {})) == set(want), key
        for s, v in want.items():
            assert got[key][s] == pytest.approx(v, rel=1e-6, nan_ok=True), (key, s)
    assert set(expected) - set(got) <= {k for k, v in expected.items() if skip_nonfinite and
                                       not any(math.isfinite(x) for x in v.values())}
    assert sorted(expected["train/reward_mean"]) == [1, 2] and sorted(expected["eval/pass@1"]) == [0, 2]


def test_tensorboard_receives_the_stores_scalars(mirrored):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = mirrored["ws"] / "tensorboard" / mirrored["run_id"]
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    got = {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}
    _same(got, _expected(mirrored))          # float32 in the event file: rel 1e-6 holds


def test_trackio_receives_the_stores_scalars(mirrored):
    import trackio.utils
    from trackio.sqlite_storage import SQLiteStorage

    assert str(trackio.utils.TRACKIO_DIR) == os.environ["TRACKIO_DIR"]     # the scratch folder, not the user's
    assert mirrored["run_id"] in SQLiteStorage.get_runs(mirrored["project"])
    got: dict[str, dict[int, float]] = {}
    for row in SQLiteStorage.get_logs(mirrored["project"], mirrored["run_id"]):
        for key, value in row.items():
            if isinstance(value, (int, float)) and key not in ("step", "timestamp"):
                got.setdefault(key, {})[row["step"]] = value
    _same(got, _expected(mirrored), skip_nonfinite=True)


def test_wandb_offline_run_holds_the_stores_scalars(mirrored):
    from wandb.proto import wandb_internal_pb2 as pb

    files = list((mirrored["ws"] / "wandb").glob(f"offline-run-*-{mirrored['run_id']}/run-{mirrored['run_id']}.wandb"))
    assert len(files) == 1, files
    got: dict[str, dict[int, float]] = {}
    for data in _wandb_records(files[0].read_bytes()):
        rec = pb.Record()
        rec.ParseFromString(data)
        if rec.WhichOneof("record_type") != "history":
            continue
        row = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item}
        for key, value in row.items():
            if not key.startswith("_") and isinstance(value, (int, float)):
                got.setdefault(key, {})[row["_step"]] = value
    _same(got, _expected(mirrored))


def _wandb_records(blob: bytes):
    """Records of a W&B transaction log (a LevelDB-style log: 7-byte file header, 32 KiB
    blocks, each record a 7-byte header (crc32, length, type) and its data)."""
    assert blob[:4] == b":W&B", "not a W&B transaction log"
    pos, block, parts = 7, 32768, b""
    while pos + 7 <= len(blob):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", blob[pos:pos + 7])
        data = blob[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 1:            # a whole record
            yield data
        elif kind == 2:          # first part
            parts = data
        elif kind == 3:          # middle
            parts += data
        elif kind == 4:          # last
            yield parts + data
        else:
            break


def test_a_tracker_failing_mid_run_loses_nothing(tmp_path, monkeypatch):
    import workbench.trackers as trackers
    from workbench.session import Session

    calls = []

    def failing_log(self, metrics, step):
        calls.append(step)
        if step == 2:
            raise OSError("disk full")

    monkeypatch.setattr(trackers._TensorBoard, "log", failing_log)
    sess = Session(workspace=str(tmp_path / "runs"), report_to="tensorboard", **SMALL)
    with pytest.warns(RuntimeWarning, match="mirroring to tensorboard failed at step 2"):
        records = list(sess.run())
    assert [r["step"] for r in records] == [1, 2, 3]                  # training went on
    assert calls == [0, 1, 2]                                          # base eval, step 1, step 2; then off
    store = RunStore(tmp_path / "runs")
    assert [s for s, _ in store.scalars(sess.run_id)["train/reward_mean"]] == [1, 2, 3]
    assert store.get_run(sess.run_id)["status"] == "finished"
    errors = [e for e in store.events(sess.run_id) if e["kind"] == "tracker_error"]
    assert len(errors) == 1 and errors[0]["payload"]["tracker"] == "tensorboard"
    assert errors[0]["payload"]["step"] == 2 and "disk full" in errors[0]["payload"]["message"]


def test_a_resumed_run_replaces_the_steps_it_recomputes_in_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from workbench.session import Session

    ws = str(tmp_path / "runs")
    sess = Session(workspace=ws, report_to="tensorboard", **{**SMALL, "steps": 4, "checkpoint_every": 2})
    for rec in sess.run():
        if rec["step"] == 3:          # stopped after step 3: the last checkpoint is step 2
            break
    again = Session.resume(sess.run_id, workspace=ws)
    assert again.step_count == 2
    list(again.run())                 # recomputes step 3, then step 4
    acc = EventAccumulator(str(tmp_path / "runs" / "tensorboard" / sess.run_id), size_guidance={"scalars": 0})
    acc.Reload()
    logged = [(e.step, e.value) for e in acc.Scalars("train/reward_mean")]
    stored = RunStore(ws).scalars(sess.run_id)["train/reward_mean"]
    assert [s for s, _ in logged] == [1, 2, 3, 4]             # step 3 once: the first one was purged
    assert [v for _, v in logged] == pytest.approx([v for _, v in stored])
