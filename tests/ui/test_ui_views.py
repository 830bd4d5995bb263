"""View functions (store -> figures) on a hand-filled store: the figures' contents, not
only that something returned. fake_run: 15 steps, evaluations at 0 (base), 5, 10, 15;
grpo from step 1, bbg switched in after step 8 (in force from step 9)."""

from __future__ import annotations

import math

import fake_run
import pytest

from ui import compare, drilldown, forms, tables, views
from ui.timeline import downsample, spans_from_events, strategy_spans

RID = "fake-run"


def _trace(fig, name):
    found = [t for t in fig.data if t.name == name]
    assert found, f"no trace {name!r} in {[t.name for t in fig.data]}"
    return found[0]


def _shading(fig):
    """(x0, x1) of the shaded spans and the timeline's labels."""
    rects = [(s.x0, s.x1) for s in fig.layout.shapes if s.type == "rect"]
    lines = [s.x0 for s in fig.layout.shapes if s.type == "line" and s.xref == "x"]
    labels = [a.text for a in fig.layout.annotations]
    return rects, lines, labels


def test_strategy_spans(fake_store):
    spans = strategy_spans(fake_store, RID)
    assert [(s.name, s.start, s.end) for s in spans] == [("grpo", 0, 8), ("bbg", 8, 15)]
    assert [(s.x0, s.x1) for s in spans] == [(0.0, 8.5), (8.5, 15.5)]
    # two switches at one step (while paused): the later wins; the last span reaches last_step
    evs = [{"id": 1, "step": 0, "payload": {"name": "grpo"}}, {"id": 2, "step": 4, "payload": {"name": "rloo"}},
           {"id": 3, "step": 4, "payload": {"name": "bbg"}}]
    assert [(s.name, s.start, s.end) for s in spans_from_events(evs, 10)] == [("grpo", 0, 4), ("bbg", 4, 10)]


@pytest.mark.parametrize("fn", [views.reward_figure, views.entropy_figure, views.diagnostics_figure])
def test_step_figures_shade_the_timeline(fake_store, fn):
    rects, lines, labels = _shading(fn(fake_store, RID))
    assert rects == [(0.0, 8.5), (8.5, 15.5)]
    assert lines == [8.5]
    assert labels[0] == "grpo" and "bbg" in labels[1] and "step 8" in labels[1]


def test_reward_figure(fake_store):
    fig = views.reward_figure(fake_store, RID)
    reward = _trace(fig, "reward (mean)")
    assert list(reward.x) == list(range(1, 16))
    assert reward.y[4] == pytest.approx(0.5)
    evald = _trace(fig, "pass@1 (held-out eval)")
    assert list(evald.x) == [0, 5, 10, 15]
    # held-out pass@1 at step 10: c = 8, 4, 0, 1 of n = 8
    assert evald.y[2] == pytest.approx((8 + 4 + 0 + 1) / 32)


def test_entropy_figure_has_covariance_on_second_axis(fake_store):
    fig = views.entropy_figure(fake_store, RID)
    assert _trace(fig, "policy entropy (nats/token)").y[0] == pytest.approx(0.95)
    cov = _trace(fig, "cov(log π, A)")
    assert cov.yaxis == "y2" and cov.y[-1] == pytest.approx(0.15)
    assert list(_trace(fig, "entropy (eval samples)").x) == [0, 5, 10, 15]


def test_diagnostics_figure(fake_store):
    fig = views.diagnostics_figure(fake_store, RID)
    assert _trace(fig, "clipped high (A>0)").y[0] == pytest.approx(0.02)
    assert _trace(fig, "KL(π‖π_ref)").yaxis == "y2"
    assert _trace(fig, "all wrong").y[3] == pytest.approx(0.3)


def test_passk_figure(fake_store):
    fig = views.passk_figure(fake_store, RID)
    base = _trace(fig, "base model")
    assert base.line.dash == "dash"
    assert list(base.x) == fake_run.KS
    assert base.y[0] == pytest.approx((6 + 2 + 1 + 0) / 32)
    assert [t.name for t in fig.data] == ["base model", "step 5", "step 10", "step 15"]
    chosen = views.passk_figure(fake_store, RID, steps=[10])
    assert [t.name for t in chosen.data] == ["base model", "step 10"]
    assert views.default_passk_steps(list(range(5, 55, 5))) == [5, 20, 35, 50]


