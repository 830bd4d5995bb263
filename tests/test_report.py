"""Experiment tables, claims and the HTML report (hand-filled experiment), and
`workbench reproduce --quick` end to end."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fake_experiment as fx
from workbench import stats
from workbench.experiments import analysis as an
from workbench.experiments.claims import engine_claims
from workbench.report import build_report, write_report

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake(tmp_path):
    return fx.fill(tmp_path / "ws")


def self_contained(text: str) -> None:
    """No script, stylesheet or image is fetched from the network; plotly's JS is inline."""
    assert not re.search(r"<script[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", text, re.I)
    assert not re.search(r"<link[^>]*href\s*=\s*[\"']?(https?:)?//", text, re.I)
    assert not re.search(r"<img[^>]*src\s*=\s*[\"']?(https?:)?//", text, re.I)
    assert "plotly.js v" in text or "Plotly" in text
    assert len(text) > 1_000_000  # the plotly bundle itself


def test_table_means_intervals_and_paired_effects_by_hand(fake):
    exp = an.load(fake, "fake")
    assert [c.label for c in exp.cells] == ["grpo", "bbg"] and exp.seeds == [0, 1, 2]
    rows = an.figure_table(fake, exp, "eval", 8, "grpo")
    grpo, bbg = rows
    assert grpo.values["pass@1"].mean == pytest.approx(0.36) and grpo.values["pass@1"].n == 3
    assert grpo.values["Δ pass@8 vs base"].mean == pytest.approx(0.52 - 0.60)
    e = grpo.values["pass@1"]
    ref = stats.bootstrap_mean([0.35, 0.36, 0.37])
    assert (e.lo, e.hi) == pytest.approx((ref.lo, ref.hi)) and e.lo < 0.36 < e.hi
    # BBG − GRPO is the same in every seed: the paired interval is that single value
    eff = bbg.effects["pass@8"]
    assert eff.mean == pytest.approx(0.08) and eff.lo == pytest.approx(0.08) and eff.hi == pytest.approx(0.08)
    assert bbg.effects["boundary lost"].mean == pytest.approx(-2.0) and grpo.effects["pass@8"] is None
    # k not on the stored curve: pass@k from the per-problem (n, c): problems c = 0, 2, 8 of n = 8
    rows3 = an.figure_table(fake, exp, "eval", 3, "grpo")
    expect = (0 + (1 - (6 * 5 * 4) / (8 * 7 * 6)) + 1) / 3
    assert rows3[0].values["pass@3"].mean == pytest.approx(expect)
    band = an.cell_bands(fake, exp, "train", "train/reward_mean")["strategy=grpo"]
    assert band.x == [1, 2, 3] and band.n == [3, 3, 3] and band.mean[0] == pytest.approx(0.36)


def test_engine_claims_and_verdicts(fake):
    exp = an.load(fake, "fake")
    claims = {c.claim: c for c in engine_claims(fake, exp, 8)}
    up = claims["GRPO raises pass@1"]
    assert up.effect.mean == pytest.approx(0.06) and up.verdict == stats.SHOWN
    assert claims["GRPO lowers large-k pass@k"].verdict == stats.SHOWN                      # -0.10, -0.08, -0.06
    bbg = claims["BBG keeps large-k pass@k nearer the base than GRPO"]
    assert bbg.verdict == stats.SHOWN and bbg.effect.n == 3
    assert claims["BBG loses fewer problems from the boundary"].verdict == stats.SHOWN
    assert not any("IAC" in c for c in claims)  # no IAC cell: no IAC claim


def test_report_is_self_contained_with_claims_table_and_bands(fake, tmp_path):
    out = write_report(fake.root, "fake", tmp_path / "r.html")
    text = out.read_text()
    self_contained(text)
    for needed in ("<h2>Claims</h2>", "GRPO raises pass@1", "2606.15455", "shown", "(n=3)", "Δ pass@8 vs base",
                   "mean over seeds, 95% band", "workbench sweep (hand-filled)", "fake-bbg-s2"):
        assert needed in text, needed
    assert text.count("fill\":\"tonexty\"") >= 2  # band traces for the cells
    res = subprocess.run([sys.executable, "-m", "workbench.cli", "report", "nope", "--workspace", str(fake.root)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "unknown experiment 'nope'" in res.stderr and "fake" in res.stderr


def test_report_with_two_seeds_shows_points_not_bands(tmp_path):
    store = fx.fill(tmp_path / "ws")
    band = '"fill":"tonexty"'
    html = build_report(store, "fake", k=8)
    assert band in html
    # drop seed 2 from the experiment: n = 2 everywhere
    with store._db.write() as c:
        c.execute("DELETE FROM experiment_runs WHERE seed = 2")
    html2 = build_report(store, "fake", k=8)
    assert band not in html2 and "points" in html2 and "not shown at this scale" in html2


def test_reproduce_quick_runs_end_to_end(tmp_path):
    ws = tmp_path / "ws"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "workbench.cli", "reproduce", "--quick", "--workspace", str(ws),
                          "--parallel", "2", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert out["ok"] and len(out["runs"]) == 6 and all(r["status"] == "finished" for r in out["runs"])
    claims = out["claims"]
    where = {c["where"] for c in claims}
    assert where == {"engine", "simulator"}
    assert all(c["verdict"] in stats.VERDICTS for c in claims)
    assert all(c["source"] and c["measure"] and "n=" in c["effect"] for c in claims)
    assert all(c["estimate"]["n"] == 3 for c in claims if c["where"] == "engine")
    text = Path(out["report"]).read_text()
    self_contained(text)
    assert "Simulator suite" in text and "wall time" in text and "reproduce --quick" in text
    assert not math.isnan(out["seconds"])


def test_an_unfinished_run_is_left_out_not_compared_at_an_earlier_step(fake):
    """A run whose last evaluation is before the experiment's last step (it crashed, or is
    still running) does not enter the final figures: n drops to 2 for its cell."""
    rid = "fake-bbg-s1"
    with fake._db.write() as c:
        c.execute("DELETE FROM evaluations WHERE run_id = ? AND label = 'policy'", (rid,))
    fake.write_evaluation(rid, 2, "policy", "eval", fx.final("bbg", 1), [{"problem_id": "p0", "n": 8, "c": 1}])
    rows = an.figure_table(fake, an.load(fake, "fake"), "eval", 8, "grpo")
    assert rows[0].values["pass@1"].n == 3 and rows[1].values["pass@1"].n == 2
    assert rows[1].values["pass@1"].seeds == (0, 2) and rows[1].effects["pass@8"].n == 2


def test_a_run_with_another_base_model_is_flagged(fake, tmp_path):
    assert an.base_mismatch(fake, an.load(fake, "fake")) == []
    rid = "fake-bbg-s2"
    with fake._db.write() as c:
        c.execute("DELETE FROM evaluations WHERE run_id = ? AND label = 'base'", (rid,))
    fake.write_evaluation(rid, 0, "base", "eval", {**fx.BASE, "eval/pass@1": 0.0}, [{"problem_id": "p0", "n": 8, "c": 0}])
    assert an.base_mismatch(fake, an.load(fake, "fake")) == [rid]
    assert f"WARNING" in build_report(fake, "fake") and rid in build_report(fake, "fake")
