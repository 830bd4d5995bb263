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


def distribution_entropy(x: Tensor, *, lse: Tensor | None = None, probs: Tensor | None = None,
                         masked_vocab: bool = True) -> Tensor:
    """Full-distribution entropy −Σ_v π(v) log π(v) over the last axis: [..., V] → [...].

    The one place this quantity is computed (sampler, teacher-forced scoring, simulator,
    ``token_entropy``), in one of two forms chosen by what the caller holds:

    * ``lse`` None: ``x`` are normalised log-probs log π (e.g. a ``log_softmax``) and
      H = −Σ π·log π, with ``probs`` = ``x.exp()`` when the caller has it already;
    * ``lse`` given: ``x`` are unnormalised scores and ``lse`` their ``logsumexp`` [...],
      and H = lse − Σ softmax(x)·x. A caller that takes the sampled tokens' log-probs as
      gather − logsumexp (for a large vocabulary, no [..., V] log-prob tensor) gets the
      entropy from the same two tensors.

    The two forms agree up to float rounding but not bit for bit, so each caller keeps the
    one it has always used (stored runs stay reproducible). A vocabulary entry with π = 0
    (a −inf score) contributes 0, the limit of π log π, not NaN; with log-probs,
    ``masked_vocab=True`` does so by zeroing every NaN term (a NaN entry too), and
    ``masked_vocab=False`` is for log-probs that are finite by construction (the
    simulator's policies): no guard, so a diverged policy's NaN shows. With finite inputs
    both forms are differentiable; with −inf scores only the ``lse`` form is (the masked
    entries get gradient 0; the log-prob form's gradient is NaN there).
    """
    if lse is not None:
        return lse - (torch.softmax(x, dim=-1) * x.nan_to_num(neginf=0.0)).sum(-1)  # [...]
    plogp = (x.exp() if probs is None else probs) * x  # [..., V]
    return -(plogp.nan_to_num() if masked_vocab else plogp).sum(-1)  # [...]


def token_entropy(logits: Tensor) -> Tensor:
    """Entropy −Σ_v π(v) log π(v) of softmax(logits) over the last axis: [..., V] → [...].

    Uses log_softmax in at least float32.  Logits of −inf (a masked vocabulary) have
    π = 0 and contribute 0 (the limit of p log p), not NaN.  A row that is −inf
    everywhere has no distribution and gives NaN.
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    logp = torch.log_softmax(logits.to(dtype), dim=-1)  # [..., V]
    return distribution_entropy(logp).masked_fill(torch.isnan(logp).any(-1), float("nan"))  # [...]


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
