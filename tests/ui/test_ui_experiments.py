"""The Compare tab's experiment view: curves as mean lines with 95% bands over seeds, the
final-figures table with intervals and the effects against a chosen baseline."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: fake_experiment

import fake_experiment as fx  # noqa: E402

from ui import compare  # noqa: E402


@pytest.fixture
def exp_store(tmp_path):
    return fx.fill(tmp_path / "ws")


def _band_traces(fig):
    return [t for t in fig.data if getattr(t, "fill", None) == "tonexty"]


def test_experiment_view_bands_table_and_effects(exp_store):
    from workbench.store import RunStore

    plain = RunStore(exp_store.root)  # the dashboard holds a plain RunStore
    assert compare.experiment_choices(plain) == ["fake"]
    assert compare.experiment_cells(plain, "fake") == ["grpo", "bbg"]
    view = compare.experiment_view(plain, "fake", k=8)
    assert view["baseline"] == "grpo"
    figs = view["figures"]
    assert set(figs) == {"held-out pass@1", "held-out pass@8", "collapse index", "policy entropy (training samples)"}
    fig = figs["held-out pass@1"]
    assert len(_band_traces(fig)) == 2                                  # one band per cell, 3 seeds each
    mean = [t for t in fig.data if t.name == "grpo (n=3)"][0]
    assert list(mean.x) == [0, 3] and mean.y[1] == pytest.approx(0.36)
    headers, rows = view["values"]
    assert headers[:4] == ["cell", "seeds", "pass@1", "pass@8"]
    assert rows[0][0] == "grpo" and rows[0][1] == 3 and rows[0][2].startswith("0.360 [") and "(n=3)" in rows[0][2]
    for col in ("boundary gained", "boundary lost", "collapse index", "over-sharpened share"):
        assert col in headers
    eh, er = view["effects"]
    assert er == [["bbg − grpo", *er[0][1:]]] and er[0][eh.index("pass@8")] == "0.080 [0.080, 0.080] (n=3)"
    # another baseline and another k
    other = compare.experiment_view(plain, "fake", k=3, baseline="bbg")
    assert other["baseline"] == "bbg" and other["effects"][1][0][0] == "grpo − bbg"
    assert "pass@3" in other["values"][0]


def test_experiment_view_with_two_seeds_shows_points(exp_store):
    with exp_store._db.write() as c:
        c.execute("DELETE FROM experiment_runs WHERE seed = 2")
    view = compare.experiment_view(exp_store, "fake", k=8)
    fig = view["figures"]["held-out pass@1"]
    assert not _band_traces(fig)
    assert any(t.mode == "markers" and "seed" in t.name for t in fig.data)
    assert "points" in view["values"][1][0][2] and "fewer than 3 seeds" in view["summary"]


def test_no_experiment_yet(tmp_path):
    from workbench.store import RunStore

    store = RunStore(tmp_path / "empty")
    assert compare.experiment_choices(store) == []
    view = compare.experiment_view(store, None)
    assert view["values"][1] == [] and "workbench sweep" in view["summary"]
