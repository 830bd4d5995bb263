"""Pass@k, the reasoning boundary: the unbiased estimator of Chen et al. (2021).

From n samples of a problem with c correct, the chance that at least one of k samples
drawn without replacement is correct is

    pass@k = 1 − C(n−c, k) / C(n, k)            (k ≤ n)
           = 1 − Π_{i=n−c+1}^{n} (1 − k/i)       (the stable product of their Fig. 3)

and the dataset value is the mean over problems.  Keep the per-problem (n, c): every k
and every subset can be recomputed from them later.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workbench.errors import ConfigError


def _check_nck(n: int, c: int, k: int) -> None:
    if n < 0 or c < 0:
        raise ConfigError(f"pass@k needs n ≥ 0 and c ≥ 0 (got n={n}, c={c})")
    if c > n:
        raise ConfigError(f"pass@k: c={c} correct out of n={n} samples is impossible; c must be ≤ n")
    if k < 1:
        raise ConfigError(f"pass@k needs k ≥ 1 (got k={k})")
    if k > n:
        raise ConfigError(
            f"pass@k is undefined for k={k} > n={n} samples; draw at least k samples or lower k"
        )


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: 1 − C(n−c, k)/C(n, k) (Chen et al. 2021, eq. 1).

    Computed as 1 − Π_{i=n−c+1}^{n} (1 − k/i), which never forms a large binomial.
    Degenerate cases: c = 0 → 0.0; n − c < k (every k-subset holds a correct sample) → 1.0.
    Raises ``ConfigError`` (a ``ValueError``) when k > n, c > n, k < 1 or n, c < 0.
    """
    n, c, k = int(n), int(c), int(k)
    _check_nck(n, c, k)
    if n - c < k:
        return 1.0
    i = np.arange(n - c + 1, n + 1, dtype=np.float64)  # [c]
    return float(1.0 - np.prod(1.0 - k / i))


def pass_at_k_matrix(n, c, ks: Sequence[int]) -> np.ndarray:
    """Pass@k for P problems and K values of k at once → float64 array [P, K].

    ``n`` and ``c`` are int arrays of length P (``n`` may also be a scalar shared by all
    problems, and may differ per problem).  Entry [p, j] is ``pass_at_k(n[p], c[p], ks[j])``,
    or NaN where ks[j] > n[p] (undefined there, not 0).

    Vectorised through log-space prefix sums: with L_k(m) = Σ_{k<i≤m} log(1 − k/i),
    Π_{i=n−c+1}^{n} (1 − k/i) = exp(L_k(n) − L_k(n−c)) whenever n − c ≥ k, so the cost is
    O(K·max n + P·K) instead of a product per (problem, k).
    """
    c = np.asarray(c, dtype=np.int64).reshape(-1)  # [P]
    n = np.broadcast_to(np.asarray(n, dtype=np.int64), c.shape).reshape(-1)  # [P]
    ks_arr = np.asarray(list(ks), dtype=np.int64).reshape(-1)  # [K]
    if np.any(ks_arr < 1):
        raise ConfigError(f"pass@k needs every k ≥ 1 (got ks={ks_arr.tolist()})")
    if np.any(c < 0) or np.any(n < 0):
        raise ConfigError("pass@k needs n ≥ 0 and c ≥ 0 for every problem")
    if np.any(c > n):
        p = int(np.argmax(c > n))
        raise ConfigError(f"pass@k: problem {p} has c={c[p]} correct out of n={n[p]}; c must be ≤ n")
    P, K = c.shape[0], ks_arr.shape[0]
    if P == 0 or K == 0:
        return np.zeros((P, K), dtype=np.float64)

    i = np.arange(1, int(n.max()) + 1, dtype=np.float64)  # [M]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.log1p(-ks_arr[:, None] / i[None, :])  # [K, M]; -inf/NaN where i ≤ k
    terms = np.where(i[None, :] > ks_arr[:, None], terms, 0.0)  # [K, M]; only i > k enter
    prefix = np.concatenate([np.zeros((K, 1)), np.cumsum(terms, axis=1)], axis=1)  # [K, M+1]
    log_fail = prefix[:, n] - prefix[:, n - c]  # [K, P]
    out = 1.0 - np.exp(log_fail).T  # [P, K]
    out = np.where((n - c)[:, None] < ks_arr[None, :], 1.0, out)  # [P, K]; a correct one is forced
    out = np.where(c[:, None] == 0, 0.0, out)  # [P, K]; exact zero, no rounding
    return np.where(ks_arr[None, :] > n[:, None], np.nan, out)  # [P, K]


def default_ks(n: int) -> list[int]:
    """The k values of a pass@k curve: 1, 2, 4, …, up to n, plus n if not a power of two."""
    n = int(n)
    if n < 1:
        raise ConfigError(f"a pass@k curve needs n ≥ 1 samples per problem (got n={n})")
    ks = [1 << j for j in range(n.bit_length()) if (1 << j) <= n]
    if ks[-1] != n:
        ks.append(n)
    return ks


def pass_at_k_curve(n, c, ks: Sequence[int] | None = None) -> dict[int, float]:
    """Dataset pass@k curve {k: mean over problems of pass@k} (Chen et al. 2021).

    ``n``: int or int array [P]; ``c``: int array [P].  ``ks`` defaults to
    ``default_ks(min n)``.  Every k must be ≤ every problem's n: a k some problems
    cannot reach raises ``ConfigError`` rather than silently averaging over a subset.
    """
    c_arr = np.asarray(c, dtype=np.int64).reshape(-1)  # [P]
    n_arr = np.broadcast_to(np.asarray(n, dtype=np.int64), c_arr.shape).reshape(-1)  # [P]
    if c_arr.size == 0:
        raise ConfigError("pass@k curve over zero problems is undefined; pass at least one (n, c)")
    n_min = int(n_arr.min())
    ks = default_ks(n_min) if ks is None else [int(k) for k in ks]
    too_large = [k for k in ks if k > n_min]
    if too_large:
        raise ConfigError(
            f"pass@k curve: k={too_large[0]} > n={n_min} samples of some problem; "
            f"use k ≤ {n_min} or draw more samples"
        )
    values = pass_at_k_matrix(n_arr, c_arr, ks).mean(axis=0)  # [K]
    return {k: float(v) for k, v in zip(ks, values)}
