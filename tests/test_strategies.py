"""Every strategy piece on hand-computed groups, including degenerate ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench.errors import ConfigError, UnknownNameError
from workbench.metrics import SuccessHistory
from workbench.strategies import PIECES, PRESETS, REGISTRY, GroupBatch, TokenBatch, build_strategy
from workbench.strategies.calibrations import boundary_utility, log_boundary_utility

S4 = (0.25 * 0.75) ** 0.5          # population std of [1, 0, 0, 0]


def batch(rewards, answers=None, parsed=None, entropy=None, correct=None, step=0, history=None, seed=0):
    r = torch.tensor(rewards, dtype=torch.float32)
    B, G = r.shape
    return GroupBatch(problem_ids=[f"p{b}" for b in range(B)], rewards=r,
                      correct=torch.tensor(correct) if correct is not None else r > 0,
                      parsed=torch.tensor(parsed) if parsed is not None else torch.ones(B, G, dtype=torch.bool),
                      answers=answers or [[None] * G for _ in range(B)],
                      entropy=torch.tensor(entropy, dtype=torch.float32) if entropy is not None else torch.zeros(B, G),
                      step=step, history=history, seed=seed)


def adv(spec, rewards, params=None, **kw):
    return build_strategy(spec, params).advantages(batch(rewards, **kw)).advantage


def approx(t):
    """pytest.approx for (nested) lists: flattened."""
    flat = np.asarray(t, dtype=float).ravel().tolist() if isinstance(t, list) else t
    return _Flat(flat) if isinstance(t, list) else pytest.approx(t, rel=1e-4, abs=1e-6)


class _Flat:
    def __init__(self, flat):
        self.flat = flat

    def __eq__(self, other):
        return np.asarray(other, dtype=float).ravel().tolist() == pytest.approx(self.flat, rel=1e-4, abs=1e-6)

    def __repr__(self):
        return repr(self.flat)


def test_catalogue_and_implementations_agree():
    assert set(PIECES) == set(REGISTRY)
    for name, piece in REGISTRY.items():
        assert piece.kind == PIECES[name].kind
        assert piece.doc, f"{name} has no docstring"
    for name in PRESETS:
        build_strategy(name)


# ---------------------------------------------------------------- estimators
def test_grpo_hand_computed():
    a = adv("grpo", [[1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0]])
    assert a[0].tolist() == approx([0.75 / S4, -0.25 / S4, -0.25 / S4, -0.25 / S4])
    assert a[1].abs().max().item() == 0.0 and a[2].abs().max().item() == 0.0   # all equal -> no gradient
    assert a[3].tolist() == approx([1, -1, 1, -1])
    assert adv("grpo", [[1, 0]]).tolist() == approx([[1.0, -1.0]])                # G = 2


def test_other_estimators_hand_computed():
    r = [[1, 0, 0, 0], [1, 1, 1, 1]]
    assert adv("dr_grpo", r).tolist() == approx([[0.75, -0.25, -0.25, -0.25], [0, 0, 0, 0]])
    assert adv("rloo", r).tolist() == approx([[1.0, -1 / 3, -1 / 3, -1 / 3], [0, 0, 0, 0]])
    assert adv("rloo", [[1, 0]]).tolist() == approx([[1.0, -1.0]])
    assert adv("reinforce", r).tolist() == approx(r)
    assert adv("psr", [[1, 0], [0, 0]]).tolist() == approx([[1, 0], [0, 0]])
    assert adv("nsr", [[1, 0], [0, 0]]).tolist() == approx([[0, -1], [-1, -1]])
    assert adv("w_reinforce", [[1, 0]]).tolist() == approx([[0.1, -1]])
    assert adv("w_reinforce", [[1, 0]], {"w_reinforce.lam": 0.5}).tolist() == approx([[0.5, -1]])
    assert adv("zero", r).abs().sum().item() == 0.0


@pytest.mark.parametrize("value", [0.3, 0.1, 0.7, -0.45, 2.0 / 3.0])
def test_equal_graded_rewards_give_exactly_zero_advantage(value):
    # mean([v] * 8) rounds away from v in float32, and (r - mean) / (std + eps) used to blow
    # the rounding up to ~0.1; a group with no spread must carry no gradient at all
    for spec in ("grpo", "dr_grpo", "rloo", "grpo_n"):
        a = adv(spec, [[value] * 8, [value] * 5 + [value] * 3])
        assert a.abs().max().item() == 0.0, spec


def test_grpo_on_a_mixed_graded_group():
    r = [0.3, 0.3, 0.9, 0.0]
    mean, std = sum(r) / 4, float(np.std(r))
    a = adv("grpo", [r, [0.3] * 4])
    assert a[0].tolist() == approx([(x - mean) / (std + 1e-6) for x in r])
    assert a[1].abs().max().item() == 0.0
    assert adv("dr_grpo", [r]).tolist() == approx([[x - mean for x in r]])
    assert adv("rloo", [r]).tolist() == approx([[x - (sum(r) - x) / 3 for x in r]])


# ---------------------------------------------------------------- calibrations
def test_negative_only_masks_positive_advantages():
    a = adv("grpo+negative_only", [[1, 0, 0, 0], [0, 0, 0, 0]])
    assert a[0].tolist() == approx([0.0, -0.25 / S4, -0.25 / S4, -0.25 / S4])
    assert a[1].abs().sum().item() == 0.0                                         # all wrong: nothing


def test_inverse_success_factor():
    a = adv("iac", [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    assert a[0].tolist() == approx([0.75 / S4 * 3, -0.25 / S4, -0.25 / S4, -0.25 / S4])   # (G - c) = 3
    assert a[1].tolist() == approx([2.0, 2.0, -1.0, -1.0])                                  # (G - c) = 2
    assert a[2].abs().sum().item() == 0.0
    sq = adv("iac", [[1, 1, 0, 0]], {"inverse_success.alpha": 2})
    assert sq[0].tolist() == approx([4.0, 4.0, -1.0, -1.0])
    rn = adv("iac", [[1, 0, 0, 0], [1, 1, 0, 0]], {"inverse_success.renormalize": True})
    mean_factor = (3 + 2 + 2) / 3                                                 # over positive samples
    assert rn[0, 0].item() == approx(0.75 / S4 * 3 / mean_factor)
    assert rn[1, 0].item() == approx(2 / mean_factor)
    assert rn[1, 2].item() == approx(-1.0)


def _utility_by_integration(c, G, k, a0=1.0, b0=1.0, n=200001):
    p = np.linspace(0.0, 1.0, n)
    logpdf = (c + a0 - 1) * np.log(np.clip(p, 1e-300, None)) + (G - c + b0 - 1) * np.log(np.clip(1 - p, 1e-300, None))
    logpdf -= math.lgamma(c + a0) + math.lgamma(G - c + b0) - math.lgamma(G + a0 + b0)
    f = k * (1 - p) ** (k - 1) * np.exp(logpdf)
    return float(np.sum((f[1:] + f[:-1]) / 2 * np.diff(p)))


@pytest.mark.parametrize("c,G,k,a0,b0", [(0, 8, 16, 1, 1), (1, 8, 16, 1, 1), (3, 8, 4, 1, 1), (8, 8, 16, 1, 1),
                                         (2, 16, 8, 2.0, 3.0), (5, 32, 64, 1, 1)])
def test_bbg_utility_matches_numerical_integration(c, G, k, a0, b0):
    assert boundary_utility(c, G, k, a0, b0).item() == pytest.approx(_utility_by_integration(c, G, k, a0, b0), rel=1e-4)


def test_bbg_utility_uniform_prior_product_and_large_k():
    for c, G, k in [(0, 8, 16), (3, 8, 16), (100, 512, 1024), (0, 512, 1024), (512, 512, 1024)]:
        log_prod = sum(math.log(G - c + j) - math.log(G + 1 + j) for j in range(1, k))
        log_u = log_boundary_utility(c, G, k).item()
        assert math.isfinite(log_u)
        assert log_u == pytest.approx(math.log(k) + log_prod, rel=1e-9, abs=1e-9)
        u = boundary_utility(c, G, k).item()
        assert math.isfinite(u) and u == pytest.approx(math.exp(math.log(k) + log_prod), rel=1e-9)


def test_bbg_gate_weights_and_all_fail_term():
    G, k, tau = 8, 16, 0.01
    u = {c: k * math.prod((G - c + j) / (G + 1 + j) for j in range(1, k)) for c in range(G + 1)}
    rows = [[1] * c + [0] * (G - c) for c in range(G + 1)]
    base = adv("grpo", rows)
    out = adv("bbg", rows)
    for c in range(G + 1):
        if u[c] < tau * (G + 1):
            assert out[c].abs().sum().item() == 0.0, f"c={c} should be gated"
        elif c == 0:
            assert out[c].tolist() == approx([-1.0] * G)
        else:
            assert out[c].tolist() == approx((base[c] * (u[c] / u[1])).tolist())
    assert out[0].tolist() == approx([-1.0] * G)               # c = 0 is never gated here
    assert out[G].abs().sum().item() == 0.0                     # solved: gated
    assert adv("bbg", [[0, 0, 0, 0]], {"bbg.w0": 0.5}).tolist() == approx([[-0.5] * 4])


def test_bbg_history_counts_past_rollouts():
    hist = SuccessHistory()
    hist.update(1, ["p0"], [8], 8)                              # p0 looked solved before
    rows = [[1, 0, 0, 0]]
    b = batch(rows, history=hist, step=2)
    out = build_strategy("bbg", {"bbg.history": True, "bbg.gamma": 1.0}).advantages(b).advantage
    c_eff, n_eff = 1 + 8, 4 + 8
    u, u1 = boundary_utility(c_eff, n_eff, 16).item(), boundary_utility(1, n_eff, 16).item()
    base = adv("grpo", rows)
    if u < 0.01 * (n_eff + 1):
        assert out.abs().sum().item() == 0.0
    else:
        assert out[0].tolist() == approx((base[0] * (u / u1)).tolist())
    no_hist = adv("bbg", rows)
    assert not torch.allclose(out, no_hist)


def test_bbg_history_decay_hand_computed_two_steps():
    # p0: 2 of 4 correct at step 1, 1 of 4 at step 2; now step 3 with 1 of 4. With gamma = 0.5
    # the past weighs gamma^(steps ago): step 2 by 0.5, step 1 by 0.25 (not 1 and 0.5)
    hist = SuccessHistory()
    hist.update(1, ["p0"], [2], 4)
    hist.update(2, ["p0"], [1], 4)
    rows = [[1, 0, 0, 0]]
    out = build_strategy("bbg", {"bbg.history": True, "bbg.gamma": 0.5, "bbg.tau": 0.0}).advantages(
        batch(rows, history=hist, step=3)).advantage
    c_eff = 1 + 0.5 * 1 + 0.25 * 2          # 2.0
    n_eff = 4 + 0.5 * 4 + 0.25 * 4          # 7.0
    w = boundary_utility(c_eff, n_eff, 16).item() / boundary_utility(1, n_eff, 16).item()
    assert out[0].tolist() == approx((adv("grpo", rows)[0] * w).tolist())
    w_over = boundary_utility(3.0, 10.0, 16).item() / boundary_utility(1, 10.0, 16).item()   # one step too many
    assert abs(w - w_over) > 1e-3


def test_zero_success_only_and_bucket_mask():
    assert adv("zero_success_only", [[0, 0], [1, 0], [1, 1]]).tolist() == approx([[-1, -1], [0, 0], [0, 0]])
    a = adv("bucket_mask", [[1, 1, 1, 0], [1, 1, 0, 0]])
    assert a[0].abs().sum().item() == 0.0                       # 3/4 >= 0.75: dropped
    assert a[1].tolist() == approx([1, 1, -1, -1])
    assert adv("bucket_mask", [[1, 1, 1, 0]], {"bucket_mask.theta": 0.8})[0, 0].item() > 0


# ---------------------------------------------------------------- reward transforms
def test_random_reward_is_bernoulli_p_and_seeded():
    strat = build_strategy("spurious_random", {"random.p": 0.3})
    draws = torch.stack([strat.advantages(batch([[0] * 8] * 8, step=s)).reward for s in range(200)])
    assert draws.mean().item() == pytest.approx(0.3, abs=0.02)
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    again = strat.advantages(batch([[0] * 8] * 8, step=5)).reward
    assert torch.equal(again, draws[5])
    assert not torch.equal(draws[5], draws[6])


def test_majority_format_incorrect_and_entropy_rewards():
    answers = [["a", "b", "a", None], ["b", "a", "a", "b"], [None, None, None, None]]
    r = build_strategy("majority_vote+grpo").advantages(batch([[0] * 4] * 3, answers=answers)).reward
    assert r.tolist() == [[1, 0, 1, 0], [1, 0, 0, 1], [0, 0, 0, 0]]        # a tie goes to the first answer
    parsed = [[True, True, False, True]]
    correct = [[True, False, False, False]]
    assert build_strategy("format_only+grpo").advantages(
        batch([[1, 0, 0, 0]], parsed=parsed, correct=correct)).reward.tolist() == [[1, 1, 0, 1]]
    assert build_strategy("incorrect_only+grpo").advantages(
        batch([[1, 0, 0, 0]], parsed=parsed, correct=correct)).reward.tolist() == [[0, 1, 0, 1]]
    out = build_strategy("entropy_min").advantages(batch([[1, 0]], entropy=[[0.5, 1.5]]))
    assert out.reward.tolist() == approx([[-0.5, -1.5]])
    assert out.advantage.tolist() == approx([[1.0, -1.0]])                  # lower entropy is rewarded


# ---------------------------------------------------------------- token calibrations
def _tokens():
    # one sequence, 4 tokens: kappa = (logp + 1.5) * adv = [4.5, 0.5, 0.5, 0.5]
    logp = torch.tensor([[0.0, -2.0, -2.0, -2.0]])
    a = torch.tensor([[3.0, -1.0, -1.0, -1.0]])
    return TokenBatch(logp, logp.clone(), a, torch.ones(1, 4), torch.Generator().manual_seed(0))


def test_clip_cov_and_kl_cov_select_the_right_tokens():
    cc = build_strategy("clip_cov", {"clip_cov.ratio": 0.25}).shape_tokens(_tokens())
    assert cc.weight.tolist() == [[0.0, 1.0, 1.0, 1.0]] and cc.selected == 1
    none = build_strategy("clip_cov", {"clip_cov.low": 5.0, "clip_cov.high": 9.0}).shape_tokens(_tokens())
    assert none.weight.tolist() == [[1.0, 1.0, 1.0, 1.0]] and none.selected == 0
    kc = build_strategy("kl_cov", {"kl_cov.ratio": 0.5, "kl_cov.coef": 2.0}).shape_tokens(_tokens())
    assert kc.extra_coef[0, 0].item() == 2.0 and kc.selected == 2              # top 2: token 0 and one 0.5 tie
    assert kc.extra_coef.sum().item() == 4.0
    assert kc.unclipped.all()                                                    # reference: no clipping at all
    only = build_strategy("kl_cov", {"kl_cov.ratio": 0.25, "kl_cov.clip_others": True}).shape_tokens(_tokens())
    assert only.unclipped.tolist() == [[True, False, False, False]]


def test_clip_cov_skips_tokens_the_ppo_clip_already_stops():
    # as the authors' code: tokens whose clipped branch is in force are not candidates
    t = _tokens()
    t.clipped = torch.tensor([[True, False, False, False]])
    cc = build_strategy("clip_cov", {"clip_cov.ratio": 0.25}).shape_tokens(t)
    assert cc.weight.tolist() == [[1.0, 1.0, 1.0, 1.0]] and cc.selected == 0
    # open band: kappa exactly on a bound is outside
    edge = build_strategy("clip_cov", {"clip_cov.ratio": 0.25, "clip_cov.low": 4.5}).shape_tokens(_tokens())
    assert edge.selected == 0


def test_kl_cov_preset_makes_at_least_two_updates_and_parameters_override_it():
    kl = build_strategy("kl_cov")
    assert [kl.updates_per_batch(n) for n in (1, 2, 4)] == [2, 2, 4]
    assert build_strategy("grpo").updates_per_batch(1) == 1
    assert build_strategy("grpo+kl_cov").updates_per_batch(1) == 1             # a composition is not the preset
    exact = build_strategy("kl_cov", {"optim.updates_per_batch": "1"})
    assert exact.optim_overrides == {"updates_per_batch": 1} and exact.updates_per_batch(4) == 1
    assert kl.describe()["min_updates_per_batch"] == 2
    with pytest.raises(ConfigError, match="can override only optim.updates_per_batch"):
        build_strategy("kl_cov", {"optim.lr": 0.1})
    with pytest.raises(ConfigError, match="expected >= 1"):
        build_strategy("kl_cov", {"optim.updates_per_batch": 0})


# ---------------------------------------------------------------- composition errors
def test_unknown_names_and_parameters_get_clear_messages():
    with pytest.raises(UnknownNameError, match="valid strategy names: .*bbg.*grpo"):
        build_strategy("ppo_magic")
    with pytest.raises(ConfigError, match="valid parameters of bbg: bbg.k, bbg.tau"):
        build_strategy("bbg", {"bbg.kk": 3})
    with pytest.raises(ConfigError, match="piece 'bbg' is not part of 'grpo'"):
        build_strategy("grpo", {"bbg.k": 3})
    with pytest.raises(ConfigError, match="has no estimator"):
        build_strategy("negative_only")
    with pytest.raises(ConfigError, match="two estimators"):
        build_strategy("grpo+rloo")
    with pytest.raises(ConfigError, match="random.p = 1.5"):
        build_strategy("spurious_random", {"random.p": 1.5})
    strat = build_strategy("bbg", {"bbg.k": "64", "clip.eps_high": "0.28"})
    assert strat.calibrations[0][1].k == 64 and strat.loss_overrides["eps_high"] == 0.28
    assert math.isinf(build_strategy("spurious_random_noclip").loss_overrides["eps_low"])
