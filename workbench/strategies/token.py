"""Per-token calibrations inside the loss: Clip-Cov and KL-Cov (Cui et al. 2025, "The
Entropy Mechanism of Reinforcement Learning for Reasoning Language Models").

Both start from the centred product over the batch's valid tokens
    kappa_t = (log pi_t - mean log pi) * (A_t - mean A),
whose mean is the covariance that drives the entropy change: tokens with large kappa
(confident and rewarded) are the ones that collapse entropy.
"""

from __future__ import annotations

import torch

from workbench.strategies.base import TokenBatch, TokenShaping, register


def centred_product(t: TokenBatch) -> torch.Tensor:
    """kappa [N, T]; 0 on invalid tokens."""
    m = t.mask.bool()
    lp_mean = t.logp[m].mean()
    a_mean = t.adv[m].mean()
    kappa = (t.logp - lp_mean) * (t.adv - a_mean)                                   # [N, T]
    return torch.where(m, kappa, torch.zeros_like(kappa))


def _count(ratio: float, n_valid: int) -> int:
    """(choice, as the authors' code) max(int(r * n_valid), 1): tiny batches still select one token."""
    return max(int(ratio * n_valid), 1) if n_valid else 0


@register("token", "clip_cov")
def clip_cov(t: TokenBatch, p) -> TokenShaping:
    """Clip-Cov: among valid tokens with kappa in [low, high], zero the gradient of a random
    max(int(r * n_valid), 1) of them (r = 2e-4 by default; raise r for tiny batches).
    Degenerate: no token in the band -> nothing selected."""
    kappa = centred_product(t)
    m = t.mask.bool()
    cand = (m & (kappa >= p.low) & (kappa <= p.high)).flatten().nonzero().squeeze(-1)  # [n_cand]
    weight = torch.ones_like(t.logp)
    k = min(_count(p.ratio, int(m.sum())), cand.numel())
    if k:
        pick = cand[torch.randperm(cand.numel(), generator=t.generator)[:k].to(cand.device)]
        weight.view(-1)[pick] = 0.0
    return TokenShaping(weight=weight, selected=k)


@register("token", "kl_cov")
def kl_cov(t: TokenBatch, p) -> TokenShaping:
    """KL-Cov: add coef * |log pi_theta - log pi_old| to the loss of the top
    max(int(r * n_valid), 1) valid tokens by kappa, restraining exactly the tokens whose
    update would collapse entropy most."""
    kappa = centred_product(t)
    m = t.mask.bool()
    k = _count(p.ratio, int(m.sum()))
    coef = torch.zeros_like(t.logp)
    if k:
        scores = torch.where(m, kappa, torch.full_like(kappa, float("-inf"))).flatten()
        top = torch.topk(scores, k).indices
        coef.view(-1)[top] = p.coef
    return TokenShaping(extra_coef=coef, selected=k)
