"""Alignment against closed-form least squares (np.linalg.lstsq), the MiDaS/DPT disparity alignment
re-implemented from its description, and np.median scaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.depth import DepthMetrics
from harness.depth.align import align, fit_scale_shift
from tests.depth_reference import reference, synthetic_pair

LO, HI = 1e-3, 10.0


def valid_mask(gt: np.ndarray) -> np.ndarray:
    return (gt > LO) & (gt < HI)


def lstsq_fit(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Scale and shift of p to y by numpy's least-squares solver on [p, 1] (Marigold's formulation)."""
    A = np.stack([p.astype(np.float64), np.ones(p.size)], axis=1)
    (s, t), *_ = np.linalg.lstsq(A, y.astype(np.float64), rcond=None)
    return float(s), float(t)


def midas_align(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, depth_cap: float) -> np.ndarray:
    """MiDaS/DPT evaluation: 2x2 normal equations on disparity, det > 0 required, disparity capped, inverted."""
    target = np.zeros_like(gt, dtype=np.float64)
    target[mask] = 1.0 / gt[mask]
    m = mask.astype(np.float64)
    p = pred.astype(np.float64)
    a00, a01, a11 = np.sum(m * p * p), np.sum(m * p), np.sum(m)
    b0, b1 = np.sum(m * p * target), np.sum(m * target)
    det = a00 * a11 - a01 * a01
    assert det > 0
    s, t = (a11 * b0 - a01 * b1) / det, (-a01 * b0 + a00 * b1) / det
    aligned = s * p + t
    aligned[aligned < 1.0 / depth_cap] = 1.0 / depth_cap
    return 1.0 / aligned


def test_fit_equals_numpy_lstsq():
    rng = np.random.default_rng(0)
    pred, gt = synthetic_pair(rng, (3, 40, 50))
    rel = 0.37 * pred + 1.9  # an affine relative prediction
    mask = valid_mask(gt)
    s, t, deg = fit_scale_shift(torch.from_numpy(rel), torch.from_numpy(gt), torch.from_numpy(mask))
    for i in range(3):
        es, et = lstsq_fit(rel[i][mask[i]], gt[i][mask[i]])
        assert float(s[i]) == pytest.approx(es, rel=1e-9)
        assert float(t[i]) == pytest.approx(et, rel=1e-9, abs=1e-9)
    assert not deg.any()


def test_lstsq_metrics_equal_the_reference_on_aligned_predictions():
    rng = np.random.default_rng(1)
    pred, gt = synthetic_pair(rng, (2, 48, 64))
    rel = (pred - 0.5) / 3.0
    rel[:, :2] = 1e6  # outside the crop: must not influence the fit
    crop = [2, 48, 0, 64]
    m = DepthMetrics(min_depth=LO, max_depth=HI, crop=crop, alignment="lstsq")
    m.update(rel, gt)
    aligned = []
    for i in range(2):
        sel = valid_mask(gt[i])
        sel[:2] = False
        s, t = lstsq_fit(rel[i][sel], gt[i][sel])
        aligned.append(s * rel[i].astype(np.float64) + t)
    ref = reference(aligned, gt, LO, HI, box=(2, 48, 0, 64))
    out = m.compute()
    for k in ref:
        assert out[k] == pytest.approx(ref[k], rel=5e-5), k
    assert out["alignment_degenerate"] == 0


def test_lstsq_disparity_matches_the_midas_evaluation():
    rng = np.random.default_rng(2)
    _, gt = synthetic_pair(rng, (3, 40, 60), lo=0.5, hi=9.0)
    disp = np.where(gt > 0, 1.0 / np.maximum(gt, 1e-3), 0.3)
    rel = (4.0 * disp + 0.2) * np.exp(rng.normal(0, 0.1, gt.shape))  # relative inverse depth, noisy
    rel = rel.astype(np.float32)
    m = DepthMetrics(min_depth=LO, max_depth=HI, alignment="lstsq_disparity")
    m.update(rel, gt)
    aligned = [midas_align(rel[i], gt[i], valid_mask(gt[i]), HI) for i in range(3)]
    ref = reference(aligned, gt, LO, HI)
    out = m.compute()
    for k in ref:
        assert out[k] == pytest.approx(ref[k], rel=5e-5), k


def test_disparity_floor_is_one_over_max_depth():
    gt = torch.tensor([[[1.0, 2.0, 4.0, 8.0]]])
    rel = torch.tensor([[[1.0, 0.5, 0.25, -3.0]]])  # fits 1/gt except the last: aligned < 1/max there
    out, degenerate = align(rel, gt, torch.tensor([[[True, True, True, False]]]), "lstsq_disparity", max_depth=10.0)
    np.testing.assert_allclose(out[0, 0, :3].numpy(), [1.0, 2.0, 4.0], rtol=1e-6)
    assert float(out[0, 0, 3]) == pytest.approx(10.0)
    assert degenerate == 0


def test_median_scaling_uses_numpy_median():
    rng = np.random.default_rng(3)
    pred, gt = synthetic_pair(rng, (2, 31, 33))
    rel = pred * 0.01
    m = DepthMetrics(alignment="median")
    m.update(rel, gt)
    scaled = []
    for i in range(2):
        sel = valid_mask(gt[i])
        scaled.append(rel[i].astype(np.float64) * np.median(gt[i][sel]) / np.median(rel[i][sel]))
    ref = reference(scaled, gt, LO, HI)
    out = m.compute()
    for k in ref:
        assert out[k] == pytest.approx(ref[k], rel=5e-5), k


def test_constant_prediction_is_degenerate_and_gets_the_mean():
    rng = np.random.default_rng(4)
    _, gt = synthetic_pair(rng, (1, 20, 20))
    const = np.full_like(gt, 3.0)
    mask = valid_mask(gt)
    out, degenerate = align(torch.from_numpy(const), torch.from_numpy(gt), torch.from_numpy(mask), "lstsq", HI)
    assert degenerate == 1
    np.testing.assert_allclose(out.numpy(), gt[mask].astype(np.float64).mean(), rtol=1e-6)
    # np.linalg.lstsq's minimum-norm solution has the same fitted values
    s, t = lstsq_fit(const[0][mask[0]], gt[0][mask[0]])
    assert s * 3.0 + t == pytest.approx(float(out[0, 0, 0]), rel=1e-6)
    m = DepthMetrics(alignment="lstsq")
    m.update(const, gt)
    assert m.compute()["alignment_degenerate"] == 1


def test_non_finite_predictions_are_left_out_of_the_fit():
    rng = np.random.default_rng(5)
    pred, gt = synthetic_pair(rng, (1, 30, 30))
    rel = pred * 0.5 + 1.0
    rel_nan = rel.copy()
    rel_nan[0, 0, :10] = np.nan
    s1, t1, _ = fit_scale_shift(torch.from_numpy(rel_nan), torch.from_numpy(gt), torch.from_numpy(valid_mask(gt)))
    sel = valid_mask(gt)
    sel[0, 0, :10] = False
    s2, t2 = lstsq_fit(rel[sel], gt[sel])
    assert float(s1[0]) == pytest.approx(s2, rel=1e-9) and float(t1[0]) == pytest.approx(t2, rel=1e-9)
