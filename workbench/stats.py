"""Statistics over seeds: means, 95% intervals, paired effects and verdicts (numpy only).

One run is one seed. A figure of a grid cell (a strategy, maybe with parameter values) is
measured once per seed; what the workbench reports is the mean over the seeds and an
interval for it:

- **Percentile bootstrap over seeds** (the reported interval): resample the n per-seed
  values with replacement ``resamples`` times (2,000 by default, from a fixed seed so a
  report is reproducible), take the mean of each resample, and report the 2.5% and
  97.5% quantiles of those means. With few seeds it is narrower than it should be
  (it cannot see variation the seeds did not show), which is why a t-interval is
  computed beside it as a cross-check for n >= 3.
- **t-interval**: mean ± t(0.975, n - 1) · s / √n, with the Student-t quantile computed
  here (no scipy needed).
- **Paired effects**: the seeds of every cell share the adapter initialisation, the prompt
  order and the evaluation sampling streams, so a difference between two cells is taken
  per seed first (cell A's seed s minus cell B's seed s) and the interval is the bootstrap
  interval of the mean of those differences. Pairing removes the variation the seeds
  share, so the paired interval is usually much narrower than comparing two unpaired means.
- **Curves**: per step (or per evaluation point), the mean over seeds and the same
  bootstrap band, with the same resample indices at every step, so a band is a
  resampling of whole seed curves.

Every estimate carries n, the number of seeds that gave a finite value (an undefined
figure, e.g. a collapse index with fewer than two correct samples, is NaN and left out,
never counted as 0). With n < 3 an interval is computed but should be shown as the
individual points, not as a band (``Estimate.band`` is False): two seeds cannot tell
how wide the spread is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Defaults: 95% intervals, 2,000 bootstrap resamples, a fixed resampling seed.
CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 12345
#: Fewest seeds for which an interval is drawn as a band (fewer: the points are shown).
MIN_BAND = 3

SHOWN, OPPOSITE, NOT_SHOWN = "shown", "opposite", "not shown at this scale"
VERDICTS = (SHOWN, OPPOSITE, NOT_SHOWN)


@dataclass(frozen=True)
class Estimate:
    """The mean of per-seed values with its interval.

    ``lo``/``hi``: percentile bootstrap interval (NaN when n < 2); ``t_lo``/``t_hi``: the
    t-interval (NaN when n < 3); ``values``: the finite per-seed values it came from,
    ``seeds`` their seeds (when known)."""

    mean: float
    lo: float
    hi: float
    n: int
    values: tuple[float, ...] = ()
    seeds: tuple[Any, ...] = ()
    t_lo: float = math.nan
    t_hi: float = math.nan
    confidence: float = CONFIDENCE
    resamples: int = RESAMPLES

    @property
    def band(self) -> bool:
        """True when there are enough seeds to draw the interval as a band."""
        return self.n >= MIN_BAND

    def sign(self) -> int:
        """+1 when the interval lies above zero, -1 below, 0 when it includes zero or is undefined."""
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            return 0
        if self.lo > 0:
            return 1
        if self.hi < 0:
            return -1
        return 0

    def to_dict(self) -> dict[str, Any]:
        out = {"mean": self.mean, "lo": self.lo, "hi": self.hi, "n": self.n, "t_lo": self.t_lo, "t_hi": self.t_hi,
               "values": list(self.values), "seeds": list(self.seeds), "confidence": self.confidence,
               "resamples": self.resamples}
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}

    def fmt(self, digits: int = 3) -> str:
        """"0.412 [0.380, 0.441] (n=3)"; with n < 3 the points instead: "0.41 (points 0.40, 0.42; n=2)"."""
        if self.n == 0:
            return "– (n=0)"
        f = f"{{:.{digits}f}}"
        if not self.band:
            pts = ", ".join(f.format(v) for v in self.values)
            return f"{f.format(self.mean)} (points {pts}; n={self.n})"
        return f"{f.format(self.mean)} [{f.format(self.lo)}, {f.format(self.hi)}] (n={self.n})"


def _finite(values: Iterable[Any], seeds: Iterable[Any] | None = None) -> tuple[np.ndarray, tuple]:
    vals = list(values)
    keys = list(seeds) if seeds is not None else list(range(len(vals)))
    if len(keys) != len(vals):
        raise ValueError(f"{len(vals)} values but {len(keys)} seeds")
    kept = [(k, float(v)) for k, v in zip(keys, vals) if v is not None and math.isfinite(float(v))]
    return np.array([v for _, v in kept], dtype=np.float64), tuple(k for k, _ in kept)


def _resample_index(n: int, resamples: int, seed: int) -> np.ndarray:
    """[resamples, n] indices drawn with replacement (the same for the same n and seed)."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def percentile_interval(boot: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The (1 - confidence) / 2 and 1 - (1 - confidence) / 2 quantiles of bootstrap statistics
    (linear interpolation between order statistics, numpy's default)."""
    a = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boot, [a, 1.0 - a], axis=0)
    return float(lo), float(hi)


