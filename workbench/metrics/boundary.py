"""Boundary expansion against the base model: which problems RL gained or lost.

A problem is *solved* at budget n when at least ``min_c`` of its n samples are correct
(c ≥ 1 by default).  One success is weak evidence, so the same counts are also reported
with c ≥ 2, and the per-problem pass@k difference (now − base) at a chosen large k.

Key naming: ``boundary/<count>`` for min_c = 1 and ``boundary/<count>_c<min_c>`` for any
other threshold, e.g. ``boundary/gained`` and ``boundary/gained_c2``.
"""

from __future__ import annotations

import numpy as np

from workbench.errors import ConfigError
from workbench.metrics.passk import pass_at_k_matrix


def boundary_counts(base_c, now_c, min_c: int = 1) -> dict:
    """Counts of problems gained, lost, kept and never solved; base_c, now_c: int [P].

    solved = c ≥ min_c.  gained = solved now and not by the base; lost = solved by the
    base and not now; kept = both; never = neither (the four sum to P).
    Keys ``boundary/{gained,lost,kept,never}`` plus the suffix ``_c<min_c>`` if min_c ≠ 1.
    """
    if min_c < 1:
        raise ConfigError(f"boundary_counts needs min_c ≥ 1 (got {min_c})")
    base = np.asarray(base_c).reshape(-1) >= min_c  # [P]
    now = np.asarray(now_c).reshape(-1) >= min_c  # [P]
    if base.shape != now.shape:
        raise ConfigError(f"boundary_counts: {base.size} base problems but {now.size} now")
    sfx = "" if min_c == 1 else f"_c{min_c}"
    return {
        f"boundary/gained{sfx}": int((now & ~base).sum()),
        f"boundary/lost{sfx}": int((base & ~now).sum()),
        f"boundary/kept{sfx}": int((base & now).sum()),
        f"boundary/never{sfx}": int((~base & ~now).sum()),
    }


def passk_delta(base_n, base_c, now_n, now_c, k: int) -> np.ndarray:
    """Per-problem pass@k now − base, float [P]; NaN where k exceeds either n."""
    now = pass_at_k_matrix(now_n, now_c, [k])[:, 0]  # [P]
    base = pass_at_k_matrix(base_n, base_c, [k])[:, 0]  # [P]
    if now.shape != base.shape:
        raise ConfigError(f"passk_delta: {base.size} base problems but {now.size} now")
    return now - base


def boundary_summary(
    base: dict[str, tuple[int, int]], now: dict[str, tuple[int, int]], k: int
) -> dict:
    """Boundary counts and pass@k shift, aligning problems by id ({id: (n, c)}).

    Problems present in only one of the two are ignored and counted.  Keys:
      ``boundary/{gained,lost,kept,never}`` (c ≥ 1) and the same with ``_c2`` (c ≥ 2);
      ``boundary/num_problems`` (aligned), ``boundary/num_missing_base`` (in ``now`` only),
      ``boundary/num_missing_now`` (in ``base`` only);
      ``boundary/passk_k`` (= k), ``boundary/passk_delta_mean`` (mean of now − base over
      problems where k ≤ both n; ``None`` if none) and ``boundary/passk_delta_num_defined``.
    """
    ids = sorted(base.keys() & now.keys())
    arr_base = np.asarray([base[i] for i in ids], dtype=np.int64).reshape(-1, 2)  # [P, 2] = (n, c)
    arr_now = np.asarray([now[i] for i in ids], dtype=np.int64).reshape(-1, 2)  # [P, 2]
    delta = passk_delta(arr_base[:, 0], arr_base[:, 1], arr_now[:, 0], arr_now[:, 1], k)  # [P]
    defined = delta[~np.isnan(delta)]
    return {
        **boundary_counts(arr_base[:, 1], arr_now[:, 1], min_c=1),
        **boundary_counts(arr_base[:, 1], arr_now[:, 1], min_c=2),
        "boundary/num_problems": len(ids),
        "boundary/num_missing_base": len(now.keys() - base.keys()),
        "boundary/num_missing_now": len(base.keys() - now.keys()),
        "boundary/passk_k": int(k),
        "boundary/passk_delta_mean": float(defined.mean()) if defined.size else None,
        "boundary/passk_delta_num_defined": int(defined.size),
    }
