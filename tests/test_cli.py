"""The command line: machine-readable output, export, and errors without tracebacks."""

from __future__ import annotations

import csv
import json

from workbench.cli import main
from workbench.session import Session


def test_eval_json_on_the_embedded_model(capsys):
    rc = main(["eval", "--n", "8", "--ks", "1,4,8", "--max-problems", "6", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["pass_at_k"]) == {"1", "4", "8"}
    p = [out["pass_at_k"][k] for k in ("1", "4", "8")]
    assert 0.0 <= p[0] <= p[1] <= p[2] <= 1.0
    assert out["n"] == 8 and out["num_problems"] == 6
    for key in ("mean_entropy", "mean_distinct_correct_modes", "frac_unsolved"):
        assert isinstance(out[key], float)
    assert out["mean_entropy"] > 0


def test_eval_rejects_k_larger_than_n(capsys):
    assert main(["eval", "--n", "4", "--ks", "1,8", "--json"]) == 2
    assert "--n 4 is smaller than the largest k" in capsys.readouterr().err


def test_train_runs_list_export_and_eval_checkpoint(tmp_path, capsys):
    ws = str(tmp_path / "runs")
    rc = main(["train", "--quiet", "--workspace", ws, "--steps", "2", "-B", "4", "-G", "2", "--eval.n", "4",
               "--eval.max_problems", "4", "--eval.seen_problems", "0", "--set", "grpo.eps=1e-5"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "run store:" in out and "store.sqlite" in out

    assert main(["runs", "--workspace", ws, "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert len(runs) == 1 and runs[0]["step"] == 2 and runs[0]["status"] == "finished"
    run_id = runs[0]["run_id"]

    dest = tmp_path / "run.csv"
    assert main(["runs", "--workspace", ws, "--export", run_id, "--out", str(dest)]) == 0
    rows = list(csv.DictReader(dest.open()))
    assert [r["step"] for r in rows] == ["1", "2"] and "train/reward_mean" in rows[0]

    capsys.readouterr()
    assert main(["eval", "--run", run_id, "--workspace", ws, "--n", "4", "--max-problems", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run"] == run_id and out["step"] == 2 and out["num_problems"] == 3


def test_eval_line_shows_the_boundary_at_the_users_k_and_the_collapse_sample_size():
    from workbench.cli import _eval_line

    line = _eval_line({"eval/pass@1": 0.5, "eval/pass@8": 0.7, "eval/pass@64": 0.9, "boundary/gained": 2,
                       "boundary/lost": 1, "boundary/report_k": 8, "boundary/passk_delta@8": -0.125,
                       "boundary/passk_delta@64": 0.25, "collapse/mean_index": 0.25, "collapse/matched_m_mean": 4.5})
    assert "boundary +2/-1" in line and "Δpass@8 -0.125" in line and "collapse 0.25 (m 4.5)" in line
    assert "Δpass@" not in _eval_line({"eval/pass@1": 0.5})


def test_bad_input_gets_a_message_not_a_traceback(tmp_path, capsys):
    ws = str(tmp_path / "runs")
    assert main(["train", "--workspace", ws, "--task", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown task 'nope'") and "two_primes" in err and "Traceback" not in err
    assert main(["train", "--workspace", ws, "--lr", "-1"]) == 2
    assert "optim.lr = -1.0 is not allowed" in capsys.readouterr().err
    assert main(["train", "--workspace", ws, "--resume", "no-such-run"]) == 2
    assert "unknown run 'no-such-run'" in capsys.readouterr().err
    assert main(["train", "--workspace", ws, "--set", "rollout.group_size"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_resume_with_more_steps(tmp_path, capsys):
    ws = str(tmp_path / "runs")
    sess = Session(workspace=ws, steps=1, **{"rollout.prompts_per_step": 4, "rollout.group_size": 2, "eval.n": 4,
                                              "eval.max_problems": 4, "eval.seen_problems": 0})
    list(sess.run())
    assert main(["train", "--quiet", "--workspace", ws, "--resume", sess.run_id, "--steps", "2"]) == 0
    assert f"resuming run {sess.run_id} at step 1" in capsys.readouterr().out
    from workbench.store import RunStore

    assert RunStore(ws).last_step(sess.run_id) == 2
