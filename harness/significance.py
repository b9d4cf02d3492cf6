"""Significance tests for regression verdicts, in numpy and the standard library (no scipy at run time).

- Student's t distribution: :func:`t_cdf` (through the regularised incomplete beta function,
  evaluated with its continued fraction) and :func:`t_ppf` (its inverse, by bisection);
- :func:`student_t_test`: two-sided two-sample t-test with pooled variance, the test Hunter /
  Apache Otava apply to the two sides of a change point;
- :func:`wilcoxon_signed_rank_greater`: one-sided Wilcoxon signed-rank test on paired
  differences, exact null distribution for small samples without ties, the normal
  approximation with tie correction otherwise (as ``scipy.stats.wilcoxon`` does).

Each is checked against scipy in tests/test_significance.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

EXACT_WILCOXON_MAX_N = 50


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), to ~1e-14."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t distribution with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_ppf(p: float, df: float) -> float:
    """The t such that ``t_cdf(t, df) == p`` (0 < p < 1), by bisection to ~1e-12."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_ppf: probability {p!r} is not in (0, 1)")
    if p == 0.5:
        return 0.0
    lo, hi = -1.0, 1.0
    while t_cdf(lo, df) > p:
        lo *= 2.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, abs(mid)):
            break
    return 0.5 * (lo + hi)


def student_t_test(left: Sequence[float], right: Sequence[float]) -> float:
    """Two-sided p-value of Student's two-sample t-test (pooled variance, sample variances with ddof 1).

    A side with one value contributes no variance. With no variance on either side the
    p-value is 0 when the means differ and 1 when they are equal; 1 without degrees of freedom.
    """
    a, b = np.asarray(left, dtype=np.float64), np.asarray(right, dtype=np.float64)
    n1, n2 = a.size, b.size
    if n1 == 0 or n2 == 0:
        raise ValueError("student_t_test needs at least one value on each side")
    df = n1 + n2 - 2
    if df <= 0:
        return 1.0
    ss = float(((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum())
    diff = float(b.mean() - a.mean())
    if ss <= 0.0:
        return 0.0 if diff != 0.0 else 1.0
    se = math.sqrt(ss / df * (1.0 / n1 + 1.0 / n2))
    t = abs(diff) / se
    return min(1.0, 2.0 * t_cdf(-t, df))


def _signed_rank_counts(doubled_ranks: np.ndarray) -> np.ndarray:
    """Number of sign assignments giving each sum 0..sum(doubled_ranks) of the positive doubled ranks
    (the exact null distribution of 2 W+ given the ranks, ties included as midranks)."""
    counts = np.zeros(int(doubled_ranks.sum()) + 1, dtype=np.float64)
    counts[0] = 1.0
    for k in doubled_ranks.astype(np.int64):
        counts[k:] = counts[k:] + counts[:-k].copy()
    return counts


def wilcoxon_signed_rank_greater(differences: Sequence[float]) -> float:
    """One-sided p-value that paired ``differences`` are centred above 0 (Wilcoxon signed-rank).

    Zero differences are dropped (Wilcoxon's convention). With at most
    ``EXACT_WILCOXON_MAX_N`` values the exact null distribution of the positive rank sum given
    the (mid)ranks is used, every sign equally likely: without ties as ``scipy.stats.wilcoxon``'s
    exact method, with ties where scipy falls back to the normal approximation. Above that,
    the normal approximation with the tie correction of the variance (no continuity
    correction). NaN when no nonzero difference is left.
    """
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d) & (d != 0.0)]
    n = d.size
    if n == 0:
        return math.nan
    mag = np.abs(d)
    order = np.sort(mag, kind="mergesort")
    ranks = (np.searchsorted(order, mag, side="left") + np.searchsorted(order, mag, side="right") + 1) / 2.0
    w_plus = float(ranks[d > 0].sum())
    if n <= EXACT_WILCOXON_MAX_N:
        counts = _signed_rank_counts(np.rint(2 * ranks))
        return float(counts[int(round(2 * w_plus)):].sum() / counts.sum())
    _, ties = np.unique(mag, return_counts=True)
    mean = n * (n + 1) / 4.0
    var = n * (n + 1) * (2 * n + 1) / 24.0 - float((ties ** 3 - ties).sum()) / 48.0
    if var <= 0:
        return 1.0
    z = (w_plus - mean) / math.sqrt(var)
    return 0.5 * math.erfc(z / math.sqrt(2.0))
