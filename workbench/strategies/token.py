"""Per-token calibrations inside the loss: Clip-Cov and KL-Cov (Cui et al. 2025, "The
Entropy Mechanism of Reinforcement Learning for Reasoning Language Models"), as in the
authors' code (``compute_policy_loss_clip_cov`` / ``compute_policy_loss_kl_cov``).

Both start from the centred product over the batch's valid tokens
    kappa_t = (log pi_t - mean log pi) * (A_t - mean A),
with log pi the current policy's log-prob (this update's forward), whose mean is the
covariance that drives the entropy change: tokens with large kappa (confident and
rewarded) are the ones that collapse entropy.
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
    """Clip-Cov: among valid tokens with low < kappa < high that the PPO clip does not
    already stop, zero the gradient of a random max(int(r * n_valid), 1) of them
    (r = 2e-4 by default; raise r for tiny batches). Every other token keeps the
    PPO-clipped surrogate. Degenerate: no token in the band -> nothing selected."""
    kappa = centred_product(t)
    m = t.mask.bool()
    band = m & (kappa > p.low) & (kappa < p.high)                                   # [N, T]
    if t.clipped is not None:  # tokens whose clipped branch is in force are not candidates
        band = band & ~t.clipped.bool()
    cand = band.flatten().nonzero().squeeze(-1)                                     # [n_cand]
    weight = torch.ones_like(t.logp)
    k = min(_count(p.ratio, int(m.sum())), cand.numel())
    if k:
        pick = cand[torch.randperm(cand.numel(), generator=t.generator)[:k].to(cand.device)]
        weight.view(-1)[pick] = 0.0
    return TokenShaping(weight=weight, selected=k)


@register("token", "kl_cov")
def kl_cov(t: TokenBatch, p) -> TokenShaping:
    """KL-Cov: the top max(int(r * n_valid), 1) valid tokens by kappa get the loss
    -A*rho + coef*|log pi_theta - log pi_old|, with no clipping; the other tokens get the
    unclipped -A*rho too, as in the authors' code, unless ``clip_others`` keeps the
    PPO-clipped surrogate on them.

    On a fully on-policy update (pi_old = pi_theta, so rho = 1 exactly) the penalty has
    zero gradient; it restrains the selected tokens only from the second update on a batch,
    so use more than one update per batch (the ``kl_cov`` preset sets two)."""
    kappa = centred_product(t)
    m = t.mask.bool()
    k = _count(p.ratio, int(m.sum()))
    coef = torch.zeros_like(t.logp)
    selected = torch.zeros_like(m)
    if k:
        scores = torch.where(m, kappa, torch.full_like(kappa, float("-inf"))).flatten()
        top = torch.topk(scores, k).indices
        coef.view(-1)[top] = p.coef
        selected.view(-1)[top] = True
    unclipped = selected if p.clip_others else m
    return TokenShaping(extra_coef=coef, unclipped=unclipped, selected=k)
