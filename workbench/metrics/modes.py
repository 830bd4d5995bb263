"""Mode collapse per problem: how many distinct correct solutions survive RL.

A task gives each correct completion a *mode key* (its canonical solution identity);
an incorrect completion has key ``None``.  Per problem: c correct samples, M distinct
correct modes, mode entropy H = −Σ_m f_m ln f_m over the correct samples' mode
frequencies, effective number of modes exp(H), the top mode's share.

Undefined is ``None``, never 0: a problem with no correct sample has no mode
distribution, so its entropy, effective modes, top share and collapse index are ``None``
and summaries count such problems apart instead of averaging them in.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from workbench.errors import ConfigError


def mode_stats(mode_keys: Sequence[str | None]) -> dict:
    """Mode statistics of one problem's samples (``None`` = not correct).

    Returns a per-problem record (not a log dict):
      ``n`` samples, ``c`` correct, ``num_modes`` distinct correct keys,
      ``counts`` {key: count} over correct samples,
      ``mode_entropy`` −Σ f ln f (natural log; 0.0 for one mode),
      ``eff_modes`` exp(mode_entropy) (1.0 for one mode),
      ``top_share`` count of the most frequent mode / c.
    With c == 0, ``mode_entropy``, ``eff_modes`` and ``top_share`` are ``None``.
    """
    counts = Counter(k for k in mode_keys if k is not None)
    c = sum(counts.values())
    record = {
        "n": len(mode_keys),
        "c": c,
        "num_modes": len(counts),
        "counts": dict(counts),
        "mode_entropy": None,
        "eff_modes": None,
        "top_share": None,
    }
    if c == 0:
        return record
    f = np.fromiter(counts.values(), dtype=np.float64, count=len(counts)) / c  # [M]
    h = float(-(f * np.log(f)).sum()) + 0.0  # + 0.0 turns −0.0 into 0.0
    record.update(mode_entropy=h, eff_modes=math.exp(h), top_share=float(f.max()))
    return record


def collapse_index(h_now: float | None, h_base: float | None) -> float | None:
    """Collapse index clip(1 − exp(H_now)/exp(H_base), 0, 1) from two mode entropies.

    0 = as many effective modes as the base model (or more), 1 = one mode left where the
    base had many.  ``None`` when either entropy is ``None`` (no correct sample): the
    problem is undefined and kept apart, never counted as 0.
    """
    if h_now is None or h_base is None:
        return None
    return float(min(1.0, max(0.0, 1.0 - math.exp(h_now - h_base))))


def _mean_or_none(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def collapse_summary(per_problem_now: list[dict], per_problem_base: list[dict]) -> dict:
    """Collapse over problems: two lists of ``mode_stats`` records aligned by position.

    Keys: ``collapse/mean_index`` (mean collapse index over defined problems, ``None`` if
    none), ``collapse/num_defined``, ``collapse/num_undefined`` (no correct sample now
    or in the base), ``collapse/num_solved`` (c > 0 now), ``collapse/mean_eff_modes`` and
    ``collapse/mean_num_modes`` (means over problems solved now, ``None`` if none).
    """
    if len(per_problem_now) != len(per_problem_base):
        raise ConfigError(
            f"collapse_summary needs one base record per problem "
            f"(got {len(per_problem_now)} now, {len(per_problem_base)} base)"
        )
    indices = [
        collapse_index(now["mode_entropy"], base["mode_entropy"])
        for now, base in zip(per_problem_now, per_problem_base)
    ]
    defined = [x for x in indices if x is not None]
    solved = [r for r in per_problem_now if r["c"] > 0]
    return {
        "collapse/mean_index": _mean_or_none(defined),
        "collapse/num_defined": len(defined),
        "collapse/num_undefined": len(indices) - len(defined),
        "collapse/num_solved": len(solved),
        "collapse/mean_eff_modes": _mean_or_none([r["eff_modes"] for r in solved]),
        "collapse/mean_num_modes": _mean_or_none([float(r["num_modes"]) for r in solved]),
    }
