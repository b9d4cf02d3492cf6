"""Hand-written statistics kept as independent checks of the scipy-based ones in harness/report/compare.py.

They are the implementations segbench used before it called scipy.stats (numpy only): the
Mann-Whitney U test from ranks with the normal approximation, and a percentile bootstrap of a
ratio of medians.
"""

from __future__ import annotations

import math

import numpy as np


def mann_whitney_greater(a, b) -> float:
    """One-sided p that ``b`` tends to exceed ``a``: U from average ranks, normal approximation with the
    tie correction of the variance and a continuity correction. NaN below 2 samples a side; 1.0 all tied."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n1, n2 = a.size, b.size
    if n1 < 2 or n2 < 2:
        return math.nan
    allv = np.concatenate([a, b])
    sorted_v = np.sort(allv, kind="mergesort")
    # average rank of each value = mean of its first and last 1-based position among the sorted values
    ranks = (np.searchsorted(sorted_v, allv, side="left") + np.searchsorted(sorted_v, allv, side="right") + 1) / 2.0
    u2 = ranks[n1:].sum() - n2 * (n2 + 1) / 2.0
    _, counts = np.unique(allv, return_counts=True)
    n = n1 + n2
    sigma2 = n1 * n2 / 12.0 * ((n + 1) - np.sum(counts.astype(np.float64) ** 3 - counts) / (n * (n - 1)))
    if sigma2 <= 0:
        return 1.0
    z = (u2 - n1 * n2 / 2.0 - 0.5) / math.sqrt(sigma2)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def bootstrap_median_ratio(a, b, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% bootstrap interval of median(b) / median(a), each side resampled independently."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or b.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    ma = np.median(a[rng.integers(0, a.size, (n_boot, a.size))], axis=1)
    mb = np.median(b[rng.integers(0, b.size, (n_boot, b.size))], axis=1)
    ratio = mb / np.where(ma > 0, ma, np.nan)
    return float(np.nanpercentile(ratio, 2.5)), float(np.nanpercentile(ratio, 97.5))
