"""The teaching simulator (workbench/sim): exactness, the engine's pieces, the store, and the
phenomena of the research threads as directions and ratios at fixed seeds.

Which phenomena show depends on how a gradient becomes a step (docs/teaching.md has the
table): the default optimiser is Adam, as in the LLM engine; plain SGD and the natural
gradient are the other two geometries. Where a phenomenon does not show in a geometry, the
test says so by asserting what does happen.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from workbench.errors import ConfigError
from workbench.sim import SimConfig, Simulator, scenarios
from workbench.sim.evaluation import draw_modes
from workbench.store import RunStore


def below_base(sim: Simulator) -> tuple[float, float]:
    """(share of correct modes whose probability fell below the base's, mean mass they lost per problem)."""
    p0, p1, c = sim.base_probs, sim.mode_probs(), sim.correct
    below = (p1 < p0) & c
    return float(below.sum() / c.sum()), float(((p0 - p1) * below).sum() / len(p0))


# ---------------------------------------------------------------------- the world and exact quantities
def test_base_policy_matches_the_config():
    sim = Simulator(SimConfig(problems=16, modes=6, correct_modes=2, success=[0.05, 0.8], seed=3))
    p = sim.mode_probs()
    assert p.shape == (16, 6)
    assert np.allclose(p.sum(1), 1.0)
    assert (sim.correct.sum(1) == 2).all()
    s = np.sort(sim.success())
    assert s[0] == pytest.approx(0.05) and s[-1] == pytest.approx(0.8)
    # every mode has mass (a softmax), and the favourite correct mode outweighs the others
    q = p * sim.correct
    assert (p > 0).all() and (np.sort(q, 1)[:, -1] > np.sort(q, 1)[:, -2]).all()


def test_exact_pass_at_k_and_distinct_modes_agree_with_draws():
    sim = Simulator(SimConfig(problems=6, modes=5, correct_modes=2, success=[0.1, 0.6], prompts_per_step=6, seed=1))
    p, c = sim.mode_probs(), sim.correct
    u = np.random.default_rng(0).random((6, 4000 * 8))
    modes = draw_modes(p, u).reshape(6, 4000, 8)                                       # 4000 draws of k = 8
    hit = np.take_along_axis(np.broadcast_to(c[:, None, :], (6, 4000, 5)), modes, axis=2)
    mc_pass8 = hit.any(-1).mean(1)
    assert np.abs(mc_pass8 - sim.pass_at_k(8)).max() < 0.03
    distinct = np.array([[len(set(m[h].tolist())) for m, h in zip(modes[i], hit[i])] for i in range(6)]).mean(1)
    assert np.abs(distinct - sim.expected_distinct(8)).max() < 0.06


@pytest.mark.parametrize("strategy,graded", [("iac", False), ("grpo", True), ("bbg", False)])
def test_expected_step_is_the_exact_average_of_every_possible_group(strategy, graded):
    """Equivalence: one SGD expected_step moves the parameters by -lr times the probability-
    weighted average, over every possible group of G modes of every training problem, of the
    gradient of the engine's loss on that group (a plain loop over all M^G groups)."""
    from workbench.losses import policy_loss
    from workbench.strategies import GroupBatch, build_strategy

    rewards = [[0.0, 0.5, 1.0], [1.0, 0.0, 0.5], [0.5, 0.5, 0.0]] if graded else []
    cfg = SimConfig(problems=3, modes=3, correct_modes=1, group_size=3, prompts_per_step=1, coupling=0.3,
                    optimizer="sgd", lr=0.1, success=[0.2, 0.6], seed=2, strategy=strategy, mode_rewards=rewards)
    sim = Simulator(cfg)
    strat = build_strategy(strategy)
    a0, s0 = sim.policy.a.detach().clone(), sim.policy.s.detach().clone()
    # reference: a loop over problems and all 27 ordered groups
    a = a0.clone().requires_grad_(True)
    s = s0.clone().requires_grad_(True)
    pol = sim.policy
    total = 0.0
    for p in range(3):
        z = pol.base_logp[p] + pol.k_private * a[p] + pol.k_shared * s                 # [M]
        logp = torch.log_softmax(z, -1)
        probs = logp.detach().exp()
        for group in itertools.product(range(3), repeat=3):
            g = torch.tensor(group)
            weight = float(torch.prod(probs[g]))
            r = torch.as_tensor(sim.world.rewards[p][list(group)], dtype=torch.float32)[None]   # [1, G]
            batch = GroupBatch([f"p{p}"], r, r > 0, torch.ones(1, 3, dtype=torch.bool), [[None] * 3], torch.zeros(1, 3))
            adv = strat.advantages(batch).advantage.double().reshape(-1, 1)
            lp = logp[g].reshape(-1, 1)
            loss = policy_loss(lp, lp.detach(), adv, torch.ones_like(adv), eps_low=0.2, eps_high=0.2,
                               aggregation="token_mean", max_len=1).loss
            total = total + weight * loss / 3                                              # mean over problems
    total.backward()
    sim.expected_step()
    assert torch.allclose(sim.policy.a.detach() - a0, -0.1 * a.grad, atol=1e-10)
    assert torch.allclose(sim.policy.s.detach() - s0, -0.1 * s.grad, atol=1e-10)


def test_runs_are_deterministic_and_fast_paths_agree():
    a = [r["train/reward_mean"] for r in Simulator(seed=5).run(20)]
    b = [r["train/reward_mean"] for r in Simulator(seed=5).run(20)]
    c = Simulator(seed=5, diagnostics=False)
    assert a == b == [r["train/reward_mean"] for r in c.run(20)]
    assert "train/clip_frac" not in c.records[-1]


# ---------------------------------------------------------------------- strategies and the store
def test_strategies_run_through_the_registry_and_sampling_pieces_are_refused():
    sim = Simulator(problems=8, prompts_per_step=4)
    for spec in ["grpo", "dr_grpo", "rloo", "iac", "bbg", "zero_success_only", "bucket_mask", "grpo_n", "nsr", "psr",
                 "w_reinforce", "spurious_random", "spurious_random_noclip", "entropy_min", "em_ft", "clip_higher",
                 "clip_cov", "kl_cov", "grpo+bbg"]:
        sim.set_strategy(spec)
        rec = sim.step()
        assert math.isfinite(rec["train/loss"]), spec
    sim.set_strategy("bbg", **{"bbg.history": True})
    sim.step()
    assert len(sim.history) > 0
    with pytest.raises(ConfigError, match="memory"):
        sim.set_strategy("iac_dlc")
    for spec, params in [("spurious_random", {}), ("clip_cov", {}), ("bbg", {"bbg.history": True})]:
        sim.set_strategy(spec, **params)
        with pytest.raises(ConfigError, match="expected_step"):
            sim.expected_step()
    with pytest.raises(ConfigError, match="coupling"):
        Simulator(coupling=1.5)


def test_clipping_is_the_engines(monkeypatch):
    """With several updates per batch the ratio to pi_old leaves [1-eps, 1+eps] and the clip
    fractions are logged; with eps = inf nothing is clipped."""
    sim = Simulator(scenarios.skewed(optimizer="sgd", lr=2.0, updates_per_batch=4, strategy="spurious_random"))
    clipped = np.mean([r["train/clip_frac"] for r in sim.run(30)])
    free = Simulator(scenarios.skewed(optimizer="sgd", lr=2.0, updates_per_batch=4, strategy="spurious_random_noclip"))
    assert clipped > 0 and np.mean([r["train/clip_frac"] for r in free.run(30)]) == 0


def test_a_run_in_the_store_reads_like_an_engine_run(tmp_path):
    sim = Simulator(scenarios.heldout(problems=12, train=8, prompts_per_step=4, eval_every=5))
    sim.train(10)
    sim.set_strategy("bbg")
    run_id = sim.to_store(workspace=tmp_path)
    sim.train(5)                                                        # keeps writing after to_store
    store = RunStore(tmp_path)
    assert store.last_step(run_id) == 15
    sc = store.scalars(run_id, ["train/reward_mean", "train/pass@1", "train/entropy", "sim/success"])
    assert all(len(v) == 15 for v in sc.values())
    evs = store.evaluations(run_id)
    assert {(e["label"], e["split"]) for e in evs} >= {("base", "eval"), ("base", "seen"), ("policy", "eval")}
    last = [e for e in evs if e["split"] == "eval"][-1]
    assert last["step"] == 15
    for key in ["eval/pass@64", "eval/mean_entropy", "eval/frac_unsolved", "eval/mean_distinct_correct_modes",
                "collapse/mean_index", "boundary/gained", "boundary/lost", "boundary/kept", "boundary/never"]:
        assert key in last["summary"], key
    rows = store.eval_problems(run_id, last["eval_id"])
    assert len(rows) == 4 and all(r["n"] == 64 and 0 <= r["c"] <= 64 for r in rows)
    for key in ["num_modes", "mode_counts", "mode_entropy", "eff_modes", "collapse_index", "base_c", "p_correct"]:
        assert key in rows[0], key
    steps = store.step_problems(run_id)
    assert len(steps) == 15 * 4 and steps[0]["n"] == 8
    kinds = [e["payload"]["name"] for e in store.events(run_id, kind="strategy")]
    assert kinds == ["grpo", "bbg"]


# ---------------------------------------------------------------------- phenomenon 1: over-sharpening
def test_expected_updates_sharpen_moderately_finite_groups_over_sharpen():
    """With exact expected updates (kappa = 0) no correct mode loses probability; with finite
    groups of G some correct modes (the ones rarely sampled) end below the base."""
    expected = Simulator(seed=0).train(200, expected=True)
    assert below_base(expected) == (0.0, 0.0)
    assert (expected.mode_probs()[expected.correct] >= expected.base_probs[expected.correct] * (1 - 1e-12)).all()
    for seed in range(3):
        rate, mass = below_base(Simulator(seed=seed).train(200))
        assert rate > 0 and mass > 0, seed


def test_natural_gradient_expected_update_is_the_kl_regularised_one():
    """The natural update's expected step multiplies every correct mode of a problem by the
    same factor (pi_new ∝ pi_old * exp(lr * A)), so the correct modes' proportions stay."""
    sim = Simulator(update="natural", optimizer="sgd", lr=0.1, seed=0)
    q0 = sim.base_probs * sim.correct
    sim.train(20, expected=True)
    q1 = sim.mode_probs() * sim.correct
    ratio = np.divide(q1, q0, out=np.zeros_like(q0), where=sim.correct)
    for p in range(len(q0)):
        r = ratio[p][sim.correct[p]]
        assert r.min() >= 1.0 and r.max() - r.min() < 1e-3 * r.max()    # alike up to the Fisher damping
    assert below_base(Simulator(update="natural", optimizer="sgd", lr=0.1, seed=0).train(100))[0] > 0


def test_plain_sgd_sharpens_even_in_expectation():
    """What is true for plain gradient descent on softmax logits: the logit step of mode m is
    proportional to pi_m * A_m, so rare correct modes fall behind even with exact expected
    updates (the papers' 'moderate sharpening' assumes the KL-regularised update)."""
    rate, _ = below_base(Simulator(optimizer="sgd", lr=2.0, seed=0).train(200, expected=True))
    assert rate > 0


def test_coupling_spreads_over_sharpening():
    """Finite groups at coupling 0.8 push more correct modes, and more mass, below the base than
    at coupling 0 (mean over seeds)."""
    def mean_loss(kappa):
        return np.mean([below_base(Simulator(coupling=kappa, seed=s).train(100)) for s in range(3)], axis=0)

    tab, coupled = mean_loss(0.0), mean_loss(0.8)
    assert coupled[0] > tab[0] and coupled[1] > tab[1]


# ---------------------------------------------------------------------- phenomenon 2: the two-stage dynamic
def two_stage_trace(strategy, expected=False, steps=400, **kw):
    """Mean probability of (explored mode, rare better mode) at every step: [steps + 1, 2]."""
    sim = Simulator(scenarios.two_stage(strategy=strategy, **kw))
    trace = [sim.mode_probs()[:, :2].mean(0)]
    for _ in sim.run(steps, expected=expected):
        trace.append(sim.mode_probs()[:, :2].mean(0))
    return np.array(trace)


@pytest.mark.parametrize("expected", [False, True])
def test_two_stage_rare_better_mode_waits_for_the_explored_one(expected):
    """Stage 1 (until the explored mode peaks): the explored mode takes the mass, the rare better
    one gains little. Stage 2: the rare one rises and wins."""
    trace = two_stage_trace("grpo", expected)
    explored, rare = trace[:, 0], trace[:, 1]
    peak = int(np.argmax(explored))
    assert 0 < peak < len(trace) - 1
    assert explored[peak] - explored[0] > rare[peak] - rare[0]      # exploitation first
    assert rare[-1] - rare[peak] > rare[peak] - rare[0]             # exploration after
    assert rare[-1] > explored[-1]


def test_negative_gradients_let_the_rare_mode_grow_in_the_first_stage():
    """With finite groups, GRPO-N (negative advantages only) does not push the explored mode up,
    so the rare better mode grows during the first stage instead of waiting."""
    grpo, neg = two_stage_trace("grpo"), two_stage_trace("grpo_n")
    peak = int(np.argmax(grpo[:, 0]))
    assert neg[peak, 1] > grpo[peak, 1]


def test_two_stage_needs_more_than_plain_sgd():
    """With plain SGD the rare mode's logit step is pi * A: it sinks in the first stage and has
    not come back by the end of the same run."""
    trace = two_stage_trace("grpo", expected=True, optimizer="sgd", lr=2.0)
    assert trace[-1, 1] < trace[0, 1]


# ---------------------------------------------------------------------- phenomenon 3: pass@k
def heldout_effects(strategy, seeds=range(3), steps=300):
    """Per seed: (train pass@1 gain, held-out low-success pass@64 change, held-out distinct-modes change)."""
    out = []
    for seed in seeds:
        sim = Simulator(scenarios.heldout(seed=seed, strategy=strategy))
        held, train = sim.world.heldout_ids, sim.world.train_ids
        s0 = sim.success()
        low = held[s0[held] < 0.15]
        k64, d0 = sim.pass_at_k(64)[low].mean(), sim.expected_distinct(64)[held].mean()
        sim.train(steps)
        out.append((sim.success()[train].mean() - s0[train].mean(), sim.pass_at_k(64)[low].mean() - k64,
                    sim.expected_distinct(64)[held].mean() - d0))
    return np.array(out).mean(0)


@pytest.fixture(scope="module")
def passk_effects():
    return {s: heldout_effects(s) for s in ["grpo", "nsr", "grpo_n", "bbg", "zero_success_only", "iac"]}


def test_grpo_raises_pass1_and_lowers_large_k_pass_on_low_success_problems(passk_effects):
    gain, low_k, _ = passk_effects["grpo"]
    assert gain > 0 and low_k < 0


def test_calibrations_lose_less_large_k_pass_than_grpo(passk_effects):
    """NSR, BBG and zero-success-only lose less held-out pass@64 than GRPO (none of them keeps it
    fully here: the held-out problems move only through the coupling); zero-success-only,
    which trains least, loses least."""
    grpo = passk_effects["grpo"][1]
    for s in ["nsr", "bbg", "zero_success_only"]:
        assert passk_effects[s][1] > grpo, s
    assert passk_effects["zero_success_only"][1] == max(v[1] for v in passk_effects.values())


def test_iac_slows_the_loss_of_modes(passk_effects):
    assert passk_effects["iac"][2] > passk_effects["grpo"][2]
    assert passk_effects["iac"][0] > 0


# ---------------------------------------------------------------------- phenomenon 4: spurious rewards and clipping
def entropy_change(skew, strategy, seeds=range(6)):
    out = []
    for seed in seeds:
        sim = Simulator(scenarios.skewed(skew=skew, seed=seed, optimizer="sgd", lr=2.0, updates_per_batch=4,
                                         strategy=strategy))
        h0 = sim.entropy().mean()
        sim.train(200)
        out.append(sim.entropy().mean() - h0)
    return np.array(out)


def test_clipping_lowers_entropy_under_random_rewards_when_the_policy_is_skewed():
    skewed_gap = entropy_change(3.0, "spurious_random") - entropy_change(3.0, "spurious_random_noclip")
    flat_gap = entropy_change(0.0, "spurious_random") - entropy_change(0.0, "spurious_random_noclip")
    assert skewed_gap.mean() < 0 and (skewed_gap < 0).mean() > 0.5     # paired by seed: same samples and rewards
    assert abs(flat_gap.mean()) < abs(skewed_gap.mean())


def test_kl_cov_preset_updates_at_least_twice_and_first_update_is_on_policy(monkeypatch):
    # the |log rho| penalty has no gradient while rho == 1, so the preset's floor is two updates
    import workbench.update as upd      # the update path the simulator shares with the engine

    real, seen = upd.policy_loss, []

    def spy(logp, old_logp, adv, mask, **kw):
        parts = real(logp, old_logp, adv, mask, **kw)
        seen.append(parts.ratio)
        return parts

    monkeypatch.setattr(upd, "policy_loss", spy)
    sim = Simulator(SimConfig(strategy="kl_cov", updates_per_batch=1, strategy_params={"kl_cov.ratio": 0.05}))
    rec = sim.step()
    assert len(seen) == 2 and torch.equal(seen[0], torch.ones_like(seen[0]))
    assert rec["train/offpolicy_abs_logratio"] == 0.0 and "train/ratio_mean" not in rec
    seen.clear()
    Simulator(SimConfig(strategy="grpo", updates_per_batch=1)).step()
    assert len(seen) == 1
