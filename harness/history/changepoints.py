"""Change-point detection with E-divisive means, as Hunter (datastax-labs/hunter, the ancestor of
Apache Otava) applies it to performance histories.

Reproduced from ``hunter/analysis.py`` (``compute_change_points`` = ``split`` then ``merge``):

1. **split**: windows of ``window`` points (step ``window // 2``; after a window that found a
   change, the next starts at its last change) are each cut by E-divisive: the candidate is
   the split maximising the energy statistic q-hat over each interval between the changes
   found so far, the best candidate over all intervals is tested, and cutting stops at the
   first candidate that is not significant. Significance: Student's two-sample t-test of
   the interval's two sides at ``10 x max_pvalue`` (Hunter's relaxed first pass).
2. **merge**: each change is re-tested against its neighbours' segments (the whole series,
   not the window); the weakest (largest p-value) is removed while it fails ``max_pvalue``,
   then the smallest while its magnitude is not above ``min_magnitude``, re-testing the two
   neighbours of each removed change.

Defaults: Hunter's ``window = 50`` and ``min_magnitude = 0.05``, and ``max_pvalue = 1e-4``
where Hunter uses 0.001: on flat series of 200 points with 5% noise, 0.001 reported a change in
8.3% of them (short excursions of 3-10 points: the t-test's p-value does not account for
E-divisive having chosen the split), 1e-4 in 0.3%, while a 10% step is still found a median of
4 runs after it happened (3 at 0.001); see docs/REGRESSIONS.md for the measurement.

After the merge, each change gets a **location range** (an addition to Hunter): the indices
whose two-segment least-squares fit within the change's segments is within
``LOCATION_LR / 2`` log-likelihood units of the best split (sum of squared errors within
``LOCATION_LR`` residual variances of the minimum), widened to contain E-divisive's index. A
10% step in 5% noise is located to a few runs, not always exactly; the range says which.

The q-hat statistic comes from the ``signal-processing-algorithms`` package (MongoDB's
E-divisive, which Hunter calls): its 2.x distance matrix and per-split statistic
(``energy_statistics._get_distance_matrix`` / ``_calculate_t_stats``, the C extension when
it loaded). What differs from Hunter: the package's 2.x statistic normalises the within-sample
sums by n^2 (a V-statistic) where 1.x, which Hunter pins, divides by n(n-1)/2, so the argmax
can differ on short, flat stretches; the t-test uses sample variances (ddof 1), where Hunter
passes population deviations (ddof 0) to ``scipy.stats.ttest_ind_from_stats``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.errors import ConfigError
from harness.significance import student_t_test

DEFAULT_WINDOW = 50
DEFAULT_MAX_PVALUE = 1e-4
DEFAULT_MIN_MAGNITUDE = 0.05
# twice the log-likelihood drop that bounds a change's location range (99% coverage measured for a
# 10% step in 5% noise; 3.84, the chi-square 95% point, covered 92%)
LOCATION_LR = 8.0
INSTALL_HINT = "pip install 'segbench[history]' && pip install --no-deps 'signal-processing-algorithms>=2.1,<2.2'"


@dataclass
class ChangePoint:
    """A step at ``index`` (the first point after it): the segments' means and std (ddof 1), the t-test p-value."""

    index: int
    mean_before: float
    mean_after: float
    std_before: float
    std_after: float
    pvalue: float
    index_lo: int | None = None
    index_hi: int | None = None

    @property
    def forward_change(self) -> float:
        """Relative change from the segment before to the one after (0.1 = +10%)."""
        return self.mean_after / self.mean_before - 1.0 if self.mean_before else float("inf")

    @property
    def magnitude(self) -> float:
        """max(|after/before - 1|, |before/after - 1|), as Hunter's ``change_magnitude``."""
        if not self.mean_before or not self.mean_after:
            return float("inf")
        return max(abs(self.mean_after / self.mean_before - 1.0), abs(self.mean_before / self.mean_after - 1.0))


def _energy():
    """The package's distance-matrix and q-hat functions, or a ConfigError saying how to install them."""
    try:
        from signal_processing_algorithms.energy_statistics import energy_statistics as es
    except ImportError:
        raise ConfigError(f"change-point detection needs the signal-processing-algorithms package ({INSTALL_HINT})") from None
    try:
        return es._get_distance_matrix, es._calculate_t_stats, es._get_valid_input
    except AttributeError:
        raise ConfigError("signal-processing-algorithms has no energy_statistics._calculate_t_stats; "
                          f"segbench needs its 2.1 series ({INSTALL_HINT})") from None


def _stats(series: np.ndarray, start: int, index: int, end: int) -> ChangePoint:
    left, right = series[start:index], series[index:end]
    sd = [float(x.std(ddof=1)) if x.size > 1 else 0.0 for x in (left, right)]
    return ChangePoint(index, float(left.mean()), float(right.mean()), sd[0], sd[1], student_t_test(left, right))


