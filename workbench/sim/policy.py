"""A featurised softmax policy over P problems × M modes, with its exact quantities.

    z[p, m] = z0[p, m] + sqrt(1 - kappa) * a[p, m] + sqrt(kappa) * s[m]
    pi(m | p) = softmax_m z[p, :]

z0 is the base policy's log-probabilities (fixed), a the private parameters of each
(problem, mode), s a parameter per mode index shared by every problem. Both start at 0,
so the policy starts exactly at the base. The feature of (p, m) is
phi = (sqrt(1-kappa) e_{p,m}, sqrt(kappa) e_m), so two (problem, mode) pairs overlap by
<phi, phi'> = (1-kappa)[same p and m] + kappa[same m]: a gradient step on one problem
moves the same mode of every other problem kappa times as far as its own (semantic
coupling). kappa = 0 is a tabular policy; kappa = 1 a single set of mode logits shared
by all problems (each keeping its own base offsets).

Everything exact is a closed form of pi: success p = sum of pi over correct modes,
pass@k = 1 - (1 - p)^k, entropy -sum pi log pi, and the expected number of distinct
correct modes among n samples, sum over correct m of 1 - (1 - pi_m)^n.
Shapes: P problems, M modes, R selected rows (problems).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch


@contextlib.contextmanager
def one_thread():
    """Run tiny tensor ops on one thread: on a busy 2-core machine a second intra-op thread
    turns microsecond ops into stalls of a fraction of a millisecond. Restored after."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class FeaturePolicy:
    """The trainable policy (float64 torch tensors; ``parameters()`` for an optimiser)."""

    def __init__(self, base_logp: np.ndarray, correct: np.ndarray, coupling: float):
        self.base_logp = torch.as_tensor(base_logp, dtype=torch.float64)        # [P, M] z0
        self.correct = torch.as_tensor(correct, dtype=torch.bool)               # [P, M]
        P, M = self.base_logp.shape
        self.coupling = float(coupling)
        self.k_private = math.sqrt(1.0 - self.coupling)
        self.k_shared = math.sqrt(self.coupling)
        self.a = torch.zeros(P, M, dtype=torch.float64, requires_grad=True)    # [P, M] private
        self.s = torch.zeros(M, dtype=torch.float64, requires_grad=True)       # [M] shared by mode index

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.base_logp.shape)

    def parameters(self) -> list[torch.Tensor]:
        return [self.a, self.s]

    def logits(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """z for the given problem rows ([R] indices; all when None): [R, M], with grad."""
        if rows is None:
            return self.base_logp + self.k_private * self.a + self.k_shared * self.s           # [P, M]
        return self.base_logp[rows] + self.k_private * self.a[rows] + self.k_shared * self.s   # [R, M]

    def log_probs(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        return torch.log_softmax(self.logits(rows), dim=-1)                                    # [R, M]

    # ------------------------------------------------------------------ exact quantities (numpy, no grad)
    def probs(self) -> np.ndarray:
        """pi(m | p) for every problem: [P, M]."""
        with torch.no_grad(), one_thread():
            return self.log_probs().exp().numpy()

    def state_dict(self) -> dict:
        return {"a": self.a.detach().clone(), "s": self.s.detach().clone()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.a.copy_(state["a"])
            self.s.copy_(state["s"])


# ---------------------------------------------------------------------- closed forms of pi
def success(probs: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """p = probability that one sample is correct: [P, M] -> [P]."""
    return (probs * correct).sum(-1)


def pass_at_k(probs: np.ndarray, correct: np.ndarray, k: int | float) -> np.ndarray:
    """Exact pass@k = 1 - (1 - p)^k per problem: [P] (k may exceed any sample budget)."""
    fail = np.clip(1.0 - success(probs, correct), 0.0, 1.0)
    return 1.0 - fail ** k


def entropy(probs: np.ndarray) -> np.ndarray:
    """Full-distribution entropy -sum pi log pi (nats) per problem: [P]."""
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(probs > 0, probs * np.log(probs), 0.0)
    return -plogp.sum(-1)


def correct_distribution(probs: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """pi restricted to the correct modes and renormalised (the mode distribution of the
    correct samples): [P, M], rows of zeros where a problem has no correct mode."""
    q = probs * correct
    tot = q.sum(-1, keepdims=True)
    return np.divide(q, tot, out=np.zeros_like(q), where=tot > 0)


def mode_entropy(probs: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Entropy of the correct samples' mode distribution per problem: [P] (NaN without a correct mode)."""
    q = correct_distribution(probs, correct)
    h = entropy(q)
    return np.where(correct.any(-1), h, np.nan)


def expected_distinct(probs: np.ndarray, correct: np.ndarray, n: int) -> np.ndarray:
    """Expected number of distinct correct modes among n samples: sum_m 1 - (1 - pi_m)^n over
    correct m: [P]."""
    return ((1.0 - (1.0 - probs) ** n) * correct).sum(-1)
