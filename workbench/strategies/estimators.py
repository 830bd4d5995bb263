"""Estimators: group rewards [B, G] -> per-sample advantages [B, G] (docs/strategies.md).

"Correct" for psr / nsr / w_reinforce means reward > 0 after the reward transform
(choice: with the verifier's binary reward this is the verifier's verdict).
"""

from __future__ import annotations

import torch

from workbench.strategies.base import register


def _spread(rewards: torch.Tensor) -> torch.Tensor:
    """[B, 1] bool: does the group's reward vary (max > min)? A group without spread gets an
    advantage of exactly 0 from every baseline estimator. Comparing r - mean with 0 is not
    enough: mean([0.3] * 8) rounds away from 0.3 in float32, and GRPO's division by
    (std + eps) would blow that rounding up to advantages of ~0.03-0.1."""
    return rewards.amax(dim=1, keepdim=True) > rewards.amin(dim=1, keepdim=True)


def _zero_without_spread(adv: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    return torch.where(_spread(rewards), adv, torch.zeros_like(adv))


@register("estimator", "grpo")
def grpo(rewards: torch.Tensor, batch, p) -> torch.Tensor:
    """GRPO (Shao et al. 2024, DeepSeekMath): A_i = (r_i - mean_j r_j) / (std_j r_j + eps).

    (choice) The std is the population std over the group; the paper does not say (the
    unbiased one differs by sqrt(G/(G-1))). Degenerate: a group whose rewards are all
    equal (max = min, binary or graded) gets A = 0 exactly, decided by the group's range
    rather than by std + eps, so all-correct and all-wrong groups carry no gradient; they are
    counted (``train/frac_all_correct``, ``train/frac_all_wrong``), not hidden. Known bias
    (Dr. GRPO): dividing by the std up-weights groups with very low or very high success.
    """
    mean = rewards.mean(dim=1, keepdim=True)                        # [B, 1]
    std = rewards.std(dim=1, unbiased=False, keepdim=True)          # [B, 1]
    return _zero_without_spread((rewards - mean) / (std + p.eps), rewards)   # [B, G]


@register("estimator", "dr_grpo")
def dr_grpo(rewards: torch.Tensor, batch, p) -> torch.Tensor:
    """Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training"): A_i = r_i - mean_j r_j,
    no std normalisation; its preset also uses ``seq_sum_const`` aggregation (no length
    normalisation). Fixes GRPO's difficulty bias and length bias. All-equal groups: A = 0
    exactly (by the group's range, as in ``grpo``)."""
    return _zero_without_spread(rewards - rewards.mean(dim=1, keepdim=True), rewards)   # [B, G]


@register("estimator", "rloo")
def rloo(rewards: torch.Tensor, batch, p) -> torch.Tensor:
    """RLOO (Ahmadian et al. 2024, "Back to Basics"): A_i = r_i - mean_{j != i} r_j, an
    unbiased leave-one-out baseline; equals G/(G-1) * (r_i - mean). Needs G >= 2.
    All-equal groups: A = 0 exactly (by the group's range, as in ``grpo``)."""
    G = rewards.shape[1]
    others = (rewards.sum(dim=1, keepdim=True) - rewards) / (G - 1)  # [B, G]
    return _zero_without_spread(rewards - others, rewards)


@register("estimator", "reinforce")
def reinforce(rewards: torch.Tensor, batch, p) -> torch.Tensor:
    """REINFORCE (Williams 1992): A_i = r_i, no baseline; high variance, and with 0/1
    rewards wrong samples get no push at all."""
    return rewards.clone()


@register("estimator", "psr")
def psr(rewards: torch.Tensor, batch, p) -> torch.Tensor:
    """Positive sample reinforcement (Zhu et al. 2025, "The Surprising Effectiveness of
    Negative Reinforcement"): A_i = +1 if correct else 0. No group normalisation: it
    sharpens onto the modes already sampled, raising pass@1 and lowering large-k pass@k."""
    return (rewards > 0).float()


@register("estimator", "nsr")
def nsr(rewards: torch.Tensor, batch, p) -> torch.Tensor:
    """Negative sample reinforcement (Zhu et al. 2025): A_i = 0 if correct else -1. Pushes
    down every wrong sample, including in all-wrong groups, and redistributes the mass
    by the model's prior, which keeps diversity (the paper's claim)."""
    return -(rewards <= 0).float()


@register("estimator", "w_reinforce")
def w_reinforce(rewards: torch.Tensor, batch, p) -> torch.Tensor:
    """Weighted REINFORCE (Zhu et al. 2025): A_i = lambda if correct else -1 (lambda = 0.1),
    mostly negative reinforcement with a little positive."""
    return torch.where(rewards > 0, torch.full_like(rewards, p.lam), torch.full_like(rewards, -1.0))


@register("estimator", "zero")
def zero(rewards: torch.Tensor, batch, p) -> torch.Tensor:
    """A = 0: no policy-gradient term. For loss-only objectives such as EM-FT, whose
    preset sets a negative ``loss.entropy_coef`` (minimising entropy on own samples)."""
    return torch.zeros_like(rewards)