def bootstrap_mean(values: Iterable[Any], seeds: Iterable[Any] | None = None, *, resamples: int = RESAMPLES,
                   confidence: float = CONFIDENCE, seed: int = SEED) -> Estimate:
    """Mean of the finite ``values`` (one per seed) with its percentile bootstrap interval
    and, for n >= 3, the t-interval."""
    if resamples < 1:
        raise ValueError(f"resamples = {resamples}: expected at least 1 (2,000 or more for a 95% interval)")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence = {confidence}: expected a level in (0, 1), e.g. 0.95")
    x, keys = _finite(values, seeds)
    n = len(x)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, (), (), confidence=confidence, resamples=resamples)
    mean = float(x.mean())
    lo = hi = math.nan
    if n >= 2:
        boot = x[_resample_index(n, resamples, seed)].mean(axis=1)     # [resamples]
        lo, hi = percentile_interval(boot, confidence)
    t_lo, t_hi = t_interval(x, confidence) if n >= 3 else (math.nan, math.nan)
    return Estimate(mean, lo, hi, n, tuple(float(v) for v in x), keys, t_lo, t_hi, confidence, resamples)


def t_interval(values: Iterable[Any], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """mean ± t((1 + confidence) / 2, n - 1) · s / √n over the finite values (NaN for n < 2)."""
    x, _ = _finite(values)
    n = len(x)
    if n < 2:
        return math.nan, math.nan
    half = t_ppf(0.5 + confidence / 2.0, n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return float(x.mean() - half), float(x.mean() + half)


# ---------------------------------------------------------------------- Student t
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"df = {df}: expected > 0")
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_ppf(p: float, df: float) -> float:
    """The p-quantile of Student's t (bisection on the CDF to ~1e-12)."""
    if not 0 < p < 1:
        raise ValueError(f"p = {p}: expected a probability in (0, 1)")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


# ---------------------------------------------------------------------- paired effects and curves
def paired_difference(a: Mapping[Any, Any], b: Mapping[Any, Any], **kw: Any) -> Estimate:
    """Mean over shared seeds of a[s] - b[s], with its bootstrap interval (``a``, ``b``: seed -> value).

    Only seeds where both values are finite count (n says how many)."""
    seeds = [s for s in a if s in b]
    diffs = [float(a[s]) - float(b[s]) if _ok(a[s]) and _ok(b[s]) else math.nan for s in seeds]
    return bootstrap_mean(diffs, seeds, **kw)


def _ok(v: Any) -> bool:
    return v is not None and math.isfinite(float(v))


@dataclass
class Band:
    """A curve's mean and interval per x (step or evaluation step) over seeds."""

    x: list[int]
    mean: list[float]
    lo: list[float]
    hi: list[float]
    n: list[int]
    points: dict[Any, list[tuple[int, float]]] = field(default_factory=dict)  # seed -> its own curve

    @property
    def n_max(self) -> int:
        return max(self.n) if self.n else 0

    def to_dict(self) -> dict[str, Any]:
        clean = lambda xs: [None if not math.isfinite(v) else v for v in xs]  # noqa: E731
        return {"x": self.x, "mean": clean(self.mean), "lo": clean(self.lo), "hi": clean(self.hi), "n": self.n,
                "points": {str(k): v for k, v in self.points.items()}}


def curve_band(curves: Mapping[Any, Sequence[tuple[int, float]]], *, resamples: int = RESAMPLES,
               confidence: float = CONFIDENCE, seed: int = SEED) -> Band:
    """Per x: mean over the seeds that have a finite value there, and the bootstrap interval
    (the same resample indices at every x with the same number of seeds)."""
    by_x: dict[int, dict[Any, float]] = {}
    for s, curve in curves.items():
        for x, v in curve:
            if _ok(v):
                by_x.setdefault(int(x), {})[s] = float(v)
    xs = sorted(by_x)
    order = list(curves)
    out = Band(xs, [], [], [], [], {s: [(int(x), float(v)) for x, v in c] for s, c in curves.items()})
    cache: dict[int, np.ndarray] = {}
    for x in xs:
        vals = np.array([by_x[x][s] for s in order if s in by_x[x]])
        n = len(vals)
        out.n.append(n)
        out.mean.append(float(vals.mean()))
        if n >= 2:
            if n not in cache:
                cache[n] = _resample_index(n, resamples, seed)
            lo, hi = percentile_interval(vals[cache[n]].mean(axis=1), confidence)
        else:
            lo = hi = math.nan
        out.lo.append(lo)
        out.hi.append(hi)
    return out


def verdict(effect: Estimate, direction: int) -> str:
    """"shown" when the interval excludes zero in ``direction`` (+1 up, -1 down), "opposite"
    when it excludes zero the other way, "not shown at this scale" otherwise, including
    fewer than 3 seeds (two seeds' bootstrap interval only spans their two values)."""
    if direction not in (1, -1):
        raise ValueError(f"direction = {direction}: expected +1 (an increase) or -1 (a decrease)")
    if effect.n < MIN_BAND:
        return NOT_SHOWN
    s = effect.sign()
    if s == 0:
        return NOT_SHOWN
    return SHOWN if s == direction else OPPOSITE
