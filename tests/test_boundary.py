"""Boundary IoU and trimap metrics against a float64 reference written here from the definitions
(contour bands by a chessboard distance transform, scipy), against the reference code's cv2
erosion, on edge cases and on the real samples with predictions of the real LiteRT models."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.boundary import BoundaryMetrics, _window_extreme, dilation_pixels

ndimage = pytest.importorskip("scipy.ndimage", reason="scipy is needed for the reference (pip install scipy)")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_litert import REAL, load_real  # noqa: E402

WIDTHS = (1, 3, 8)


def inner_band(mask: np.ndarray, d: int) -> np.ndarray:
    """Pixels of ``mask`` within chessboard distance d of a non-mask pixel, the outside of the image included."""
    dist = ndimage.distance_transform_cdt(np.pad(mask, 1), metric="chessboard")[1:-1, 1:-1]
    return mask & (dist <= d)


def trimap_band(t: np.ndarray, w: int) -> np.ndarray:
    """Pixels with a different target value within chessboard distance w (inside the image only)."""
    band = np.zeros(t.shape, bool)
    for v in np.unique(t):
        same = t == v
        if same.all():
            continue
        dist = ndimage.distance_transform_cdt(same, metric="chessboard")
        band |= same & (dist <= w)
    return band


def reference(preds, targets, C, ignore=255, ratio=0.02, widths=WIDTHS, dilation_px=None) -> dict:
    """Boundary IoU and trimap aAcc / mIoU in float64, class by class, from the definitions."""
    inter, gt, pr = (np.zeros((1 + len(widths), C)) for _ in range(3))
    for p, t in zip(preds, targets, strict=True):
        h, w = t.shape
        d = dilation_px or max(1, int(round(ratio * np.sqrt(h**2 + w**2))))
        valid = t != ignore
        bands = [trimap_band(t, wd) & valid for wd in widths]
        for c in range(C):
            g_d, p_d = inner_band(t == c, d) & valid, inner_band(p == c, d) & valid
            inter[0, c] += np.sum(g_d & p_d)
            gt[0, c] += np.sum(g_d)
            pr[0, c] += np.sum(p_d)
            for i, band in enumerate(bands, start=1):
                inter[i, c] += np.sum(band & (t == c) & (p == c))
                gt[i, c] += np.sum(band & (t == c))
                pr[i, c] += np.sum(band & (p == c))
    union = gt + pr - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, np.nan)
        acc = np.where(gt.sum(1) > 0, inter.sum(1) / gt.sum(1), np.nan)
    mean = [np.nanmean(r) if np.any(~np.isnan(r)) else np.nan for r in iou]
    return {"BIoU": iou[0], "mBIoU": mean[0], "trimap_mIoU": np.array(mean[1:]), "trimap_aAcc": acc[1:]}


def ours(preds, targets, C, **kw) -> dict:
    m = BoundaryMetrics(C, trimap_widths=kw.pop("widths", WIDTHS), **kw)
    for p, t in zip(preds, targets, strict=True):
        m.update(p, t)
    return m.compute()


def same(a, b) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and np.array_equal(np.isnan(a), np.isnan(b)) and np.allclose(
        a[~np.isnan(a)], b[~np.isnan(b)], rtol=0, atol=1e-12)


def check(preds, targets, C, **kw):
    ref_kw = {k: kw[k] for k in ("ratio", "dilation_px", "widths") if k in kw}
    mine_kw = {("dilation_ratio" if k == "ratio" else k): v for k, v in kw.items()}
    r, o = reference(preds, targets, C, **ref_kw), ours(preds, targets, C, **mine_kw)
    assert same(o["BIoU"], r["BIoU"]) and same([o["mBIoU"]], [r["mBIoU"]])
    assert same(o["trimap"]["mIoU"], r["trimap_mIoU"]) and same(o["trimap"]["aAcc"], r["trimap_aAcc"])
    return o


def blobs(h, w, C, seed, cells=(5, 6)):
    """Piecewise-constant label map: random classes on a coarse grid, nearest-upsampled."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, C, cells)
    rows = np.arange(h) * cells[0] // h
    cols = np.arange(w) * cells[1] // w
    return coarse[rows][:, cols]