def test_boundary_figure(fake_store):
    fig = views.boundary_figure(fake_store, RID)
    gained, lost, kept = (_trace(fig, n) for n in ("gained", "lost", "kept"))
    assert list(gained.x) == [0, 5, 10, 15]
    assert list(gained.y) == [0, 0, 1, 1]      # p4 solved from step 10
    assert list(lost.y) == [0, 0, 1, 1]        # p3 lost at step 10
    assert list(kept.y) == [3, 3, 2, 2]
    assert list(_trace(fig, "gained (c ≥ 2)").y) == [0, 0, 0, 1]
    rects, lines, _ = _shading(fig)
    assert rects == [(0.0, 8.5), (8.5, 15.5)] and lines == [8.5]


def test_boundary_figure_title_shows_the_pass_at_k_shift_at_the_users_k(fake_store):
    assert "Δpass@" not in views.boundary_figure(fake_store, RID).layout.title.text   # older summaries: none
    fake_store.write_evaluation(RID, 16, "policy", "eval",
                                {"boundary/gained": 1, "boundary/lost": 1, "boundary/kept": 2, "boundary/never": 0,
                                 "boundary/report_k": 8, "boundary/passk_delta@8": -0.125}, [])
    assert "Δpass@8 -0.125 at step 16" in views.boundary_figure(fake_store, RID).layout.title.text


def test_collapse_heatmap(fake_store):
    m = views.heatmap_matrix(fake_store, RID, "eff_modes")
    assert m["x"] == [0, 5, 10, 15] and m["labels"][0] == "base"
    assert m["y"] == ["p1", "p2", "p3", "p4"]          # base-solved first
    h = -(3 / 6 * math.log(3 / 6) + 2 / 6 * math.log(2 / 6) + 1 / 6 * math.log(1 / 6))
    assert m["z"][0][0] == pytest.approx(math.exp(h))
    assert m["z"][0][2] == pytest.approx(1.0)             # p1 collapsed to one mode
    assert m["z"][3][0] is None                           # p4 unsolved by the base: undefined
    ci = views.heatmap_matrix(fake_store, RID, "collapse_index")
    assert ci["z"][0][0] == 0.0 and ci["z"][0][2] == pytest.approx(1 - 1 / math.exp(h))
    fig = views.collapse_heatmap(fake_store, RID, color="collapse_index")
    assert fig.data[0].type == "heatmap" and fig.data[0].zmax == 1.0
    rects, lines, labels = _shading(fig)
    assert lines == [8.5] and any("bbg" in t for t in labels)
    assert rects and all(s.y0 >= 1.0 for s in fig.layout.shapes if s.type == "rect")  # the band above the cells


def test_problem_detail(fake_store):
    d = drilldown.problem_detail(fake_store, RID, "p1")
    assert "p1" in d["summary"] and "6/8" in d["summary"]
    modes = d["modes"]
    a = _trace(modes, "a")
    assert list(a.x) == [0, 5, 10, 15]
    assert list(a.y) == pytest.approx([3 / 8, 5 / 8, 1.0, 1.0])
    assert list(_trace(modes, "c").y) == pytest.approx([1 / 8, 0, 0, 0])
    assert modes.layout.barmode == "stack"
    bank = d["bank"]
    assert sorted(t.name for t in bank.data) == ["a", "b", "c"]
    assert list(_trace(bank, "a").y) == pytest.approx([0.0, 0.7, 0.7, 0.7])   # sharpened up
    assert _trace(bank, "b").y[1] == pytest.approx(-0.5)                       # sharpened away
    assert d["samples"][0][0] == 15 and d["samples"][-1][0] == "base"
    nothing = drilldown.problem_detail(fake_store, RID, "p4")
    assert "nothing banked" in nothing["bank"].layout.annotations[0].text
    assert drilldown.problem_ids(fake_store, RID) == fake_run.PROBLEMS


