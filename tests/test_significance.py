"""The significance tests of harness.significance against scipy (an independent implementation)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness import significance as sig

stats = pytest.importorskip("scipy.stats", reason="scipy is the reference (pip install 'segbench[dev]')")


@pytest.mark.parametrize("df", [1, 2, 3, 5, 9, 24, 98, 1000])
def test_t_cdf_and_ppf_match_scipy(df):
    for t in (-30.0, -4.2, -1.0, -0.1, 0.0, 0.5, 2.2, 7.5, 40.0):
        assert sig.t_cdf(t, df) == pytest.approx(stats.t.cdf(t, df), rel=1e-9, abs=1e-15)
    for p in (1e-6, 0.005, 0.025, 0.3, 0.5, 0.9, 0.975, 0.9995):
        assert sig.t_ppf(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-8, abs=1e-10)
    with pytest.raises(ValueError, match="not in"):
        sig.t_ppf(1.0, df)


def test_betainc_matches_scipy():
    from scipy.special import betainc

    for a, b, x in ((0.5, 0.5, 0.3), (2.0, 5.0, 0.2), (12.0, 0.5, 0.97), (50.0, 50.0, 0.5), (1.0, 3.0, 1e-5)):
        assert sig.betainc(a, b, x) == pytest.approx(betainc(a, b, x), rel=1e-10)


def test_student_t_test_matches_scipy_pooled_variance():
    rng = np.random.default_rng(0)
    for n1, n2, shift in ((5, 7, 0.0), (20, 30, 0.4), (3, 40, 2.0), (1, 12, 3.0), (50, 50, 0.05)):
        a, b = rng.normal(0, 1, n1), rng.normal(shift, 1, n2)
        ref = stats.ttest_ind(a, b, equal_var=True).pvalue if n1 > 1 else _one_value_reference(a, b)
        assert sig.student_t_test(a, b) == pytest.approx(ref, rel=1e-8, abs=1e-300)
    assert sig.student_t_test([1.0, 1.0], [1.0, 1.0]) == 1.0  # no variance, same means
    assert sig.student_t_test([1.0, 1.0], [2.0, 2.0]) == 0.0  # no variance, different means
    assert sig.student_t_test([1.0], [2.0]) == 1.0  # no degrees of freedom
    with pytest.raises(ValueError, match="each side"):
        sig.student_t_test([], [1.0])


def _one_value_reference(a, b) -> float:
    """Pooled t-test written from its formula for a side of one value (scipy gives NaN there)."""
    n1, n2 = len(a), len(b)
    sp2 = ((b - b.mean()) ** 2).sum() / (n1 + n2 - 2)
    t = (b.mean() - a.mean()) / math.sqrt(sp2 * (1 / n1 + 1 / n2))
    return 2 * stats.t.sf(abs(t), n1 + n2 - 2)


@pytest.mark.parametrize("n", [1, 4, 9, 12, 25])
def test_wilcoxon_exact_matches_scipy(n):
    rng = np.random.default_rng(n)
    for shift in (-0.5, 0.0, 0.3, 1.5):
        d = rng.normal(shift, 1, n)
        ref = stats.wilcoxon(d, alternative="greater", method="exact").pvalue
        assert sig.wilcoxon_signed_rank_greater(d) == pytest.approx(ref, rel=1e-10)


def _sign_flip_reference(d: np.ndarray) -> float:
    """P(W+ >= observed) over all 2^n sign assignments of the observed magnitudes, by enumeration."""
    d = d[d != 0]
    ranks = stats.rankdata(np.abs(d))
    observed = ranks[d > 0].sum()
    signs = (np.arange(2 ** d.size)[:, None] >> np.arange(d.size)) & 1
    return float(np.mean(signs @ ranks >= observed - 1e-9))


def test_wilcoxon_with_ties_and_zeros_is_exact_by_enumeration():
    rng = np.random.default_rng(5)
    for _ in range(5):
        d = np.round(rng.normal(0.3, 1, 14), 1)  # tied magnitudes and maybe zeros
        assert sig.wilcoxon_signed_rank_greater(d) == pytest.approx(_sign_flip_reference(d), rel=1e-12)
    tied = np.array([1.3, 1.32, 1.28, 1.3, 1.3, 1.27, 1.31, 1.29, 1.33, 1.34]) - 1.0
    assert sig.wilcoxon_signed_rank_greater(tied) == pytest.approx(1 / 1024)  # all positive, ties or not


def test_wilcoxon_above_the_exact_limit_matches_scipy_approximation():
    rng = np.random.default_rng(5)
    d = np.round(rng.normal(0.1, 1, 80), 1)  # above the exact limit, with ties
    ref = stats.wilcoxon(d, alternative="greater", method="approx", correction=False, zero_method="wilcox").pvalue
    assert sig.wilcoxon_signed_rank_greater(d) == pytest.approx(ref, rel=1e-10)
    assert math.isnan(sig.wilcoxon_signed_rank_greater([0.0, 0.0]))
    assert sig.wilcoxon_signed_rank_greater(np.arange(1.0, 11.0)) == pytest.approx(1 / 1024)  # all 10 positive
