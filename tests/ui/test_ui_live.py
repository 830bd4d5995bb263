"""The live view's refresh path: redraw only what changed, fetch only what is new."""

from __future__ import annotations

import fake_run

from ui import live

RID = "fake-run"
OPTS = live.Options()


def test_refresh_redraws_only_what_changed(fake_store):
    cache = live.CachedStore(fake_store)
    out, seen, version = live.refresh(cache, RID, None, OPTS, now=0.0)
    assert set(out) == {"reward", "entropy", "diagnostics", "passk", "boundary", "heatmap", "detail", "tables",
                        "all_metrics"}
    assert version[0] == fake_run.STEPS

    out, seen2, _ = live.refresh(cache, RID, seen, OPTS, now=1.0)
    assert out == {} and seen2 == seen                            # nothing new: nothing drawn

    fake_store.write_step(RID, 16, {"train/reward_mean": 2.0, "train/entropy": 0.1})
    out, seen, _ = live.refresh(cache, RID, seen, OPTS, now=2.0)
    assert out == {}                                              # new steps only: throttled
    out, seen, _ = live.refresh(cache, RID, seen, OPTS, now=2.0 + live.THROTTLE_SECONDS)
    assert set(out) == {"reward", "entropy", "diagnostics", "tables"}   # no evaluation: Pass@k etc. kept
    reward = next(t for t in out["reward"].data if t.name == "reward (mean)")
    assert reward.x[-1] == 16 and reward.y[-1] == 2.0

    out, seen, _ = live.refresh(cache, RID, seen, live.Options(color="collapse_index"), now=9.0)
    assert set(out) == {"heatmap"}                                # an option changes its figure only

    # a strategy switch shows at once on every step-axis figure, throttle or not
    fake_store.add_event(RID, 16, "strategy", {"name": "rloo", "pieces": ["rloo"], "params": {}, "loss": {}})
    out, seen, _ = live.refresh(cache, RID, seen, live.Options(color="collapse_index"), now=9.5)
    assert {"reward", "entropy", "diagnostics", "boundary", "heatmap"} <= set(out) and "passk" not in out
    assert any("rloo" in a.text for a in out["reward"].layout.annotations)


def test_cached_store_matches_store_and_fetches_incrementally(fake_store):
    cache = live.CachedStore(fake_store)
    keys = ["train/reward_mean", "train/entropy"]
    assert cache.scalars(RID, keys=keys) == fake_store.scalars(RID, keys=keys)
    calls = []
    orig = fake_store.scalars
    fake_store.scalars = lambda *a, **k: calls.append(k.get("since_step")) or orig(*a, **k)
    fake_store.write_step(RID, 16, {"train/reward_mean": 9.0})
    cache.sync(RID)
    assert calls == [15]                                          # only the steps after the last seen one
    assert cache.scalars(RID, keys=keys)["train/reward_mean"][-1] == (16, 9.0)
    assert cache.events(RID, kind="strategy")[-1]["payload"]["name"] == "bbg"
    assert len(cache.evaluations(RID, split="eval")) == 4


def test_truncation_on_resume_resets_the_cache(fake_store):
    cache = live.CachedStore(fake_store)
    cache.sync(RID)
    fake_store.truncate_after(RID, 10)
    fake_store.add_event(RID, 10, "resumed", {"from_step": 10})
    fake_store.write_step(RID, 11, {"train/reward_mean": -1.0})
    cache.sync(RID)
    pts = cache.scalars(RID, keys=["train/reward_mean"])["train/reward_mean"]
    assert pts[-1] == (11, -1.0) and len(pts) == 11


def test_unknown_run_draws_empty_figures_once(fake_store):
    cache = live.CachedStore(fake_store)
    out, seen, version = live.refresh(cache, "starting-run", None, OPTS)
    assert version is None and not out["reward"].data
    out, _, _ = live.refresh(cache, "starting-run", seen, OPTS)
    assert out == {}