def _around(index: int, bounds: list[int]) -> tuple[int, int]:
    """The nearest bounds strictly below and above ``index`` in the sorted ``bounds``."""
    below = max(b for b in bounds if b < index)
    above = min(b for b in bounds if b > index)
    return below, above


def e_divisive(series: np.ndarray, max_pvalue: float) -> list[int]:
    """E-divisive with t-test significance on one window (Hunter's ``EDivisive`` + ``TTestSignificanceTester``)."""
    distance, qhat, valid = _energy()
    n = series.size
    if n < 2:
        return []
    dist = distance(valid(series))
    memo: dict[tuple[int, int], tuple[int, float]] = {}
    found: list[int] = []
    while True:
        bounds = [0, *sorted(found), n]
        best: tuple[int, float] | None = None
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            if (a, b) not in memo:
                values = qhat(dist[a:b, a:b]) if b - a > 1 else np.zeros(1)
                k = int(np.argmax(values))
                memo[(a, b)] = (a + k, float(values[k]))
            if best is None or memo[(a, b)][1] > best[1]:
                best = memo[(a, b)]
        index = best[0]
        if index in bounds:  # no split left inside any interval
            return sorted(found)
        start, end = _around(index, bounds)
        if _stats(series, start, index, end).pvalue > max_pvalue:
            return sorted(found)
        found.append(index)


def split(series: np.ndarray, window: int = DEFAULT_WINDOW, max_pvalue: float = DEFAULT_MAX_PVALUE) -> list[ChangePoint]:
    """Candidate changes from overlapping windows, each tested against its neighbours over the whole series."""
    if window < 2:
        raise ConfigError(f"change-point window {window}: expected at least 2 points")
    n, start, step = series.size, 0, window // 2
    found: list[int] = []
    while start < n:
        end = min(start + window, n)
        new = [start + i for i in e_divisive(series[start:end], max_pvalue)]
        found += [i for i in new if i not in found]
        start = max(new[-1] if new else 0, start + step)
    found.sort()
    bounds = [0, *found, n]
    out = []
    for i in found:
        start, end = _around(i, bounds)
        out.append(_stats(series, start, i, end))
    return out


def merge(points: list[ChangePoint], series: np.ndarray, max_pvalue: float = DEFAULT_MAX_PVALUE,
          min_magnitude: float = DEFAULT_MIN_MAGNITUDE) -> list[ChangePoint]:
    """Drop weak changes bottom-up until each has p < ``max_pvalue`` and magnitude > ``min_magnitude``."""
    points = list(points)
    while points:
        weakest = max(range(len(points)), key=lambda i: points[i].pvalue)
        if points[weakest].pvalue < max_pvalue:
            weakest = min(range(len(points)), key=lambda i: points[i].magnitude)
            if points[weakest].magnitude > min_magnitude:
                return points
        del points[weakest]
        bounds = [0, *(p.index for p in points), series.size]
        for i in (weakest - 1, weakest):  # the two neighbours of the removed change
            if 0 <= i < len(points):
                start, end = _around(points[i].index, bounds)
                points[i] = _stats(series, start, points[i].index, end)
    return points


def location_range(series: np.ndarray, start: int, index: int, end: int) -> tuple[int, int]:
    """Indices in (start, end) where a step fits ``series[start:end]`` almost as well as the best one."""
    x = series[start:end] - series[start:end].mean()
    n = x.size
    if n < 3:
        return index, index
    c, total2 = np.cumsum(x), float((x * x).sum())
    t = np.arange(1, n)
    sse = total2 - c[:-1] ** 2 / t - (c[-1] - c[:-1]) ** 2 / (n - t)
    best = int(np.argmin(sse))
    var = sse[best] / (n - 2)
    ok = t[sse - sse[best] <= LOCATION_LR * var + 1e-12 * total2] + start
    return min(int(ok.min()), index), max(int(ok.max()), index)


def change_points(values, window: int = DEFAULT_WINDOW, max_pvalue: float = DEFAULT_MAX_PVALUE,
                  min_magnitude: float = DEFAULT_MIN_MAGNITUDE) -> list[ChangePoint]:
    """The significant steps of ``values`` (oldest first), as Hunter's ``compute_change_points``."""
    series = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(series)):
        raise ConfigError("change-point detection: the series holds NaN or infinite values")
    if series.size < 3:
        return []
    found = merge(split(series, window, max_pvalue * 10), series, max_pvalue, min_magnitude)
    bounds = [0, *(p.index for p in found), series.size]
    for p in found:
        start, end = _around(p.index, bounds)
        p.index_lo, p.index_hi = location_range(series, start, p.index, end)
    return found