def test_window_extremes_equal_a_direct_window_max_and_min():
    x = torch.randint(0, 50, (2, 3, 41), dtype=torch.int16)
    for r in (0, 1, 2, 3, 7, 20, 40, 100):
        hi = torch.stack([x[..., max(0, i - r):i + r + 1].amax(-1) for i in range(41)], -1)
        lo = torch.stack([x[..., max(0, i - r):i + r + 1].amin(-1) for i in range(41)], -1)
        assert torch.equal(_window_extreme(x, r, -1, torch.maximum), hi)
        assert torch.equal(_window_extreme(x, r, -1, torch.minimum), lo)
        assert torch.equal(_window_extreme(x.transpose(-1, -2), r, -2, torch.maximum), hi.transpose(-1, -2))


def test_reference_band_equals_the_boundary_iou_code():
    """The band used here is the reference code's: mask - erode(pad(mask, 1, 0), 3x3, d times)."""
    cv2 = pytest.importorskip("cv2", reason="opencv is not installed")
    for seed in range(4):
        t = blobs(61, 83, 4, seed)
        d = dilation_pixels(*t.shape)
        for c in range(4):
            m = (t == c).astype(np.uint8)
            padded = cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
            eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:-1, 1:-1]
            assert np.array_equal((m - eroded).astype(bool), inner_band(t == c, d))


def test_dilation_follows_the_reference_rounding():
    assert dilation_pixels(512, 683) == round(0.02 * math.hypot(512, 683)) == 17
    assert dilation_pixels(10, 10) == 1 and dilation_pixels(1, 1) == 1
    assert dilation_pixels(1024, 2048) == 46


@pytest.mark.parametrize("seed", range(3))
def test_random_maps_with_noise_and_ignore(seed):
    rng = np.random.default_rng(seed)
    C = 5
    targets, preds = [], []
    for h, w in ((40, 57), (33, 33), (64, 20)):
        t = blobs(h, w, C, seed * 10 + h)
        p = np.where(rng.random((h, w)) < 0.1, rng.integers(0, C, (h, w)), blobs(h, w, C, seed * 10 + h + 1))
        t = np.where(rng.random((h, w)) < 0.05, 255, t)
        targets.append(t)
        preds.append(p)
    check(preds, targets, C)


def test_class_touching_the_border_has_its_band_there():
    t = np.zeros((30, 40), np.int64)
    t[:, 25:] = 1  # class 1 touches the top, right and bottom borders
    o = check([t.copy()], [t], 2, dilation_px=3)
    assert o["BIoU"] == [1.0, 1.0]
    # the border frame is in class 1's band even far from the class edge: shift the prediction off it
    p = t.copy()
    p[:3, 30:] = 0
    o = check([p], [t], 2, dilation_px=3)
    assert o["BIoU"][1] < 1.0


def test_thin_structures():
    t = np.zeros((32, 32), np.int64)
    t[10, 3:29] = 1  # a one-pixel line
    t[3:29, 20] = 2  # a one-pixel column crossing it
    p = t.copy()
    p[10, 3:10] = 0
    p[12, 3:29] = 1  # a parallel line two pixels off
    check([p], [t], 3, dilation_px=1)
    check([p], [t], 3)


def test_single_class_and_perfect_predictions():
    t = np.full((25, 35), 2, np.int64)
    o = check([t.copy()], [t], 3)
    assert o["BIoU"][2] == 1.0 and math.isnan(o["BIoU"][0]) and o["mBIoU"] == 1.0
    # one class everywhere: no ground-truth transition, so every trimap band is empty
    assert all(math.isnan(v) for v in o["trimap"]["aAcc"] + o["trimap"]["mIoU"])
    t2 = blobs(50, 50, 4, 9)
    o = check([t2.copy()], [t2], 4)
    assert o["mBIoU"] == 1.0 and o["trimap"]["aAcc"] == [1.0] * len(WIDTHS)


def test_all_ignored_image_counts_nothing():
    t = np.full((20, 20), 255, np.int64)
    m = BoundaryMetrics(3)
    m.update(np.zeros((20, 20), np.int64), t)
    assert int(m.state_tensor().sum()) == 0
    o = m.compute()
    assert math.isnan(o["mBIoU"]) and all(math.isnan(v) for v in o["BIoU"])
    check([np.zeros((20, 20), np.int64)], [t], 3)


def test_predictions_outside_the_classes_are_misses():
    t = blobs(30, 30, 3, 4)
    p = t.copy()
    p[5:15, 5:15] = 255
    p[0, :] = -1
    check([p], [t], 3)


