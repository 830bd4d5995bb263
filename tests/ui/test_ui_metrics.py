"""The All metrics view: every logged scalar can be found and plotted, with smoothing, log
scale and a choice of x axis; the panel is drawn only while its tab is on screen."""

from __future__ import annotations

import pytest

from ui import live, metrics_view as mv
from ui.views import reward_figure

RID = "fake-run"


def test_catalog_groups_every_logged_scalar_and_evaluation_figure(fake_store):
    cat = mv.metric_catalog(fake_store, RID)
    logged = set(fake_store.scalar_keys(RID))
    listed = {k for ks in cat.values() for k in ks}
    assert logged <= listed                                   # every step scalar is listed
    assert "eval/pass@1" in cat["eval"] and "boundary/lost" in cat["boundary"] and "time/step" in cat["time"]
    assert list(cat) == [g for g in (*mv.GROUPS, "other") if g in cat]
    assert mv.select(cat, "frac clip") == ["train/clip_frac", "train/clip_frac_high", "train/clip_frac_low"]
    assert mv.select(cat, "", ["time"]) == ["time/step"]
    assert mv.select(cat, "PASS@1", ["eval"]) == ["eval/pass@1"]


def test_ema_matches_a_hand_computation():
    w = 0.5
    # s1 = 0.5*0 + 0.5*2 = 1 -> /(1-0.5) = 2; s2 = 0.5*1 + 0.5*4 = 2.5 -> /(1-0.25) = 10/3
    out = mv.ema([2.0, None, 4.0], w)
    assert out[0] == pytest.approx(2.0) and out[1] is None and out[2] == pytest.approx(10 / 3)
    assert mv.ema([1.0, 5.0], 0.0) == [1.0, 5.0]
    with pytest.raises(ValueError):
        mv.ema([1.0], 1.0)


def test_x_axes(fake_store):
    steps = [0, 1, 2, 15]
    assert mv.x_values(fake_store, RID, steps, "step") == [0.0, 1.0, 2.0, 15.0]
    fake_store.write_step(RID, 16, {"train/num_tokens": 100.0})
    fake_store.write_step(RID, 17, {"train/num_tokens": 50.0})
    # steps 1..15 logged no tokens; an evaluation after step 16 has seen 100, after 17: 150
    assert mv.x_values(fake_store, RID, [0, 15, 16, 17], "tokens") == [0.0, 0.0, 100.0, 150.0]
    wall = mv.x_values(fake_store, RID, [1, 17], "wall")
    assert wall[0] >= 0 and wall[1] >= wall[0]
    with pytest.raises(ValueError):
        mv.x_values(fake_store, RID, steps, "fortnights")


def test_figure_draws_the_search_result_with_smoothing_and_log_scale(fake_store):
    fig = mv.all_metrics_figure(fake_store, RID, query="entropy", smoothing=0.6, log_y=True)
    titles = [a.text for a in fig.layout.annotations]
    assert "train/entropy" in titles and "eval/mean_entropy" in titles
    raw = next(t for t in fig.data if t.name == "train/entropy (raw)")
    smooth = next(t for t in fig.data if t.name == "train/entropy")
    assert raw.opacity < 1 and list(raw.y) != list(smooth.y)            # smoothing changes the drawn trace
    assert smooth.y[-1] > raw.y[-1]                                    # a falling series lags behind
    assert fig.layout.yaxis.type == "log"
    plain = mv.all_metrics_figure(fake_store, RID, query="train/entropy")
    assert [t.name for t in plain.data] == ["train/entropy"]
    none = mv.all_metrics_figure(fake_store, RID, query="no-such-metric")
    assert "no metric matches" in none.layout.annotations[0].text


def test_all_metrics_panel_is_drawn_only_on_its_tab(fake_store):
    cache = live.CachedStore(fake_store)
    hidden = live.Options()
    out, seen, _ = live.refresh(cache, RID, None, hidden, now=0.0)
    assert not out["all_metrics"].data                                 # a placeholder while hidden
    shown = live.Options(tab="metrics", metrics=("grad", (), 0.0, False, "step"))
    out, seen, _ = live.refresh(cache, RID, seen, shown, now=1.0)
    assert set(out) == {"all_metrics"}                                 # opening the tab draws it alone
    fake_store.write_step(RID, 16, {"train/grad_norm": 0.7})
    out, seen, _ = live.refresh(cache, RID, seen, shown, now=1.0 + live.THROTTLE_SECONDS)
    assert [a.text for a in out["all_metrics"].layout.annotations] == ["train/grad_norm"]


def test_reward_and_pass1_drawn_once_when_they_coincide(tmp_path):
    from workbench.store import RunStore

    store = RunStore(tmp_path)
    rid = store.create_run({"steps": 3}, run_id="binary")
    for s, v in ((1, 0.25), (2, 0.5)):
        store.write_step(rid, s, {"train/reward_mean": v, "train/pass@1": v})
    names = [t.name for t in reward_figure(store, rid).data]
    assert "reward = pass@1 (0/1 rewards)" in names and "reward (mean)" not in names


def test_exports_and_runs_filter(fake_store):
    import csv
    import json

    from ui.control import Controller

    ctl = Controller(fake_store.root)
    path = ctl.export(RID, "csv")
    rows = list(csv.reader(path.open()))
    assert rows[0][0] == "step" and "train/entropy" in rows[0]
    assert [int(r[0]) for r in rows[1:]] == list(range(1, 16))          # every step, once
    doc = json.loads(ctl.export(RID, "evaluations").read_text())
    assert [(e["label"], e["step"]) for e in doc["evaluations"]][:2] == [("base", 0), ("policy", 5)]
    assert all(p["problem_id"] for e in doc["evaluations"] for p in e["problems"])
    assert ctl.export(RID, "parquet").stat().st_size > 0
    with pytest.raises(Exception, match="unknown export"):
        ctl.export(RID, "xlsx")
    assert ctl.runs_rows()[0][2] == "grpo→bbg@8"                      # the strategy sequence
    assert [r[0] for r in ctl.filtered_rows("bbg@8 finished")] == [RID]
    assert ctl.filtered_rows("no-such-word") == []


def test_rename_notes_tags_and_delete(fake_store):
    from ui import forms
    from ui.control import Controller

    ctl = Controller(fake_store.root)
    ckpt = fake_store.root / "checkpoints" / RID / "step-15"
    ckpt.mkdir(parents=True)
    (ckpt / "adapter.safetensors").write_bytes(b"x")
    ctl.annotate(RID, "first try", "lr too high?", "baseline, lr-sweep")
    assert ctl.run_meta(RID) == ("first try", "lr too high?", "baseline, lr-sweep")
    row = ctl.runs_rows()[0]
    assert row[-2:] == ["first try", "baseline, lr-sweep"]
    assert [r[0] for r in ctl.filtered_rows("lr-sweep")] == [RID]
    with pytest.raises(forms.FormError, match="a tag is"):
        ctl.annotate(RID, "x", "", "has space")
    with pytest.raises(forms.FormError, match="type its id"):
        ctl.delete(RID, "")
    fake_store.set_status(RID, "running")
    with pytest.raises(forms.FormError, match="stop it first"):
        ctl.delete(RID, RID)
    fake_store.set_status(RID, "finished")
    assert "deleted" in ctl.delete(RID, RID)
    assert ctl.runs_rows() == [] and not ckpt.exists()
