"""Mode collapse per problem: how many distinct correct solutions survive RL.

A task gives each correct completion a *mode key* (its canonical solution identity);
an incorrect completion has key ``None``.  Per problem: c correct samples, M distinct
correct modes, mode entropy H = −Σ_m f_m ln f_m over the correct samples' mode
frequencies, effective number of modes exp(H), the top mode's share.

These plug-in figures grow with c (more correct samples show more of the rare modes),
so comparing them between an evaluation point and the base model confounds collapse with
success.  The collapse index therefore compares the two at a *matched* number of correct
samples: with m = min(c_base, c_now), D(m) = the expected number of distinct modes among
m correct samples drawn without replacement from each point's correct samples (exact
rarefaction), and index = 1 − D_now(m) / D_base(m), clipped to [0, 1].  Each D(m) is an
unbiased estimate of the expected distinct modes of m fresh correct samples, whatever c
is.  Residual bias: the ratio of two noisy estimates (Jensen) reads slightly negative
when nothing changed (about −0.01 on average at pass@1 0.3 with n = 64, four modes), and
the noise of one problem's index is large when m is small; hence the dataset figure is a
ratio of sums, not a mean of clipped per-problem values (see ``collapse_summary``).  The index is a statement *at m*: at small m it sees only
the common modes, so report m beside it (``collapse_m``, ``collapse/matched_m_mean``).

Undefined is ``None``, never 0: a problem with no correct sample has no mode
distribution, so its entropy, effective modes and top share are ``None``; the collapse
index is ``None`` where m < 2.  Summaries count such problems apart instead of averaging
them in.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

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


def rarefied_distinct(counts: Mapping[str, int] | Sequence[int], m: int) -> float:
    """Expected number of distinct modes among ``m`` of a problem's c correct samples drawn
    without replacement (exact rarefaction): Σ_j [1 − C(c − x_j, m) / C(c, m)], x_j the
    count of mode j.  Needs 1 ≤ m ≤ c.

    A without-replacement subsample of i.i.d. draws is itself i.i.d., so this is an
    unbiased estimate of ``expected_distinct(q, m)`` for the policy's correct-mode
    distribution q, whatever c is: it does not grow with the number of correct samples.
    """
    xs = [int(x) for x in (counts.values() if isinstance(counts, Mapping) else counts) if int(x) > 0]
    c = sum(xs)
    if not 1 <= m <= c:
        raise ConfigError(f"rarefied_distinct needs 1 ≤ m ≤ c (got m = {m}, c = {c})")
    total = math.comb(c, m)
    return float(sum(1.0 - math.comb(c - x, m) / total for x in xs))


def expected_distinct(shares, m: float) -> float:
    """Expected number of distinct modes among ``m`` i.i.d. draws from mode shares q:
    Σ_j [1 − (1 − q_j)^m] (q sums to 1; m may be fractional).  What ``rarefied_distinct``
    estimates, in closed form, for a policy whose probabilities are known (the simulator)."""
    q = np.asarray(shares, dtype=np.float64).reshape(-1)  # [M]
    return float((1.0 - (1.0 - q) ** m).sum())


def index_from_diversity(d_now: float, d_base: float) -> tuple[float, float]:
    """(clipped, raw) collapse index from two diversities at the same m: raw = 1 − D_now/D_base,
    clipped to [0, 1] (the upper clip never acts while D ≥ 1)."""
    raw = 1.0 - d_now / d_base
    return float(min(1.0, max(0.0, raw))), float(raw)


def _counts(row: Mapping) -> Mapping[str, int] | None:
    """A per-problem row's correct-mode counts: ``mode_counts`` (evaluation rows) or
    ``counts`` (``mode_stats`` records); ``None`` when the row has neither."""
    counts = row.get("mode_counts", row.get("counts"))
    return counts if isinstance(counts, Mapping) else None


def matched_collapse(now: Mapping, base: Mapping) -> dict:
    """The collapse index of one problem at a matched number of correct samples.

    ``now`` and ``base``: per-problem rows holding correct-mode counts (``mode_counts``
    or ``counts``).  With m = min(c_base, c_now), D(m) = ``rarefied_distinct`` of each,
    index = 1 − D_now(m) / D_base(m).  Returns ``collapse_index`` (clipped to [0, 1]; 0 =
    as diverse as the base model, 1 = one mode left), ``collapse_index_raw`` (unclipped;
    negative = more diverse than the base at this m, or noise), ``collapse_m`` (the
    effective sample size m) and ``matched_modes_now`` / ``matched_modes_base`` (D_now(m),
    D_base(m)).  All are ``None`` when m < 2 (fewer than two correct samples now or in the
    base, where one draw always shows one mode) or a row has no mode counts: undefined,
    kept apart, never 0.
    """
    cn, cb = _counts(now), _counts(base)
    if cn is None or cb is None:
        return collapse_record(None, None, 0)
    m = min(sum(int(x) for x in cn.values()), sum(int(x) for x in cb.values()))
    if m < 2:
        return collapse_record(None, None, m)
    return collapse_record(rarefied_distinct(cn, m), rarefied_distinct(cb, m), m)


def collapse_record(d_now: float | None, d_base: float | None, m: int) -> dict:
    """A problem's collapse record from its two diversities at the same m (``None`` or
    m < 2: undefined).  Keys ``collapse_index`` (clipped), ``collapse_index_raw``,
    ``collapse_m``, ``matched_modes_now`` and ``matched_modes_base`` (D_now(m), D_base(m))."""
    if d_now is None or d_base is None or m < 2:
        return {"collapse_index": None, "collapse_index_raw": None, "collapse_m": None,
                "matched_modes_now": None, "matched_modes_base": None}
    index, raw = index_from_diversity(d_now, d_base)
    return {"collapse_index": index, "collapse_index_raw": raw, "collapse_m": int(m),
            "matched_modes_now": float(d_now), "matched_modes_base": float(d_base)}


def collapse_index(now: Mapping, base: Mapping) -> float | None:
    """The clipped matched-sample collapse index of one problem (see ``matched_collapse``);
    ``None`` where undefined."""
    return matched_collapse(now, base)["collapse_index"]


def _mean_or_none(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def collapse_summary(
    per_problem_now: list[dict], per_problem_base: list[dict], per_problem: list[dict] | None = None
) -> dict:
    """Collapse over problems: two lists of per-problem rows aligned by position.

    ``per_problem``: the problems' ``matched_collapse`` records when the caller has them
    already (the simulator passes exact ones); computed from the rows' counts otherwise.
    Keys: ``collapse/mean_index``, the dataset's index 1 − Σ D_now(m_i) / Σ D_base(m_i)
    over the defined problems i (a ratio of sums, so problems with more modes weigh more;
    unclipped, so it can read slightly below 0; ``None`` if no problem is defined).  The
    mean of the per-problem indices would be biased: clipped, by the noise of each problem
    (+0.10 with fixed shares at pass@1 0.05, n = 64), and unclipped, by the noise of the
    ratios (−0.08 at pass@1 0.1); the ratio of sums stays within ±0.015 there.
    ``collapse/matched_m_mean`` (mean effective sample size m over defined problems),
    ``collapse/num_defined``, ``collapse/num_undefined`` (m < 2),
    ``collapse/num_solved`` (c > 0 now), ``collapse/mean_eff_modes`` and
    ``collapse/mean_num_modes`` (plug-in figures of the current samples, means over
    problems solved now, ``None`` if none; these do grow with c).
    """
    if len(per_problem_now) != len(per_problem_base):
        raise ConfigError(
            f"collapse_summary needs one base record per problem "
            f"(got {len(per_problem_now)} now, {len(per_problem_base)} base)"
        )
    if per_problem is None:
        per_problem = [matched_collapse(now, base) for now, base in zip(per_problem_now, per_problem_base)]
    elif len(per_problem) != len(per_problem_now):
        raise ConfigError(
            f"collapse_summary: {len(per_problem)} collapse records for {len(per_problem_now)} problems"
        )
    defined = [r for r in per_problem if r["collapse_index_raw"] is not None]
    solved = [r for r in per_problem_now if r["c"] > 0]
    pooled = None
    if defined:
        pooled = 1.0 - sum(r["matched_modes_now"] for r in defined) / sum(r["matched_modes_base"] for r in defined)
    return {
        "collapse/mean_index": pooled,
        "collapse/matched_m_mean": _mean_or_none([float(r["collapse_m"]) for r in defined]),
        "collapse/num_defined": len(defined),
        "collapse/num_undefined": len(per_problem) - len(defined),
        "collapse/num_solved": len(solved),
        "collapse/mean_eff_modes": _mean_or_none([r["eff_modes"] for r in solved]),
        "collapse/mean_num_modes": _mean_or_none([float(r["num_modes"]) for r in solved]),
    }
