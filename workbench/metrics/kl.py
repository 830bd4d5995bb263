"""Approximate KL divergences between policies from the sampled tokens' log-probs.

Schulman (2020), "Approximating KL Divergence": with x ~ q and r = p(x)/q(x), the k3
estimator r − 1 − log r is unbiased for KL(q ‖ p), always ≥ 0 and low-variance.
"""

from __future__ import annotations

import torch
from torch import Tensor

from workbench.metrics.entropy import masked_mean


def log_ratio(logp: Tensor, logp_base: Tensor) -> Tensor:
    """log(π/π_base) of the sampled tokens = ``logp − logp_base``: [...] → [...].

    The one definition (and sign) of the per-token log-ratio: log ρ against π_old in the
    loss and the off-policy distance, the k3 terms below against π_ref or π_old."""
    return logp - logp_base  # [...]


def importance_ratio(logp: Tensor, old_logp: Tensor) -> tuple[Tensor, Tensor]:
    """(ρ, log ρ) with ρ = π_θ/π_old = exp(logp − old_logp) per sampled token: [...] each.

    The PPO/GRPO importance ratio; with gradient when ``logp`` has it."""
    lr = log_ratio(logp, old_logp)  # [...]
    return torch.exp(lr), lr


def distribution_kl(logp: Tensor, logp_other: Tensor) -> Tensor:
    """Exact KL(π ‖ π_other) = Σ_v π(v) (log π(v) − log π_other(v)) over the last axis, from
    two normalised log-prob tensors: [..., V] → [...] (e.g. a sampling distribution against
    the policy at each generated position). Terms with π = 0 (−inf log-probs, a masked
    vocabulary) count 0; so does any NaN term, as in ``distribution_entropy``."""
    return (logp.exp() * log_ratio(logp, logp_other)).nan_to_num().sum(-1)  # [...]


def kl_k3(logp: Tensor, logp_ref: Tensor) -> Tensor:
    """Per-token k3 term exp(logp_ref − logp) − (logp_ref − logp) − 1 ≥ 0: [...] → [...].

    With tokens sampled from π (``logp``), its mean estimates KL(π ‖ π_ref); this is the
    per-token KL penalty of GRPO (Shao et al. 2024, DeepSeekMath eq. 4).  Computed as
    expm1(d) − d for precision near d = 0, clamped at 0 against rounding.
    """
    d = log_ratio(logp_ref, logp)  # [...]
    return (torch.expm1(d) - d).clamp_min(0.0)  # [...]


def approx_kl(logp_new: Tensor, logp_old: Tensor, mask: Tensor, blocks: int | None = None) -> float | Tensor:
    """Masked mean of k3 with r = π_new/π_old over tokens sampled by π_old → float.

    = mean over valid tokens of exp(logp_new − logp_old) − 1 − (logp_new − logp_old)
    = ``kl_k3(logp_old, logp_new)``: unbiased for KL(π_old ‖ π_new) because the rollout
    tokens come from π_old (CleanRL's ``approx_kl``).  For the KL to the reference pass
    ``logp_new=logp_ref`` and ``logp_old=`` the sampling policy's log-probs: the value is
    then KL(π_old ‖ π_ref), the batch mean of GRPO's penalty term.  [N, T] inputs; 0.0 if
    the mask is empty.
    """
    if blocks is not None:  # S independent runs stacked along the rows: one value each, [S]
        return masked_mean(kl_k3(logp_old, logp_new), mask, blocks).double()
    return float(masked_mean(kl_k3(logp_old, logp_new), mask))
