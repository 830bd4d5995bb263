"""Named simulator set-ups used by the lessons and the phenomenon tests.

Each returns a ``SimConfig``; keyword arguments override its fields. They are starting
points that make one mechanism easy to see, not tuned results: every number here is a
plain, round choice, and the notebooks let you move them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workbench.sim.config import SimConfig


def default(**overrides: Any) -> SimConfig:
    """32 problems × 8 modes, 3 correct per problem drawn at random, base success spread
    from 0.02 to 0.9, all problems trained."""
    return SimConfig().replace(**overrides)


def heldout(problems: int = 48, train: int = 32, coupling: float = 0.5, **overrides: Any) -> SimConfig:
    """Train on the first ``train`` problems only; the rest are only evaluated (split 'eval'),
    so they change through the coupling alone — the held-out benchmark of the papers."""
    return SimConfig(problems=problems, train_problems=train, coupling=coupling).replace(**overrides)


def two_stage(problems: int = 8, modes: int = 6, explored: float = 0.3, rare: float = 0.01,
              explored_reward: float = 0.5, **overrides: Any) -> SimConfig:
    """Every problem has an explored mode 0 (probability ``explored``, reward
    ``explored_reward``), a rare better mode 1 (probability ``rare``, reward 1) and wrong
    modes sharing the rest (reward 0). Every problem is in every batch."""
    rewards = np.zeros((problems, modes))
    rewards[:, 0], rewards[:, 1] = explored_reward, 1.0
    base = np.full((problems, modes), (1.0 - explored - rare) / (modes - 2))
    base[:, 0], base[:, 1] = explored, rare
    return SimConfig(problems=problems, modes=modes, mode_rewards=rewards.tolist(), base_probs=base.tolist(),
                     prompts_per_step=problems).replace(**overrides)


def skewed(problems: int = 32, modes: int = 8, skew: float = 3.0, seed: int = 0, **overrides: Any) -> SimConfig:
    """A base policy with one dominant mode per problem: Zipf(``skew``) weights over all
    modes in a random order per problem (skew = 0 is uniform). For reward signals that do
    not depend on the mode, e.g. spurious random rewards."""
    w = (np.arange(modes) + 1.0) ** -skew
    w /= w.sum()
    rng = np.random.default_rng([seed, 11])
    base = np.stack([w[rng.permutation(modes)] for _ in range(problems)])
    return SimConfig(problems=problems, modes=modes, base_probs=base.tolist(), seed=seed).replace(**overrides)
