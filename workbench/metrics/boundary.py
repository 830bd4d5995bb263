"""Boundary expansion against the base model: which problems RL gained or lost.

A problem is *solved* at budget n when at least ``min_c`` of its n samples are correct
(c ≥ 1 by default).  One success is weak evidence, so the same counts are also reported
with c ≥ 2, and the per-problem pass@k difference (now − base) at k = n and at the
user's k (``eval.boundary_k``, 8 by default).

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
    base: dict[str, tuple[int, int]], now: dict[str, tuple[int, int]], k: int, report_k: int | None = None
) -> dict:
    """Boundary counts and pass@k shift, aligning problems by id ({id: (n, c)}).

    Problems present in only one of the two are ignored and counted.  Keys:
      ``boundary/{gained,lost,kept,never}`` (c ≥ 1) and the same with ``_c2`` (c ≥ 2);
      ``boundary/num_problems`` (aligned), ``boundary/num_missing_base`` (in ``now`` only),
      ``boundary/num_missing_now`` (in ``base`` only);
      ``boundary/passk_k`` (= k), ``boundary/passk_delta_mean`` (mean of now − base over
      problems where k ≤ both n; ``None`` if none) and ``boundary/passk_delta_num_defined``;
      ``boundary/passk_delta@<k>`` (the same mean).
    At k = n the pass@k delta only restates the solved counts (pass@n is 1 exactly when
    c ≥ 1), so ``report_k`` (the user's k, e.g. 8) adds ``boundary/passk_delta@<report_k>``
    and ``boundary/report_k``; the delta at a moderate k also moves when a problem's
    success changes without crossing c = 0.
    """
    ids = sorted(base.keys() & now.keys())
    arr_base = np.asarray([base[i] for i in ids], dtype=np.int64).reshape(-1, 2)  # [P, 2] = (n, c)
    arr_now = np.asarray([now[i] for i in ids], dtype=np.int64).reshape(-1, 2)  # [P, 2]

    def mean_delta(kk: int) -> tuple[float | None, int]:
        delta = passk_delta(arr_base[:, 0], arr_base[:, 1], arr_now[:, 0], arr_now[:, 1], kk)  # [P]
        defined = delta[~np.isnan(delta)]
        return (float(defined.mean()) if defined.size else None), int(defined.size)

    mean_k, num_k = mean_delta(k)
    out = {
        **boundary_counts(arr_base[:, 1], arr_now[:, 1], min_c=1),
        **boundary_counts(arr_base[:, 1], arr_now[:, 1], min_c=2),
        "boundary/num_problems": len(ids),
        "boundary/num_missing_base": len(now.keys() - base.keys()),
        "boundary/num_missing_now": len(base.keys() - now.keys()),
        "boundary/passk_k": int(k),
        "boundary/passk_delta_mean": mean_k,
        "boundary/passk_delta_num_defined": num_k,
        f"boundary/passk_delta@{int(k)}": mean_k,
    }
    if report_k is not None:
        if report_k < 1:
            raise ConfigError(f"boundary_summary needs report_k ≥ 1 (got {report_k})")
        out[f"boundary/passk_delta@{int(report_k)}"] = mean_delta(report_k)[0]
        out["boundary/report_k"] = int(report_k)
    return out