def test_batch_equals_images_and_state_sums():
    ts = [blobs(24, 36, 4, s) for s in range(4)]
    ps = [blobs(24, 36, 4, s + 7) for s in range(4)]
    one = BoundaryMetrics(4)
    for p, t in zip(ps, ts, strict=True):
        one.update(torch.as_tensor(p), torch.as_tensor(t))
    batch = BoundaryMetrics(4)
    batch.update(np.stack(ps), np.stack(ts))
    assert torch.equal(one.state_tensor(), batch.state_tensor())
    a, b = BoundaryMetrics(4), BoundaryMetrics(4)
    a.update(np.stack(ps[:2]), np.stack(ts[:2]))
    b.update(np.stack(ps[2:]), np.stack(ts[2:]))
    summed = BoundaryMetrics(4)
    summed.load_state_tensor(a.state_tensor() + b.state_tensor())  # what an all-reduce gives
    a += b
    assert torch.equal(a.state_tensor(), one.state_tensor()) and torch.equal(summed.state_tensor(),
                                                                             one.state_tensor())
    assert a.compute() == one.compute()
    with pytest.raises(ValueError, match=r"settings"):
        a.merge(BoundaryMetrics(4, dilation_px=3))
    with pytest.raises(ValueError, match=r"state tensor of shape \(2, 3, 4\): expected \(7, 3, 4\)"):
        a.load_state_tensor(torch.zeros(2, 3, 4, dtype=torch.int64))
    a.reset()
    assert int(a.state_tensor().sum()) == 0


def test_bad_inputs_name_the_value():
    m = BoundaryMetrics(3)
    with pytest.raises(ValueError, match=r"target value 7 is outside 0..2 and is not the ignore index 255"):
        m.update(np.zeros((8, 8), np.int64), np.full((8, 8), 7))
    with pytest.raises(ValueError, match=r"expected an integer label map"):
        m.update(np.zeros((8, 8), np.float32), np.zeros((8, 8), np.int64))
    with pytest.raises(ValueError, match=r"expected \(H, W\) or \(N, H, W\)"):
        m.update(np.zeros((1, 1, 8, 8), np.int64), np.zeros((1, 1, 8, 8), np.int64))
    with pytest.raises(ValueError, match=r"trimap_widths must be at most 255 distinct positive integers"):
        BoundaryMetrics(3, trimap_widths=(2, 2))
    with pytest.raises(ValueError, match=r"dilation_px must be a positive integer"):
        BoundaryMetrics(3, dilation_px=0)
    with pytest.raises(ValueError, match=r"dilation_ratio must lie strictly between 0 and 1"):
        BoundaryMetrics(3, dilation_ratio=1.5)


def real_predictions(dataset: str):
    """(predictions of the real LiteRT model, labels, number of classes) on the real samples."""
    ds, model = load_real(dataset)
    samples = [ds.load(i) for i in range(len(ds))]
    return [model.predict([s.image])[0] for s in samples], [s.label for s in samples], ds.num_classes


@pytest.mark.parametrize("dataset", list(REAL))
def test_real_samples_with_real_model_predictions(dataset, capsys):
    preds, labels, C = real_predictions(dataset)
    o = check(preds, labels, C, widths=(2, 10))
    assert 0 < o["mBIoU"] < 1
    with capsys.disabled():
        print(f"\n{dataset}: mBIoU {o['mBIoU']:.4f}, trimap aAcc (2, 10 px) "
              f"{', '.join(f'{v:.4f}' for v in o['trimap']['aAcc'])}")


def test_unsorted_widths_and_many_classes():
    t, p = blobs(40, 50, 300, 3, cells=(8, 9)), blobs(40, 50, 300, 4, cells=(8, 9))
    o = check([p], [t], 300, widths=(8, 1, 3))  # codes above 255 take the int16 path
    a1, a3, a8 = ours([p], [t], 300, widths=(1, 3, 8))["trimap"]["aAcc"]
    assert o["trimap"]["widths_px"] == [8, 1, 3] and o["trimap"]["aAcc"] == [a8, a1, a3]


def test_narrow_input_types():
    """uint8 maps (as masks are stored), including values that are no class, equal int64 maps."""
    t = blobs(30, 30, 250, 5).astype(np.uint8)
    p = np.where(blobs(30, 30, 2, 6) == 0, 254, t).astype(np.uint8)
    for C in (250, 300):
        check([p], [t.astype(np.int64)], C, widths=(2,))
        m = BoundaryMetrics(C, trimap_widths=(2,))
        m.update(p, t)
        wide = ours([p.astype(np.int64)], [t.astype(np.int64)], C, widths=(2,))
        assert same(m.compute()["BIoU"], wide["BIoU"]) and m.compute()["trimap"] == wide["trimap"]
