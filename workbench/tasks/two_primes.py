"""Two-prime sum: write an even N (10..398) as a sum of two primes (Goldbach pairs).

Small enough for a character-level model, yet every N has several correct answers (the
pairs), which is what makes mode collapse visible.  Prompt ``N=040:``, completion ``3+37``.
"""

from __future__ import annotations

import random
import re

from workbench.errors import ConfigError
from workbench.tasks.base import UNPARSED, Problem, Task, Verdict, graded, proportional_counts

N_MIN, N_MAX = 10, 398
EVAL_SIZE = 64
_ANSWER = re.compile(r"^\s*(\d+)\s*\+\s*(\d+)\s*$")


def is_prime(k: int) -> bool:
    if k < 2:
        return False
    i = 2
    while i * i <= k:
        if k % i == 0:
            return False
        i += 1
    return True


def bucket(n: int) -> int:
    """Difficulty: 0 for N<100, 1 for <200, 2 for <300, 3 above (more digits, more pairs)."""
    return min(n // 100, 3)


def all_n(difficulty: int | None = None) -> list[int]:
    return [n for n in range(N_MIN, N_MAX + 1, 2) if difficulty is None or bucket(n) == difficulty]


def make_problem(n: int) -> Problem:
    return Problem(id=f"tp-{n:03d}", data={"n": n}, difficulty=bucket(n))


class TwoPrimes(Task):
    """Goldbach pairs.  Either order is accepted; the mode key is the sorted pair."""

    name = "two_primes"
    max_new_tokens = 10  # "197+199" is 7 characters, plus EOS

    def generate(self, n: int, seed: int, difficulty: int | None = None) -> list[Problem]:
        """``n`` problems in seeded random order; past the pool size the order repeats reshuffled."""
        pool = all_n(difficulty)
        if not pool:
            raise ConfigError(f"no two_primes problems at difficulty {difficulty}; use 0..3 or None")
        rng = random.Random(seed)
        out: list[int] = []
        while len(out) < n:
            out += rng.sample(pool, min(len(pool), n - len(out)))
        return [make_problem(k) for k in out]

    def prompt(self, problem: Problem) -> str:
        return f"N={problem.data['n']:03d}:"

    def instruction(self, problem: Problem) -> str:
        return (
            f"Write {problem.data['n']} as the sum of two prime numbers. "
            "Reply with only the two primes in the form p+q (for example 3+7 for 10)."
        )

    def verify(self, problem: Problem, completion: str) -> Verdict:
        m = _ANSWER.match(completion) if isinstance(completion, str) else None
        if m is None:
            return UNPARSED
        p, q = sorted((int(m.group(1)), int(m.group(2))))
        key = f"{p}+{q}"
        ok = p + q == problem.data["n"] and is_prime(p) and is_prime(q)
        return graded(ok, answer=key, mode_key=key)

    def solutions(self, problem: Problem, limit: int | None = None) -> list[str]:
        """All pairs ``p+q`` with p <= q, ascending in p."""
        n = problem.data["n"]
        pairs = [f"{p}+{n - p}" for p in range(2, n // 2 + 1) if is_prime(p) and is_prime(n - p)]
        return pairs if limit is None else pairs[:limit]

    def build_splits(self) -> dict[str, list[Problem]]:
        """All 195 N: ``eval`` takes 64, stratified by difficulty bucket (seed 0); the rest is ``train``."""
        buckets = [all_n(d) for d in range(4)]
        counts = proportional_counts([len(b) for b in buckets], EVAL_SIZE)
        rng = random.Random(0)
        held = {n for b, c in zip(buckets, counts) for n in rng.sample(b, c)}
        return {
            "train": [make_problem(n) for n in all_n() if n not in held],
            "eval": [make_problem(n) for n in sorted(held)],
        }
