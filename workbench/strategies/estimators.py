"""Estimators: group rewards [B, G] -> per-sample advantages [B, G]."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from workbench.strategies.base import register


@dataclass
class GrpoParams:
    eps: float = field(default=1e-6, metadata={"help": "Added to the group std in the denominator."})


@register("estimator", "grpo", GrpoParams)
def grpo(rewards: torch.Tensor, batch, p: GrpoParams) -> torch.Tensor:
    """GRPO (Shao et al. 2024, DeepSeekMath): A_i = (r_i - mean_j r_j) / (std_j r_j + eps).

    The std is the population std over the group (choice: the paper does not say; the
    unbiased one differs by sqrt(G/(G-1))). A group whose rewards are all equal gets A = 0:
    all-correct and all-wrong groups carry no gradient, which is counted, not hidden
    (``train/frac_all_correct``, ``train/frac_all_wrong``).
    """
    mean = rewards.mean(dim=1, keepdim=True)                        # [B, 1]
    std = rewards.std(dim=1, unbiased=False, keepdim=True)          # [B, 1]
    return (rewards - mean) / (std + p.eps)                         # [B, G]