def test_compare_figures(tmp_path):
    store = fake_run.fill(tmp_path, "a")
    fake_run.fill(tmp_path, "b", switch_at=None)
    figs = compare.compare_figures(store, ["a", "b", "missing"])
    assert [t.name for t in figs["entropy"].data if t.showlegend is not False] == ["a (grpo → bbg)", "b (grpo)"]
    # the switch of run a shows as a marked line at 8.5; run b has none
    assert [s.x0 for s in figs["pass1"].layout.shapes] == [8.5]
    assert "bbg" in figs["pass1"].layout.annotations[0].text
    names = [t.name for t in figs["passk"].data]
    assert names[0].startswith("base (tiny-primes") and names[1:] == ["a @ step 15", "b @ step 15"]
    assert "different protocols" not in figs["passk"].layout.title.text      # one protocol: one base curve
    bars = {t.name: list(t.y) for t in figs["boundary"].data}
    assert bars["a"] == [1, 1, 2, 0] and bars["a (c ≥ 2)"] == [1, 0, 2, 1]
    # run b measured differently (48 problems x n = 32 against a's 96 x 64): a base curve each, and a warning
    for rid, (problems, n) in (("a", (96, 64)), ("b", (48, 32))):
        cfg = store.get_run(rid)["config"]
        store.update_config(rid, {**cfg, "eval": {"n": n, "temperature": 1.0, "seed": 1234},
                                  "resolved": {"num_eval_problems": {"eval": problems}, "max_new_tokens": 8}})
    figs = compare.compare_figures(store, ["a", "b"])
    bases = [t.name for t in figs["passk"].data if t.name.startswith("base")]
    assert bases == ["base (tiny-primes, two_primes: 96 problems × n = 64)",
                     "base (tiny-primes, two_primes: 48 problems × n = 32)"]
    assert "different protocols" in figs["passk"].layout.title.text
    assert [r[3:5] for r in compare.protocol_rows(store, ["a", "b"])] == [[96, 64], [48, 32]]
    assert "train/entropy" in compare.metric_choices(store, ["a", "b"])
    overlay = compare.metric_overlay(store, ["a", "b"], "train/kl_ref", smoothing=0.5)
    assert len([t for t in overlay.data if t.showlegend is not False]) == 2 and len(overlay.data) == 4


def test_form_defaults_and_run_ids_are_the_cli_s(tmp_path):
    from workbench.config import RunConfig

    c = RunConfig()
    assert forms.DEFAULTS["steps"] == c.steps and forms.DEFAULTS["eval_n"] == c.eval.n
    assert forms.DEFAULTS["prompts_per_step"] == c.rollout.prompts_per_step
    from workbench.store import RunStore

    cli_id = RunStore(tmp_path).create_run({}, strategy="grpo")        # what a `workbench train` run gets
    form_id = forms.new_run_id("grpo")
    assert cli_id.split("-")[2] == form_id.split("-")[2] == "grpo"


def test_runs_events_commands_tables(fake_store):
    rows = tables.runs_table(fake_store, {"fake-run": "crashed (exit 1)"})
    assert rows[0][:5] == ["fake-run", "crashed (exit 1)", "grpo→bbg@8", 15, 20]
    assert rows[0][5] == "1.500"
    ev = tables.events_table(fake_store, RID)
    assert ev[-1][:2] == [0, "strategy"]
    assert any(r[1] == "strategy" and "bbg" in r[2] and "from step 9" in r[2] for r in ev)
    fake_store.send_command(RID, "step", {"n": 3})
    assert tables.commands_table(fake_store, RID)[0][1:4] == ["step", "n=3", "pending"]


def test_missing_run_gives_empty_figures(fake_store):
    for fn in (views.reward_figure, views.passk_figure, views.boundary_figure, views.collapse_heatmap):
        fig = fn(fake_store, "no-such-run")
        assert not fig.data and fig.layout.annotations


def test_downsample_keeps_extremes():
    pts = [(i, math.sin(i / 50)) for i in range(5000)]
    pts[1234] = (1234, 9.0)
    xs, ys = downsample(pts, 400)
    assert len(xs) <= 400 and 9.0 in ys and xs == sorted(xs)
    assert downsample([(1, float("nan")), (2, 1.0)]) == ([1, 2], [None, 1.0])
