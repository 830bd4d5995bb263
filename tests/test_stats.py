"""workbench.stats: bootstrap intervals, t-intervals, paired effects, curve bands, verdicts,
checked against hand computations and (when installed) scipy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from workbench import stats


def exact_bootstrap_means(x):
    """The *exact* bootstrap distribution of the mean: every one of the n^n equally likely
    resamples enumerated."""
    return np.array([np.mean([x[i] for i in idx]) for idx in itertools.product(range(len(x)), repeat=len(x))])


def is_quantile(v, means, q, tol=0.006):
    """v is the q-quantile of the discrete distribution ``means`` up to Monte Carlo error:
    P(M < v) <= q <= P(M <= v) (each side with tolerance ``tol``)."""
    eps = 1e-12
    return (means < v - eps).mean() <= q + tol and (means <= v + eps).mean() >= q - tol


def test_two_seeds_bootstrap_by_hand():
    """Values {0, 1}: a resample's mean is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4, so the
    95% percentile interval is [0, 1]; n = 2 is shown as points, not a band."""
    e = stats.bootstrap_mean([0.0, 1.0])
    assert e.mean == 0.5 and e.n == 2
    assert (e.lo, e.hi) == (0.0, 1.0)
    assert not e.band and math.isnan(e.t_lo)
    assert "points 0.000, 1.000; n=2" in e.fmt()


@pytest.mark.parametrize("x", [[0.1, 0.4, 0.35], [1.0, 2.0, 3.0, 10.0], [0.2, 0.2, 0.5, 0.1, 0.3]])
def test_bootstrap_interval_matches_the_exact_bootstrap_distribution(x):
    e = stats.bootstrap_mean(x, resamples=20000)
    means = exact_bootstrap_means(x)
    assert is_quantile(e.lo, means, 0.025) and is_quantile(e.hi, means, 0.975)
    assert not is_quantile(e.lo, means, 0.1) and not is_quantile(e.hi, means, 0.9)   # the check can fail
    assert e.band and e.n == len(x) and e.mean == pytest.approx(np.mean(x))


def test_bootstrap_is_seeded_and_uses_enough_resamples():
    x = [0.31, 0.12, 0.83, 0.55, 0.47, 0.29, 0.64, 0.05]
    a, b = stats.bootstrap_mean(x), stats.bootstrap_mean(x)
    assert (a.lo, a.hi) == (b.lo, b.hi) and a.resamples >= 2000
    c = stats.bootstrap_mean(x, seed=7)
    assert (c.lo, c.hi) != (a.lo, a.hi)


def test_t_interval_by_hand():
    """[1, 2, 3]: mean 2, s = 1, t(0.975, 2) = 4.302653 (tables): 2 ± 4.302653 / sqrt(3)."""
    lo, hi = stats.t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)
    assert lo == pytest.approx(2 - half, abs=1e-9) and hi == pytest.approx(2 + half, abs=1e-9)
    e = stats.bootstrap_mean([1.0, 2.0, 3.0])
    assert (e.t_lo, e.t_hi) == pytest.approx((lo, hi))


@pytest.mark.parametrize("p,df,expected", [(0.975, 1, 12.706204736), (0.975, 4, 2.776445105),
                                           (0.975, 30, 2.042272456), (0.95, 10, 1.812461123), (0.5, 3, 0.0)])
def test_t_quantiles_against_tables(p, df, expected):
    assert stats.t_ppf(p, df) == pytest.approx(expected, abs=1e-7)
    assert stats.t_ppf(1 - p, df) == pytest.approx(-expected, abs=1e-7)


def test_against_scipy():
    import scipy.stats as sp  # in the dev extra
    for df in (1, 2, 3, 5, 9, 50):
        for p in (0.6, 0.9, 0.975, 0.995):
            assert stats.t_ppf(p, df) == pytest.approx(sp.t.ppf(p, df), rel=1e-8)
        assert stats.t_cdf(1.3, df) == pytest.approx(sp.t.cdf(1.3, df), rel=1e-10)
    x = np.array([0.12, 0.31, 0.22, 0.41, 0.18])
    lo, hi = stats.t_interval(x)
    ref = sp.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sp.sem(x))
    assert (lo, hi) == pytest.approx(ref, rel=1e-9)
    boot = sp.bootstrap((x,), np.mean, n_resamples=20000, method="percentile", random_state=0).confidence_interval
    e = stats.bootstrap_mean(x, resamples=20000)
    means = exact_bootstrap_means(x)   # both are the exact distribution's quantiles up to Monte Carlo error
    for lo, hi in ((e.lo, e.hi), (boot.low, boot.high)):
        assert is_quantile(lo, means, 0.025) and is_quantile(hi, means, 0.975)


def test_nan_values_are_left_out_and_counted():
    e = stats.bootstrap_mean([0.2, float("nan"), 0.4, None], seeds=[0, 1, 2, 3])
    assert e.n == 2 and e.seeds == (0, 2) and e.mean == pytest.approx(0.3)
    empty = stats.bootstrap_mean([float("nan")])
    assert empty.n == 0 and math.isnan(empty.mean) and stats.verdict(empty, 1) == stats.NOT_SHOWN
    one = stats.bootstrap_mean([0.7])
    assert one.n == 1 and math.isnan(one.lo) and "n=1" in one.fmt()


def test_paired_difference_removes_the_shared_seed_effect():
    """Seed effects of ±0.3 shared by both cells, a constant effect of 0.05: the paired interval
    is exactly the point 0.05, while the unpaired means' intervals overlap widely."""
    seed_effect = {0: -0.3, 1: 0.0, 2: 0.3, 3: 0.1}
    b = {s: 0.4 + e for s, e in seed_effect.items()}
    a = {s: v + 0.05 for s, v in b.items()}
    d = stats.paired_difference(a, b)
    assert d.n == 4 and d.mean == pytest.approx(0.05) and d.lo == pytest.approx(0.05) and d.hi == pytest.approx(0.05)
    assert stats.verdict(d, +1) == stats.SHOWN and stats.verdict(d, -1) == stats.OPPOSITE
    ea, eb = stats.bootstrap_mean(a.values()), stats.bootstrap_mean(b.values())
    assert ea.lo < eb.hi  # unpaired, the two cells' intervals overlap


