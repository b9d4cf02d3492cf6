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


def test_wilcoxon_with_ties_zeros_and_many_values_matches_scipy_approximation():
    rng = np.random.default_rng(5)
    d = np.round(rng.normal(0.2, 1, 30), 1)  # tied magnitudes and some zeros
    ref = stats.wilcoxon(d, alternative="greater", method="approx", correction=False, zero_method="wilcox").pvalue
    assert sig.wilcoxon_signed_rank_greater(d) == pytest.approx(ref, rel=1e-10)
    d = rng.normal(0.1, 1, 80)  # above the exact limit
    ref = stats.wilcoxon(d, alternative="greater", method="approx", correction=False).pvalue
    assert sig.wilcoxon_signed_rank_greater(d) == pytest.approx(ref, rel=1e-10)
    assert math.isnan(sig.wilcoxon_signed_rank_greater([0.0, 0.0]))
    assert sig.wilcoxon_signed_rank_greater(np.arange(1.0, 11.0)) == pytest.approx(1 / 1024)  # all 10 positive
