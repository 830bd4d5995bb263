"""Reward transforms: replace the verifier's reward before the estimator (docs/strategies.md).

The raw reward stays in ``GroupBatch.rewards`` and is logged as ``train/reward_mean``;
the transformed one is ``train/reward_transformed_mean``.
"""

from __future__ import annotations

from collections import Counter

import torch

from workbench.seeding import row_seed
from workbench.strategies.base import register


@register("reward", "random")
def random_reward(batch, p) -> torch.Tensor:
    """Spurious reward (Shao et al. 2025, "Spurious Rewards: Rethinking Training Signals in
    RLVR"): r_i ~ Bernoulli(p), independent of the output. What it shows: with clipping, a
    reward carrying no information still moves the policy (clipping bias toward the
    model's existing high-probability behaviour). Seeded per (run seed, step), so runs
    and resumed runs draw the same rewards. Degenerate: p = 0 or 1 gives all-equal groups.
    """
    g = torch.Generator().manual_seed(row_seed(batch.seed, "random_reward", batch.step))
    return (torch.rand(batch.rewards.shape, generator=g) < p.p).float()              # [B, G]


@register("reward", "format_only")
def format_only(batch, p) -> torch.Tensor:
    """1 if the completion parses as an answer of the task's form, else 0 (the format
    reward of the spurious-reward experiments): rewards form, not correctness."""
    return batch.parsed.float()                                                     # [B, G]


@register("reward", "incorrect_only")
def incorrect_only(batch, p) -> torch.Tensor:
    """1 if the completion parses and is wrong (a deliberately misleading reward from the
    spurious-reward experiments)."""
    return (batch.parsed & ~batch.correct).float()                                  # [B, G]


@register("reward", "majority_vote")
def majority_vote(batch, p) -> torch.Tensor:
    """Label-free pseudo-reward (TTRL, Zuo et al. 2025): 1 if the sample's parsed answer
    equals the group's most frequent parsed answer. (choice) Ties go to the answer seen
    first in the group; unparsed samples get 0 and do not vote; a group with no parsed
    answer gets all zeros."""
    out = torch.zeros(batch.rewards.shape)
    for b, answers in enumerate(batch.answers):
        votes = Counter(a for a in answers if a is not None)
        if not votes:
            continue
        top = max(votes.values())
        winner = next(a for a in answers if a is not None and votes[a] == top)
        out[b] = torch.tensor([float(a == winner) for a in answers])
    return out                                                                      # [B, G]


@register("reward", "entropy_min")
def entropy_min(batch, p) -> torch.Tensor:
    """EM-RL (Agarwal et al. 2025, "The Unreasonable Effectiveness of Entropy
    Minimization"): r_i = -mean_t H_{i,t}, the negative mean full-distribution token
    entropy of the sample, fed to the chosen estimator. No verifier involved."""
    return -batch.entropy.float()                                                   # [B, G]
