"""The clipped surrogate, aggregation and KL term on hand-computed values."""

import math

import pytest
import torch

from workbench.losses import aggregate, policy_loss


def _loss(logp, old, adv, mask=None, **kw):
    logp = torch.tensor(logp, requires_grad=True)
    mask = torch.ones_like(logp) if mask is None else torch.tensor(mask)
    kw.setdefault("eps_low", 0.2)
    kw.setdefault("eps_high", 0.2)
    kw.setdefault("aggregation", "token_mean")
    kw.setdefault("max_len", logp.shape[1])
    parts = policy_loss(logp, torch.tensor(old), torch.tensor(adv), mask, **kw)
    parts.loss.backward()
    return parts, logp.grad


def test_clipping_by_hand():
    # ratios exp(log 1.5)=1.5 and exp(log 0.5)=0.5 with A=+1 and A=-1.
    lp = [[math.log(1.5), math.log(0.5), math.log(1.5), math.log(0.5)]]
    adv = [[1.0, 1.0, -1.0, -1.0]]
    parts, grad = _loss(lp, [[0.0] * 4], adv)
    # token losses: -min(1.5, 1.2) = -1.2 (clipped, no grad); -min(0.5, 0.8) = -0.5 (grad);
    #               -min(-1.5, -1.2) = 1.5 (grad); -min(-0.5, -0.8) = 0.8 (clipped, no grad)
    assert parts.loss.item() == pytest.approx((-1.2 - 0.5 + 1.5 + 0.8) / 4)
    # d/dlogp of -rho*A = -rho*A, divided by 4 tokens
    assert grad[0].tolist() == pytest.approx([0.0, -0.5 / 4, 1.5 / 4, 0.0])


def test_no_clipping_with_infinite_eps():
    lp = [[math.log(1.5), math.log(0.5)]]
    parts, grad = _loss(lp, [[0.0, 0.0]], [[1.0, -1.0]], eps_low=math.inf, eps_high=math.inf)
    assert parts.loss.item() == pytest.approx((-1.5 + 0.5) / 2)
    assert grad[0].tolist() == pytest.approx([-1.5 / 2, 0.5 / 2])


def test_aggregations_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    m = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert aggregate(x, m, "token_mean", 3).item() == pytest.approx(10 / 4)
    assert aggregate(x, m, "seq_mean_token_mean", 3).item() == pytest.approx((2 + 4) / 2)
    assert aggregate(x, m, "seq_sum_const", 5).item() == pytest.approx(10 / (2 * 5))


def test_kl_term_and_entropy_bonus():
    lp = [[math.log(0.5)]]
    ref = torch.tensor([[math.log(0.25)]])
    parts, _ = _loss(lp, [[math.log(0.5)]], [[0.0]], kl_coef=0.1, ref_logp=ref)
    # k3 with log pi_ref - log pi = log 0.5: exp(.) - . - 1 = 0.5 - log 0.5 - 1
    assert parts.loss.item() == pytest.approx(0.1 * (0.5 - math.log(0.5) - 1))
    ent = torch.tensor([[2.0]])
    parts, _ = _loss(lp, [[math.log(0.5)]], [[0.0]], entropy_coef=0.5, entropy=ent)
    assert parts.loss.item() == pytest.approx(-1.0)


def test_token_weight_gates_the_gradient():
    parts, grad = _loss([[0.0, 0.0]], [[0.0, 0.0]], [[1.0, 1.0]], token_weight=torch.tensor([[1.0, 0.0]]))
    assert grad[0, 1].item() == 0.0 and grad[0, 0].item() != 0.0


def test_kl_cov_selected_token_follows_the_reference_loss():
    # rho = 1.5, A = +1, k = 1 on a selected token: loss -A*rho + k*|log rho| (no clipping),
    # d/dlogp = -A*rho + k*sign(log rho) = -1.5 + 1 = -0.5. The clipped surrogate would give
    # 0 from the surrogate (rho > 1.2) and +1 from the penalty: the opposite sign.
    from workbench.strategies import TokenBatch, build_strategy

    logp = torch.tensor([[math.log(1.5), -3.0, -3.0, -3.0]], requires_grad=True)
    old = torch.tensor([[0.0, -3.0, -3.0, -3.0]])
    adv = torch.tensor([[1.0, -1.0, -1.0, -1.0]])
    mask = torch.ones(1, 4)
    shaping = build_strategy("kl_cov", {"kl_cov.ratio": 0.25}).shape_tokens(
        TokenBatch(logp.detach(), old, adv, mask, torch.Generator().manual_seed(0)))
    assert shaping.extra_coef.tolist() == [[1.0, 0.0, 0.0, 0.0]]               # token 0 has the top kappa
    parts = policy_loss(logp, old, adv, mask, eps_low=0.2, eps_high=0.2, aggregation="token_mean", max_len=4,
                        **shaping.loss_kwargs())
    parts.loss.backward()
    assert parts.loss.item() == pytest.approx((-1.5 + math.log(1.5) + 3 * 1.0) / 4)
    assert logp.grad[0, 0].item() == pytest.approx(-0.5 / 4)


def test_kl_cov_penalty_has_no_gradient_on_policy_and_clip_others_option():
    from workbench.strategies import TokenBatch, build_strategy

    # rho == 1 exactly: the |log rho| penalty adds nothing to the gradient
    logp = torch.tensor([[0.0, -2.0]], requires_grad=True)
    adv, mask = torch.tensor([[1.0, -1.0]]), torch.ones(1, 2)
    tb = TokenBatch(logp.detach(), logp.detach().clone(), adv, mask, torch.Generator().manual_seed(0))
    shaping = build_strategy("kl_cov", {"kl_cov.ratio": 0.5, "kl_cov.coef": 5.0}).shape_tokens(tb)
    policy_loss(logp, logp.detach().clone(), adv, mask, eps_low=0.2, eps_high=0.2, aggregation="token_mean",
                max_len=2, **shaping.loss_kwargs()).loss.backward()
    assert logp.grad.tolist() == [[-0.5, 0.5]]                                  # -A/2 alone
    # an unselected token with rho = 1.5, A = +1: unclipped (-1.5/2) as in the reference, or
    # clipped (0) with clip_others
    logp = torch.tensor([[0.0, math.log(1.5), -3.0]], requires_grad=True)
    old = torch.tensor([[0.0, 0.0, -3.0]])
    adv, mask = torch.tensor([[3.0, 1.0, 2.0]]), torch.ones(1, 3)              # kappa = [0.86, -1.27, 0]
    for clip_others, want in ((False, -1.5 / 3), (True, 0.0)):
        logp.grad = None
        tb = TokenBatch(logp.detach(), old, adv, mask, torch.Generator().manual_seed(0))
        sh = build_strategy("kl_cov", {"kl_cov.ratio": 0.34, "kl_cov.clip_others": clip_others}).shape_tokens(tb)
        assert sh.extra_coef.tolist() == [[1.0, 0.0, 0.0]]
        policy_loss(logp, old, adv, mask, eps_low=0.2, eps_high=0.2, aggregation="token_mean", max_len=3,
                    **sh.loss_kwargs()).loss.backward()
        assert logp.grad[0, 1].item() == pytest.approx(want)