def test_paired_difference_uses_only_shared_finite_seeds():
    d = stats.paired_difference({0: 1.0, 1: 2.0, 2: float("nan"), 5: 9.0}, {0: 0.5, 1: 1.0, 2: 1.0, 3: 4.0})
    assert d.n == 2 and d.seeds == (0, 1) and d.mean == pytest.approx(0.75)


def test_verdicts():
    inside = stats.bootstrap_mean([-0.1, 0.2, 0.05])
    assert inside.lo < 0 < inside.hi and stats.verdict(inside, 1) == stats.NOT_SHOWN
    down = stats.bootstrap_mean([-0.3, -0.2, -0.25])
    assert stats.verdict(down, -1) == stats.SHOWN and stats.verdict(down, 1) == stats.OPPOSITE
    with pytest.raises(ValueError):
        stats.verdict(down, 0)
    two = stats.bootstrap_mean([-0.3, -0.2])          # excludes zero, but two seeds decide nothing
    assert two.hi < 0 and stats.verdict(two, -1) == stats.NOT_SHOWN


def test_curve_band_per_step():
    curves = {0: [(1, 0.0), (2, 1.0), (3, 2.0)], 1: [(1, 1.0), (2, 1.0), (3, float("nan"))], 2: [(1, 2.0), (2, 1.0)]}
    band = stats.curve_band(curves)
    assert band.x == [1, 2, 3] and band.n == [3, 3, 1]
    assert band.mean == pytest.approx([1.0, 1.0, 2.0])
    e = stats.bootstrap_mean([0.0, 1.0, 2.0])
    assert (band.lo[0], band.hi[0]) == (e.lo, e.hi)          # the same resamples as a single figure
    assert band.lo[1] == band.hi[1] == 1.0                    # no spread, no band
    assert math.isnan(band.lo[2]) and band.n_max == 3
