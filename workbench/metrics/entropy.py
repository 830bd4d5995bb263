"""Policy entropy and the covariance that predicts its next change.

Entropy here is that of the *full* next-token distribution at each generated position,
H = −Σ_v π(v) log π(v) — not −log π of the sampled token, which is a one-sample estimate
of it.  The covariance between the sampled token's log-prob and its advantage is the
first-order driver of the entropy change under policy-gradient updates (Cui et al. 2025,
"The Entropy Mechanism of RL for Reasoning LMs"): entropy falls when confident tokens are
rewarded (positive covariance) and rises when unlikely tokens are.
"""

from __future__ import annotations

import torch
from torch import Tensor


def token_entropy(logits: Tensor) -> Tensor:
    """Entropy −Σ_v π(v) log π(v) of softmax(logits) over the last axis: [..., V] → [...].

    Uses log_softmax in at least float32.  Logits of −inf (a masked vocabulary) have
    π = 0 and contribute 0 (the limit of p log p), not NaN.  A row that is −inf
    everywhere has no distribution and gives NaN.
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    logp = torch.log_softmax(logits.to(dtype), dim=-1)  # [..., V]
    p = logp.exp()  # [..., V]
    plogp = torch.where(p > 0, p * logp, torch.zeros_like(p))  # [..., V]; 0·(−inf) := 0
    plogp = torch.where(torch.isnan(logp), logp, plogp)  # [..., V]; keep an all −inf row NaN
    return -plogp.sum(dim=-1)  # [...]


def masked_mean(x: Tensor, mask: Tensor, blocks: int | None = None) -> Tensor:
    """Mean of ``x`` over positions where ``mask`` is true → 0-dim tensor.

    Positions outside the mask never enter (even if NaN or ±inf there).  An empty mask
    gives 0, not NaN, so a step with no valid token logs a number.  ``blocks = S``: the
    rows are S equal blocks (independent runs stacked), one mean per block → [S].
    """
    mask = mask.to(torch.bool).expand_as(x)  # [...]
    kept = torch.where(mask, x, torch.zeros_like(x))
    if blocks is not None:
        total, count = kept.reshape(blocks, -1).sum(-1), mask.reshape(blocks, -1).sum(-1)   # [S]
    else:
        total, count = kept.sum(), mask.sum()
    return total / count.clamp_min(1).to(total.dtype)


def logprob_advantage_cov(logp: Tensor, adv: Tensor, mask: Tensor) -> float:
    """Covariance over the batch's valid tokens of (log π(sampled token), advantage).

    logp: [N, T] log-prob of each sampled token; adv: [N, T] per token or [N] per
    sequence (broadcast over T); mask: [N, T] true on generated, non-pad tokens.
    Population covariance: mean over valid tokens of (logp − mean logp)(A − mean A),
    computed in float64.  0.0 when there is no valid token.
    """
    if adv.dim() == 1:
        adv = adv[:, None]  # [N, 1]
    adv = adv.expand_as(logp)  # [N, T]
    mask = mask.to(torch.bool)  # [N, T]
    lp = logp[mask].double()  # [n_valid]
    a = adv[mask].double()  # [n_valid]
    if lp.numel() == 0:
        return 0.0
    return float(((lp - lp.mean()) * (a - a.mean())).mean())
