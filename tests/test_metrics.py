"""Metrics: hand-computed values (unit) and vectorised-vs-loop checks (equivalence).

Expected numbers are derived here by hand or by a plain loop, never from the code under test.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

import workbench.metrics as M
from workbench.errors import CheckpointError

LN2, LN3 = math.log(2.0), math.log(3.0)


# ---------------------------------------------------------------- pass@k (unit)


def _brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of all k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_brute_force_enumeration():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert M.pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(n, c, k), abs=1e-12)


@pytest.mark.parametrize("n,c,k", [(200, 1, 1), (200, 3, 50), (200, 100, 7), (256, 17, 128), (1000, 5, 999)])
def test_pass_at_k_matches_binomial_formula(n, c, k):
    expected = 1.0 - math.comb(n - c, k) / math.comb(n, k)
    assert M.pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-10, abs=1e-14)


def test_pass_at_k_edge_cases():
    assert M.pass_at_k(10, 0, 1) == 0.0
    assert M.pass_at_k(10, 0, 10) == 0.0
    assert M.pass_at_k(10, 10, 1) == 1.0
    assert M.pass_at_k(10, 1, 10) == 1.0  # k = n: the single correct sample is always drawn
    assert M.pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert M.pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 − C(3,2)/C(4,2) = 1 − 3/6


def test_pass_at_k_rejects_impossible_inputs():
    with pytest.raises(ValueError, match=r"k=5.*n=4"):
        M.pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="c=5"):
        M.pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        M.pass_at_k(4, 1, 0)


def test_pass_at_k_matrix_nan_where_k_exceeds_n_and_scalar_n():
    out = M.pass_at_k_matrix([4, 2], [1, 2], [1, 2, 4])
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out[0], [0.25, 0.5, 1.0])
    assert out[1, 0] == 1.0 and out[1, 1] == 1.0 and math.isnan(out[1, 2])
    np.testing.assert_allclose(M.pass_at_k_matrix(4, [0, 1, 4], [2]).ravel(), [0.0, 0.5, 1.0])
    assert M.pass_at_k_matrix([], [], [1, 2]).shape == (0, 2)
    with pytest.raises(ValueError):
        M.pass_at_k_matrix([4], [5], [1])


def test_default_ks():
    assert M.default_ks(64) == [1, 2, 4, 8, 16, 32, 64]
    assert M.default_ks(10) == [1, 2, 4, 8, 10]
    assert M.default_ks(1) == [1]
    assert M.default_ks(3) == [1, 2, 3]
    with pytest.raises(ValueError):
        M.default_ks(0)


def test_pass_at_k_curve_hand_computed():
    curve = M.pass_at_k_curve(4, [0, 1, 4])
    assert list(curve) == [1, 2, 4]
    assert curve[1] == pytest.approx((0 + 0.25 + 1) / 3)
    assert curve[2] == pytest.approx((0 + 0.5 + 1) / 3)
    assert curve[4] == pytest.approx((0 + 1 + 1) / 3)
    assert M.pass_at_k_curve([4, 8], [1, 2], ks=[2]) == {2: pytest.approx((0.5 + (1 - 15 / 28)) / 2)}
    with pytest.raises(ValueError, match="k=8"):
        M.pass_at_k_curve([4, 8], [1, 2], ks=[8])


# ---------------------------------------------------------------- entropy (unit)


def test_token_entropy_uniform_onehot_and_masked_vocab():
    V = 11
    assert torch.allclose(M.token_entropy(torch.zeros(2, 3, V)), torch.full((2, 3), math.log(V)))
    peaked = torch.zeros(V)
    peaked[0] = 100.0
    assert 0.0 <= float(M.token_entropy(peaked)) < 1e-6
    masked = torch.tensor([0.0, 0.0, -math.inf, -math.inf])
    assert float(M.token_entropy(masked)) == pytest.approx(LN2, abs=1e-6)
    partly = torch.tensor([[1.0, 2.0, -math.inf, 0.5]])
    p = torch.softmax(torch.tensor([1.0, 2.0, 0.5]), -1)
    assert float(M.token_entropy(partly)) == pytest.approx(float(-(p * p.log()).sum()), abs=1e-6)
    assert M.token_entropy(torch.zeros(2, 5, dtype=torch.bfloat16)).dtype == torch.float32


def _logits_with_masked_vocab():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 4, 9, generator=g, dtype=torch.float64) * 2   # [N, T, V]
    logits[0, :, 2:5] = -math.inf                                         # a masked vocabulary
    logits[2, 1, 0] = -math.inf
    return logits


def test_distribution_entropy_forms_agree_with_a_loop():
    """Log-probs, log-probs with their exp, and scores with their logsumexp are the same
    entropy; masked entries count 0; ``token_entropy`` is that entropy of the logits."""
    logits = _logits_with_masked_vocab()
    logp = torch.log_softmax(logits, -1)
    lse = torch.logsumexp(logits, -1)
    want = torch.tensor([[-sum(math.exp(v) * v for v in row if v > -math.inf) for row in mat] for mat in logp.tolist()],
                        dtype=torch.float64)                                # [N, T]
    for got in (M.distribution_entropy(logp), M.distribution_entropy(logp, probs=logp.exp()),
                M.distribution_entropy(logits, lse=lse), M.token_entropy(logits)):
        assert got.shape == (3, 4) and torch.isfinite(got).all()
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert float(M.distribution_entropy(logp[0, 0])) < math.log(9 - 3) + 1e-12 < math.log(9)   # 6 live entries


def test_distribution_entropy_gradient_from_scores_skips_masked_entries():
    """The scores form (the training forward's) differentiates through a masked vocabulary
    as if the masked entries were not there."""
    logits = _logits_with_masked_vocab()[0, 0].clone().requires_grad_(True)      # [V], 3 entries -inf
    M.distribution_entropy(logits, lse=torch.logsumexp(logits, -1)).backward()
    live = logits.detach() > -math.inf
    sub = logits.detach()[live].clone().requires_grad_(True)
    lp = torch.log_softmax(sub, -1)
    (-(lp.exp() * lp).sum()).backward()                                             # the unmasked vocabulary alone
    assert torch.isfinite(logits.grad).all() and (logits.grad[~live] == 0).all()
    torch.testing.assert_close(logits.grad[live], sub.grad, rtol=1e-12, atol=1e-12)


def test_distribution_entropy_nan_handling():
    """``masked_vocab=False`` (finite log-probs by construction) lets a diverged policy's NaN
    show; the masked-vocabulary guard zeroes it; ``token_entropy`` keeps a row with no
    distribution (all -inf) NaN."""
    logp = torch.log_softmax(torch.tensor([[0.0, 1.0, 2.0], [float("nan"), 0.0, 0.0]]), -1)
    plain = M.distribution_entropy(logp, masked_vocab=False)
    assert math.isfinite(plain[0]) and math.isnan(plain[1])
    assert float(M.distribution_entropy(logp)[1]) == 0.0
    assert float(plain[0]) == float(M.distribution_entropy(logp)[0])
    h = M.token_entropy(torch.tensor([[0.0, 0.0], [-math.inf, -math.inf]]))
    assert h[0] == pytest.approx(LN2) and math.isnan(h[1])


def test_distribution_kl_against_a_loop():
    logits = _logits_with_masked_vocab()
    lq = torch.log_softmax(logits, -1)                                             # has -inf entries
    lp = torch.log_softmax(torch.randn(3, 4, 9, generator=torch.Generator().manual_seed(6), dtype=torch.float64), -1)
    got = M.distribution_kl(lq, lp)                                                # KL(q || p)
    want = torch.tensor([[sum(math.exp(a) * (a - b) for a, b in zip(ra, rb) if a > -math.inf)
                          for ra, rb in zip(ma, mb)] for ma, mb in zip(lq.tolist(), lp.tolist())], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert (got > 0).all() and (M.distribution_kl(lp, lp) == 0).all()


def test_log_ratio_and_importance_ratio():
    logp = torch.tensor([math.log(0.5), math.log(0.2)], requires_grad=True)
    old = torch.tensor([math.log(0.25), math.log(0.4)])
    ratio, lr = M.importance_ratio(logp, old)
    torch.testing.assert_close(ratio.detach(), torch.tensor([2.0, 0.5]))
    assert torch.equal(lr, M.log_ratio(logp, old)) and lr[0] > 0 > lr[1]           # new minus old
    ratio.sum().backward()
    torch.testing.assert_close(logp.grad, ratio.detach())                           # d rho / d log pi = rho


def test_masked_mean():
    x = torch.tensor([[1.0, 2.0, math.nan], [4.0, -math.inf, 6.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert float(M.masked_mean(x, mask)) == pytest.approx(7.0 / 3.0)
    assert float(M.masked_mean(x, torch.zeros_like(mask))) == 0.0


def test_logprob_advantage_cov_hand_computed():
    logp = torch.tensor([[1.0, 2.0, 99.0], [3.0, 0.0, 0.0]])
    adv = torch.tensor([[2.0, 4.0, -50.0], [6.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    # valid pairs (1,2), (2,4), (3,6): cov = 2 · var([1,2,3]) = 2 · 2/3
    assert M.logprob_advantage_cov(logp, adv, mask) == pytest.approx(4.0 / 3.0)
    # per-sequence advantages broadcast over T: pairs (1,+1), (2,+1), (3,−1)
    assert M.logprob_advantage_cov(logp, torch.tensor([1.0, -1.0]), mask) == pytest.approx(
        ((1 - 2) * (1 - 1 / 3) + (2 - 2) * (1 - 1 / 3) + (3 - 2) * (-1 - 1 / 3)) / 3
    )
    assert M.logprob_advantage_cov(logp, adv, torch.zeros_like(mask)) == 0.0


# ---------------------------------------------------------------- modes (unit)


def test_mode_stats_hand_computed():
    s = M.mode_stats(["a", "a", "b", None])
    h = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert (s["n"], s["c"], s["num_modes"], s["counts"]) == (4, 3, 2, {"a": 2, "b": 1})
    assert s["mode_entropy"] == pytest.approx(h)
    assert s["eff_modes"] == pytest.approx(math.exp(h))
    assert s["top_share"] == pytest.approx(2 / 3)

    one = M.mode_stats(["x", "x", None])
    assert one["mode_entropy"] == 0.0 and math.copysign(1.0, one["mode_entropy"]) == 1.0
    assert one["eff_modes"] == 1.0 and one["top_share"] == 1.0

    four = M.mode_stats(["a", "b", "c", "d"])
    assert four["eff_modes"] == pytest.approx(4.0)

    for keys in ([None, None], []):
        none = M.mode_stats(keys)
        assert none["c"] == 0 and none["num_modes"] == 0 and none["counts"] == {}
        assert none["mode_entropy"] is None and none["eff_modes"] is None and none["top_share"] is None


def _rarefied_by_enumeration(counts: dict, m: int) -> float:
    """Mean number of distinct modes over every m-subset of the correct samples."""
    labels = [k for k, x in counts.items() for _ in range(x)]
    subsets = list(itertools.combinations(range(len(labels)), m))
    return sum(len({labels[i] for i in s}) for s in subsets) / len(subsets)


def test_rarefied_distinct_hand_computed():
    # {a: 3, b: 1}, m = 2: of the 6 pairs, 3 hold b (2 modes) and 3 are a-a (1 mode) -> 1.5
    assert M.rarefied_distinct({"a": 3, "b": 1}, 2) == pytest.approx(1.5)
    # {a: 2, b: 1, c: 1}, m = 2: one a-a pair (1 mode), five mixed pairs (2 modes) -> 11/6
    assert M.rarefied_distinct({"a": 2, "b": 1, "c": 1}, 2) == pytest.approx(11 / 6)
    assert M.rarefied_distinct([2, 1, 1], 1) == pytest.approx(1.0)   # one draw: one mode
    assert M.rarefied_distinct([2, 1, 1], 4) == pytest.approx(3.0)   # all of them
    counts = {"a": 4, "b": 2, "c": 1, "d": 1}
    for m in range(1, 9):
        assert M.rarefied_distinct(counts, m) == pytest.approx(_rarefied_by_enumeration(counts, m))
    with pytest.raises(ValueError, match="m"):
        M.rarefied_distinct({"a": 2}, 3)


def test_expected_distinct_closed_form():
    # two draws from (1/2, 1/2): 1 mode with prob 1/2, 2 with prob 1/2 -> 1.5
    assert M.expected_distinct([0.5, 0.5], 2) == pytest.approx(1.5)
    assert M.expected_distinct([1.0, 0.0], 5) == pytest.approx(1.0)
    assert M.expected_distinct([0.25] * 4, 1) == pytest.approx(1.0)


def test_rarefied_distinct_estimates_expected_distinct_and_the_simulator_uses_it():
    # the engine's estimate from c multinomial samples, averaged, is the simulator's exact D(m)
    from workbench.sim.evaluation import exact_matched_collapse

    rng = np.random.default_rng(3)
    q_base, q_now = np.array([0.5, 0.3, 0.15, 0.05]), np.array([0.8, 0.1, 0.05, 0.05])
    m = 5
    d_base = np.mean([M.rarefied_distinct(list(rng.multinomial(20, q_base)), m) for _ in range(3000)])
    d_now = np.mean([M.rarefied_distinct(list(rng.multinomial(9, q_now)), m) for _ in range(3000)])
    exact_base = sum(1 - (1 - x) ** m for x in q_base)
    exact_now = sum(1 - (1 - x) ** m for x in q_now)
    assert d_base == pytest.approx(exact_base, abs=0.02) and d_now == pytest.approx(exact_now, abs=0.02)
    rec = exact_matched_collapse(q_now, q_base, m)
    assert rec["collapse_m"] == m and rec["collapse_index"] == pytest.approx(1 - exact_now / exact_base)
    assert exact_matched_collapse(q_now, q_base, 1)["collapse_index"] is None


def test_matched_collapse_hand_computed():
    # base {a: 2, b: 2}, now {a: 3}: m = 3; D_base(3) = 2 (any 3 of aabb hold both), D_now(3) = 1
    r = M.matched_collapse({"mode_counts": {"a": 3}}, {"mode_counts": {"a": 2, "b": 2}})
    assert r == {"collapse_index": pytest.approx(0.5), "collapse_index_raw": pytest.approx(0.5), "collapse_m": 3,
                 "matched_modes_now": pytest.approx(1.0), "matched_modes_base": pytest.approx(2.0)}
    # base {a: 2, b: 1, c: 1}, now {a: 1, b: 1}: m = 2; D_base(2) = 11/6, D_now(2) = 2 -> raw 1 − 12/11
    r = M.matched_collapse(M.mode_stats(["a", "b", None]), M.mode_stats(["a", "a", "b", "c"]))
    assert r["collapse_m"] == 2 and r["collapse_index_raw"] == pytest.approx(-1 / 11)
    assert r["collapse_index"] == 0.0                                   # clipped at 0
    assert M.collapse_index(M.mode_stats(["a", "b", None]), M.mode_stats(["a", "a", "b", "c"])) == 0.0
    # m < 2 (one correct sample now, or none in the base) or no counts: undefined, not 0
    assert M.matched_collapse(M.mode_stats(["a", None]), M.mode_stats(["a", "b"]))["collapse_index"] is None
    assert M.collapse_index(M.mode_stats(["a", "b"]), M.mode_stats([None, None])) is None
    assert M.collapse_index({"c": 3}, {"mode_counts": {"a": 3}}) is None  # a row without counts


def test_collapse_summary_keeps_undefined_apart():
    now = [M.mode_stats(k) for k in (["a", "a"], ["a", "b", "c", None], [None, None], ["a"])]
    base = [M.mode_stats(k) for k in (["a", "b"], ["a", "b", "c", "d"], ["a"], [None])]
    s = M.collapse_summary(now, base)
    # defined: m = 2: D 1 now, 2 base; m = 3: 3 and 3 (any 3 of abcd are 3 modes); problems 3
    # (one correct sample in the base) and 4 (none) apart.  Dataset index 1 − (1 + 3)/(2 + 3)
    assert s["collapse/mean_index"] == pytest.approx(1 - 4 / 5)
    assert s["collapse/matched_m_mean"] == pytest.approx((2 + 3) / 2)
    assert s["collapse/num_defined"] == 2 and s["collapse/num_undefined"] == 2
    assert s["collapse/num_solved"] == 3
    assert s["collapse/mean_eff_modes"] == pytest.approx((1 + 3 + 1) / 3)
    assert s["collapse/mean_num_modes"] == pytest.approx((1 + 3 + 1) / 3)

    empty = M.collapse_summary([M.mode_stats([None])], [M.mode_stats(["a"])])
    assert empty["collapse/mean_index"] is None and empty["collapse/num_undefined"] == 1
    assert empty["collapse/matched_m_mean"] is None
    assert empty["collapse/mean_eff_modes"] is None
    with pytest.raises(ValueError):
        M.collapse_summary(now, base[:2])


def test_collapse_summary_is_a_ratio_of_unclipped_sums():
    # one problem more diverse than the base at m = 2 (D 2 now, 11/6 base), one collapsed at
    # m = 3 (D 1 now, 2 base): 1 − (2 + 1) / (11/6 + 2), below the mean of the clipped indices
    now = [M.mode_stats(["a", "b", None]), M.mode_stats(["a", "a", "a"])]
    base = [M.mode_stats(["a", "a", "b", "c"]), M.mode_stats(["a", "a", "b", "b"])]
    s = M.collapse_summary(now, base)
    assert s["collapse/mean_index"] == pytest.approx(1 - 3 / (11 / 6 + 2))


def _plugin_collapse_index(now: dict, base: dict) -> float | None:
    """The plug-in estimator the matched one replaces: clip(1 − exp(H_now) / exp(H_base)) from
    the mode entropies of all correct samples (kept here to show its bias)."""
    if now["mode_entropy"] is None or base["mode_entropy"] is None:
        return None
    return min(1.0, max(0.0, 1.0 - math.exp(now["mode_entropy"] - base["mode_entropy"])))


def _fixed_share_population(p_base: float, p_now: float, problems: int = 1500, n: int = 64, seed: int = 0):
    """Problems whose correct-mode shares are the same at both points; only pass@1 moves.
    Each problem's shares ~ Dirichlet(1, ..., 1) over 2-6 modes; c ~ Binomial(n, p), then the
    c correct samples' modes ~ Multinomial(c, shares)."""
    rng = np.random.default_rng(seed)
    now, base = [], []
    for _ in range(problems):
        shares = rng.dirichlet(np.ones(rng.integers(2, 7)))
        for p, out in ((p_base, base), (p_now, now)):
            c = int(rng.binomial(n, p))
            counts = rng.multinomial(c, shares)
            keys = [str(m) for m, x in enumerate(counts) for _ in range(x)] + [None] * (n - c)
            out.append(M.mode_stats(keys))
    return now, base


@pytest.mark.parametrize("p_now", [0.3, 0.1, 0.05])
def test_collapse_index_does_not_move_with_success_when_shares_are_fixed(p_now):
    now, base = _fixed_share_population(0.3, p_now)
    s = M.collapse_summary(now, base)
    assert abs(s["collapse/mean_index"]) <= 0.03
    assert s["collapse/num_defined"] > 1000           # P(c < 2) is 0.16 at p = 0.05, n = 64
    assert 2 <= s["collapse/matched_m_mean"] <= 64 * min(0.3, p_now) + 1
    if p_now == 0.05:
        # the plug-in index confounds collapse with success: it reads well above 0 here
        old = [_plugin_collapse_index(a, b) for a, b in zip(now, base)]
        assert np.mean([x for x in old if x is not None]) > 0.15


def test_collapse_index_sees_real_collapse_at_low_success():
    # shares move onto one mode (0.9) while pass@1 falls 0.3 -> 0.05: the index must read it
    rng = np.random.default_rng(1)
    shares_base, shares_now = np.full(4, 0.25), np.array([0.9, 0.1 / 3, 0.1 / 3, 0.1 / 3])
    now, base = [], []
    for _ in range(400):
        for p, shares, out in ((0.3, shares_base, base), (0.05, shares_now, now)):
            c = int(rng.binomial(64, p))
            counts = rng.multinomial(c, shares)
            out.append(M.mode_stats([str(m) for m, x in enumerate(counts) for _ in range(x)] + [None] * (64 - c)))
    s = M.collapse_summary(now, base)
    # exact value at m = 3: 1 − D_now(3)/D_base(3), D(3) = Σ 1 − (1 − q)^3
    d = lambda q: sum(1 - (1 - x) ** 3 for x in q)   # noqa: E731
    assert s["collapse/mean_index"] > 0.5 * (1 - d(shares_now) / d(shares_base))
    assert s["collapse/mean_index"] > 0.15


# ---------------------------------------------------------------- groups (unit)


def test_group_split_hand_made_batch():
    correct = np.array([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0]], dtype=bool)  # [3, 4]
    s = M.group_split(correct)
    assert s == {
        "train/frac_all_correct": pytest.approx(1 / 3),
        "train/frac_all_wrong": pytest.approx(1 / 3),
        "train/frac_mixed": pytest.approx(1 / 3),
    }
    s = M.group_split(torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1], [0, 1, 0, 0]], dtype=torch.bool))
    assert s["train/frac_all_correct"] == pytest.approx(2 / 3)
    assert s["train/frac_all_wrong"] == 0.0
    assert s["train/frac_mixed"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        M.group_split(np.zeros((0, 4), dtype=bool))


def test_advantage_stats_hand_computed():
    s = M.advantage_stats(torch.tensor([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    assert s["train/adv_mean"] == pytest.approx(0.0)
    assert s["train/adv_std"] == pytest.approx(math.sqrt(2 / 8))  # population std
    assert s["train/adv_frac_zero"] == pytest.approx(6 / 8)


def test_success_history_rates_decay_and_round_trip():
    h = M.SuccessHistory()
    h.update(0, ["p1", "p2"], np.array([2, 0]), 4)
    h.update(1, ["p1"], torch.tensor([4]), [4])
    assert h.rate("p1") == pytest.approx(6 / 8)
    assert h.rate("p2") == 0.0
    assert h.rate("unseen") is None
    assert "p1" in h and len(h) == 2
    assert h.entries["p1"] == [(0, 2, 4), (1, 4, 4)]
    # latest step 1: p1 = 0.5·(2, 4) + (4, 4); p2 = 0.5·(0, 4)
    assert h.decayed("p1", 0.5) == pytest.approx((5.0, 6.0))
    assert h.decayed("p2", 0.5) == pytest.approx((0.0, 2.0))
    assert h.decayed("p1", 0.5, step=2) == pytest.approx((2.5, 3.0))
    assert h.decayed("p1", 1.0) == pytest.approx((6.0, 8.0))
    assert h.decayed("unseen", 0.5) == (0.0, 0.0)
    with pytest.raises(ValueError):
        h.decayed("p1", 0.0)
    with pytest.raises(ValueError):
        h.update(2, ["p1"], [5], 4)

    text = h.to_json()
    json.loads(text)  # plain JSON for checkpoints
    for back in (M.SuccessHistory.from_json(text), M.SuccessHistory.from_json(json.loads(text))):
        assert back.entries == h.entries
        assert back.rate("p1") == h.rate("p1") and back.last_step == 1
        assert back.decayed("p1", 0.5) == pytest.approx((5.0, 6.0))
    with pytest.raises(CheckpointError):
        M.SuccessHistory.from_json("{not json")


# ---------------------------------------------------------------- boundary (unit)


def test_boundary_counts_hand_made():
    base_c, now_c = [0, 1, 3, 0, 2], [2, 0, 3, 0, 1]
    assert M.boundary_counts(base_c, now_c) == {
        "boundary/gained": 1, "boundary/lost": 1, "boundary/kept": 2, "boundary/never": 1,
    }
    assert M.boundary_counts(base_c, now_c, min_c=2) == {
        "boundary/gained_c2": 1, "boundary/lost_c2": 1, "boundary/kept_c2": 1, "boundary/never_c2": 2,
    }


def test_passk_delta_hand_computed():
    d = M.passk_delta([4, 4], [1, 0], [4, 4], [2, 4], k=2)
    np.testing.assert_allclose(d, [5 / 6 - 1 / 2, 1.0])  # 1 − C(2,2)/C(4,2) = 5/6
    assert np.isnan(M.passk_delta([4], [1], [8], [1], k=8)).all()


def test_boundary_summary_aligns_by_id():
    base = {"a": (4, 1), "b": (4, 0), "c": (4, 3), "x": (4, 1)}
    now = {"c": (4, 0), "a": (4, 2), "b": (4, 4), "y": (4, 1)}
    s = M.boundary_summary(base, now, k=2)
    assert s["boundary/num_problems"] == 3
    assert s["boundary/num_missing_base"] == 1 and s["boundary/num_missing_now"] == 1
    assert (s["boundary/gained"], s["boundary/lost"], s["boundary/kept"], s["boundary/never"]) == (1, 1, 1, 0)
    c2 = tuple(s[f"boundary/{name}_c2"] for name in ("gained", "lost", "kept", "never"))
    assert c2 == (2, 1, 0, 0)
    assert s["boundary/passk_k"] == 2
    assert s["boundary/passk_delta_mean"] == pytest.approx((1 / 3 + 1 - 1) / 3)
    assert s["boundary/passk_delta_num_defined"] == 3
    assert M.boundary_summary({}, {"a": (4, 1)}, k=2)["boundary/passk_delta_mean"] is None


# ---------------------------------------------------------------- sharpening (unit)


def test_boundary_summary_reports_the_users_k_beside_k_equal_n():
    # a: 4 of 8 -> 1 of 8 (still solved); b: 0 of 8 -> 1 of 8 (gained)
    base, now = {"a": (8, 4), "b": (8, 0)}, {"a": (8, 1), "b": (8, 1)}
    s = M.boundary_summary(base, now, k=8, report_k=2)
    # k = n: pass@8 is 1 exactly when c >= 1, so the delta restates gained - lost: (0 + 1) / 2
    assert s["boundary/passk_delta@8"] == pytest.approx(0.5) == s["boundary/passk_delta_mean"]
    # k = 2: a 1 − C(4,2)/C(8,2) = 22/28 -> 1 − C(7,2)/C(8,2) = 7/28; b 0 -> 7/28
    assert s["boundary/passk_delta@2"] == pytest.approx((7 / 28 - 22 / 28 + 7 / 28) / 2)
    assert s["boundary/report_k"] == 2
    assert "boundary/report_k" not in M.boundary_summary(base, now, k=8)
    with pytest.raises(ValueError, match="report_k"):
        M.boundary_summary(base, now, k=8, report_k=0)


def test_sequence_logprobs_ignores_masked_positions():
    token_logp = torch.tensor([[-1.0, -2.0, -math.inf], [-0.5, -0.5, -0.5]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert torch.allclose(M.sequence_logprobs(token_logp, mask), torch.tensor([-3.0, -1.5]))


def test_oversharpening_hand_made():
    ids = ["p", "p", "q"]
    now = np.log([0.2, 0.1, 0.5])
    ref = np.log([0.1, 0.3, 0.5])
    s = M.oversharpening_summary(ids, now, ref)
    assert s["sharpen/rate"] == pytest.approx(1 / 3)  # only the 0.3 → 0.1 mode fell
    assert s["sharpen/mass_now"] == pytest.approx((0.3 + 0.5) / 2)
    assert s["sharpen/mass_ref"] == pytest.approx((0.4 + 0.5) / 2)
    assert s["sharpen/mean_logratio"] == pytest.approx((LN2 - LN3 + 0.0) / 3)
    assert s["sharpen/median_logratio"] == pytest.approx(0.0, abs=1e-12)
    assert (s["sharpen/num_modes"], s["sharpen/num_problems"]) == (3, 2)
    per = M.per_problem_logratios(ids, torch.tensor(now), torch.tensor(ref))
    assert set(per) == {"p", "q"}
    np.testing.assert_allclose(per["p"], [LN2, -LN3])
    np.testing.assert_allclose(per["q"], [0.0], atol=1e-12)
    empty = M.oversharpening_summary([], [], [])
    assert empty["sharpen/rate"] is None and empty["sharpen/num_modes"] == 0
    with pytest.raises(ValueError):
        M.oversharpening_summary(["p"], [0.0, 1.0], [0.0, 1.0])


# ---------------------------------------------------------------- KL and clipping (unit)


def test_kl_k3_closed_form():
    assert float(M.kl_k3(torch.tensor(0.3), torch.tensor(0.3))) == 0.0
    assert float(M.kl_k3(torch.tensor(0.0), torch.tensor(LN2))) == pytest.approx(1 - LN2)  # 2 − ln2 − 1
    assert float(M.kl_k3(torch.tensor(LN2), torch.tensor(0.0))) == pytest.approx(LN2 - 0.5)  # ½ + ln2 − 1
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1000, generator=g), torch.randn(1000, generator=g)
    assert (M.kl_k3(a, b) > 0).all()


def test_approx_kl_hand_computed():
    logp_new = torch.tensor([[LN2, 5.0], [0.0, 0.0]])
    logp_old = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    mask = torch.tensor([[1, 0], [1, 0]])
    # r = 2 on the first token (2 − 1 − ln2), r = 1 on the second (0)
    assert M.approx_kl(logp_new, logp_old, mask) == pytest.approx((1 - LN2) / 2)
    assert M.approx_kl(logp_new, logp_old, torch.zeros_like(mask)) == 0.0


def test_clip_fractions_hand_made():
    ratio = torch.tensor([[0.7, 1.3, 1.0, 0.5], [1.5, 0.9, 0.1, 2.0]])
    adv = torch.tensor([-1.0, 1.0])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    # row 0 (A < 0): 0.7 and 0.5 below 0.8; row 1 (A > 0): 1.5 above 1.28, 2.0 masked
    s = M.clip_fractions(ratio, adv, mask, eps_low=0.2, eps_high=0.28)
    assert s["train/clip_frac_low"] == pytest.approx(2 / 7)
    assert s["train/clip_frac_high"] == pytest.approx(1 / 7)
    assert s["train/clip_frac"] == pytest.approx(3 / 7)
    s = M.clip_fractions(ratio, adv, mask, eps_low=0.2, eps_high=math.inf)
    assert s["train/clip_frac_high"] == 0.0 and s["train/clip_frac_low"] == pytest.approx(2 / 7)
    s = M.clip_fractions(ratio, adv[:, None].expand(2, 4), mask, math.inf, math.inf)
    assert s == {"train/clip_frac_low": 0.0, "train/clip_frac_high": 0.0, "train/clip_frac": 0.0}
    with pytest.raises(ValueError):
        M.clip_fractions(ratio, adv, mask, -0.1, 0.2)


# ---------------------------------------------------------------- equivalence: vectorised vs loop


def test_equiv_pass_at_k_matrix_vs_loop():
    rng = np.random.default_rng(0)
    P = 300
    n = rng.integers(1, 300, size=P)
    c = np.array([rng.integers(0, ni + 1) for ni in n])
    c[:20] = 0
    c[20:40] = n[20:40]
    ks = M.default_ks(256) + [300]
    out = M.pass_at_k_matrix(n, c, ks)
    expected = np.array([[M.pass_at_k(ni, ci, k) if k <= ni else np.nan for k in ks] for ni, ci in zip(n, c)])
    np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-12, equal_nan=True)


def test_equiv_token_entropy_vs_loop():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 4, 7, generator=g, dtype=torch.float64) * 3  # [N, T, V]
    out = M.token_entropy(logits)
    assert out.shape == (3, 4)
    for i in range(3):
        for t in range(4):
            z = [math.exp(v) for v in logits[i, t].tolist()]
            p = [v / sum(z) for v in z]
            assert float(out[i, t]) == pytest.approx(-sum(q * math.log(q) for q in p), rel=1e-10)


def test_equiv_logprob_advantage_cov_vs_loop():
    rng = np.random.default_rng(2)
    N, T = 6, 9
    logp = -rng.exponential(size=(N, T))
    mask = rng.random((N, T)) < 0.6
    for adv in (rng.normal(size=(N, T)), rng.normal(size=N)):
        pairs = [
            (logp[i, t], adv[i, t] if adv.ndim == 2 else adv[i])
            for i in range(N) for t in range(T) if mask[i, t]
        ]
        ml = sum(p[0] for p in pairs) / len(pairs)
        ma = sum(p[1] for p in pairs) / len(pairs)
        expected = sum((x - ml) * (a - ma) for x, a in pairs) / len(pairs)
        got = M.logprob_advantage_cov(torch.tensor(logp), torch.tensor(adv), torch.tensor(mask))
        assert got == pytest.approx(expected, rel=1e-10)


def test_equiv_group_split_and_advantages_vs_loop():
    rng = np.random.default_rng(3)
    correct = rng.random((60, 4)) < 0.5  # [B, G]
    n_all = sum(all(row) for row in correct.tolist())
    n_none = sum(not any(row) for row in correct.tolist())
    s = M.group_split(correct)
    assert s["train/frac_all_correct"] == pytest.approx(n_all / 60)
    assert s["train/frac_all_wrong"] == pytest.approx(n_none / 60)
    assert s["train/frac_mixed"] == pytest.approx((60 - n_all - n_none) / 60)
    assert 0 < n_all and 0 < n_none  # the random batch exercises every class
    assert sum(s.values()) == pytest.approx(1.0)

    adv = rng.normal(size=(10, 4)) * (rng.random((10, 4)) < 0.7)
    flat = adv.ravel().tolist()
    mean = sum(flat) / len(flat)
    a = M.advantage_stats(adv)
    assert a["train/adv_mean"] == pytest.approx(mean)
    assert a["train/adv_std"] == pytest.approx(math.sqrt(sum((x - mean) ** 2 for x in flat) / len(flat)))
    assert a["train/adv_frac_zero"] == pytest.approx(sum(x == 0 for x in flat) / len(flat))


def test_equiv_kl_and_clip_vs_loop():
    g = torch.Generator().manual_seed(4)
    N, T = 5, 8
    logp_old = -torch.rand(N, T, generator=g, dtype=torch.float64) * 3
    logp_new = logp_old + torch.randn(N, T, generator=g, dtype=torch.float64) * 0.3
    adv = torch.randn(N, generator=g, dtype=torch.float64)
    mask = torch.rand(N, T, generator=g) < 0.7
    ratio = (logp_new - logp_old).exp()
    kl_sum = lo = hi = cnt = 0
    for i in range(N):
        for t in range(T):
            if mask[i, t]:
                x = float(logp_new[i, t] - logp_old[i, t])
                r = math.exp(x)
                kl_sum += (r - 1) - x  # CleanRL's approx_kl
                lo += r < 0.9 and adv[i] < 0
                hi += r > 1.1 and adv[i] > 0
                cnt += 1
    assert M.approx_kl(logp_new, logp_old, mask) == pytest.approx(kl_sum / cnt, rel=1e-10)
    s = M.clip_fractions(ratio, adv, mask, 0.1, 0.1)
    assert s["train/clip_frac_low"] == pytest.approx(lo / cnt)
    assert s["train/clip_frac_high"] == pytest.approx(hi / cnt)
    assert 0 < lo and 0 < hi  # the random batch exercises both sides


def test_equiv_sharpening_and_boundary_vs_loop():
    rng = np.random.default_rng(5)
    N = 40
    ids = [f"p{i}" for i in rng.integers(0, 7, size=N)]
    now, ref = rng.normal(-3, 1, size=N), rng.normal(-3, 1, size=N)
    s = M.oversharpening_summary(ids, now, ref)
    per_now: dict[str, float] = {}
    per_ref: dict[str, float] = {}
    for pid, a, b in zip(ids, now, ref):
        per_now[pid] = per_now.get(pid, 0.0) + math.exp(a)
        per_ref[pid] = per_ref.get(pid, 0.0) + math.exp(b)
    assert s["sharpen/rate"] == pytest.approx(sum(a < b for a, b in zip(now, ref)) / N)
    assert s["sharpen/mass_now"] == pytest.approx(sum(per_now.values()) / len(per_now))
    assert s["sharpen/mass_ref"] == pytest.approx(sum(per_ref.values()) / len(per_ref))
    ratios = sorted(a - b for a, b in zip(now, ref))
    assert s["sharpen/median_logratio"] == pytest.approx((ratios[N // 2 - 1] + ratios[N // 2]) / 2)
    assert s["sharpen/num_problems"] == len(per_now)

    token_logp = torch.tensor(-rng.exponential(size=(6, 5)))
    mask = torch.tensor(rng.random((6, 5)) < 0.5)
    seq = M.sequence_logprobs(token_logp, mask)
    for i in range(6):
        assert float(seq[i]) == pytest.approx(sum(float(token_logp[i, t]) for t in range(5) if mask[i, t]))

    base_c, now_c = rng.integers(0, 4, size=50), rng.integers(0, 4, size=50)
    for min_c, sfx in ((1, ""), (2, "_c2")):
        b = M.boundary_counts(base_c, now_c, min_c=min_c)
        pairs = [(x >= min_c, y >= min_c) for x, y in zip(base_c, now_c)]
        assert b[f"boundary/gained{sfx}"] == sum(not x and y for x, y in pairs)
        assert b[f"boundary/lost{sfx}"] == sum(x and not y for x, y in pairs)
        assert b[f"boundary/kept{sfx}"] == sum(x and y for x, y in pairs)
        assert b[f"boundary/never{sfx}"] == sum(not x and not y for x, y in pairs)


def test_public_names_exported():
    for name in M.__all__:
        assert callable(getattr(M, name))
