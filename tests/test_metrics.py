"""SegmentationMetrics against torchmetrics and a float64 numpy reference written from the definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from harness.metrics import SegmentationMetrics, bootstrap_miou, confusion_matrix, metrics_from_confusion


def numpy_reference(preds: list[np.ndarray], targets: list[np.ndarray], C: int, ignore: int) -> dict:
    """Dataset-level metrics, float64, straight from the definitions (loops over classes)."""
    p = np.concatenate([x.ravel() for x in preds]).astype(np.int64)
    t = np.concatenate([x.ravel() for x in targets]).astype(np.int64)
    keep = t != ignore
    p, t = p[keep], t[keep]
    iou, acc = [], []
    for c in range(C):
        inter = np.sum((p == c) & (t == c))
        union = np.sum((p == c) | (t == c))
        gt = np.sum(t == c)
        iou.append(inter / union if union else np.nan)
        acc.append(inter / gt if gt else np.nan)
    iou, acc = np.array(iou, dtype=np.float64), np.array(acc, dtype=np.float64)
    freq = np.array([np.sum(t == c) for c in range(C)], dtype=np.float64) / max(t.size, 1)
    valid = ~np.isnan(iou)
    return {"mIoU": np.nanmean(iou) if valid.any() else np.nan, "aAcc": np.mean(p == t) if t.size else np.nan,
            "mAcc": np.nanmean(acc) if (~np.isnan(acc)).any() else np.nan,
            "fwIoU": np.sum(freq[valid] * iou[valid]), "IoU": iou, "Acc": acc}


def random_maps(seed: int, C: int, shape=(2, 37, 53), ignore=255, ignore_frac=0.1, noise=0.3):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, C, shape)
    t[rng.random(shape) < ignore_frac] = ignore
    p = np.where(rng.random(shape) < noise, rng.integers(0, C, shape), np.where(t == ignore, 0, t))
    return p, t


def assert_close(got: dict, ref: dict):
    for k in ("mIoU", "aAcc", "mAcc", "fwIoU"):
        if np.isnan(ref[k]):
            assert math.isnan(got[k]), k
        else:
            assert got[k] == pytest.approx(ref[k], abs=1e-12), k
    np.testing.assert_allclose(np.array(got["IoU"], dtype=np.float64), ref["IoU"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.array(got["Acc"], dtype=np.float64), ref["Acc"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("C", [2, 19, 150])
def test_matches_numpy_reference(seed, C):
    p, t = random_maps(seed, C)
    m = SegmentationMetrics(C)
    m.update(torch.from_numpy(p), torch.from_numpy(t))
    assert_close(m.compute(), numpy_reference([p], [t], C, 255))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
def test_dtypes_and_uint8_fast_path_agree(dtype):
    p, t = random_maps(1, 150)
    m = SegmentationMetrics(150)
    m.update(torch.from_numpy(p).to(dtype), torch.from_numpy(t).to(dtype))
    assert_close(m.compute(), numpy_reference([p], [t], 150, 255))


@pytest.mark.parametrize("seed", range(3))
def test_matches_torchmetrics_where_both_are_defined(seed):
    C = 21
    p, t = random_maps(seed, C, shape=(3, 40, 40))
    pt, tt = torch.from_numpy(p), torch.from_numpy(t)
    ours = SegmentationMetrics(C)
    ours.update(pt, tt)
    got = ours.compute()
    iou = MulticlassJaccardIndex(num_classes=C, ignore_index=255, average=None)(pt, tt).double().numpy()
    np.testing.assert_allclose(got["IoU"], iou, atol=1e-6)
    macc = MulticlassAccuracy(num_classes=C, ignore_index=255, average="micro")(pt, tt).item()
    assert got["aAcc"] == pytest.approx(macc, abs=1e-6)
    cacc = MulticlassAccuracy(num_classes=C, ignore_index=255, average="none")(pt, tt).double().numpy()
    np.testing.assert_allclose(got["Acc"], cacc, atol=1e-6)
    tm_cm = MulticlassJaccardIndex(num_classes=C, ignore_index=255)
    tm_cm.update(pt, tt)
    assert torch.equal(confusion_matrix(pt, tt, C), tm_cm.confmat.long())


def test_absent_class_is_nan_for_us_and_zero_for_torchmetrics():
    C = 4  # class 3 appears nowhere
    t = torch.tensor([[0, 1, 2, 2]])
    p = torch.tensor([[0, 1, 2, 1]])
    ours = SegmentationMetrics(C)
    ours.update(p, t)
    got = ours.compute()
    assert math.isnan(got["IoU"][3])
    assert got["mIoU"] == pytest.approx((1 + 0.5 + 0.5) / 3)  # mean over classes 0..2
    tm = MulticlassJaccardIndex(num_classes=C, average=None)(p, t)
    assert tm[3].item() == 0.0
    # averaging torchmetrics' per-class values counts the absent class as 0 and lowers the mean
    assert tm.mean().item() == pytest.approx(2 / 4) and got["mIoU"] == pytest.approx(2 / 3)


def test_predicted_but_absent_in_target_has_zero_iou_and_nan_acc():
    t = torch.tensor([0, 0, 1, 1])
    p = torch.tensor([0, 2, 1, 1])
    got = SegmentationMetrics(3)
    got.update(p, t)
    r = got.compute()
    assert r["IoU"][2] == 0.0 and math.isnan(r["Acc"][2])


def test_out_of_range_predictions_are_misses():
    t = np.array([[0, 0, 1, 1, 255]])
    p = np.array([[0, 255, 1, 7, 0]])
    m = SegmentationMetrics(2)
    m.update(p, t)
    r = m.compute()
    assert r["aAcc"] == pytest.approx(2 / 4)
    assert r["IoU"] == pytest.approx([1 / 2, 1 / 2])  # class 0: tp 1, gt 2, pred 1
    assert r["Acc"] == pytest.approx([1 / 2, 1 / 2])
    assert m.state_tensor()[:, 2].tolist() == [1, 1]
    # the same with a negative prediction and int64
    m2 = SegmentationMetrics(2)
    m2.update(torch.tensor([[0, -1, 1, 1]]), torch.tensor([[0, 0, 1, 1]]))
    assert m2.compute()["aAcc"] == pytest.approx(3 / 4)


def test_all_ignored_gives_nan_not_an_error():
    m = SegmentationMetrics(5)
    m.update(np.zeros((4, 4), np.int64), np.full((4, 4), 255))
    r = m.compute()
    assert all(math.isnan(r[k]) for k in ("mIoU", "aAcc", "mAcc", "fwIoU"))
    assert all(math.isnan(x) for x in r["IoU"])


def test_one_class_only():
    m = SegmentationMetrics(1, ignore_index=255)
    m.update(np.zeros((3, 3)).astype(np.int64), np.zeros((3, 3)).astype(np.int64))
    r = m.compute()
    assert r["mIoU"] == 1.0 and r["aAcc"] == 1.0 and r["mAcc"] == 1.0


def test_nothing_updated():
    r = SegmentationMetrics(3).compute()
    assert math.isnan(r["mIoU"]) and len(r["IoU"]) == 3


def test_ignore_index_inside_the_class_range():
    # ignore 0 (e.g. a dataset whose class 0 is "unlabelled") with uint8 and int64 inputs
    p, t = random_maps(3, 10, ignore=0)
    for dtype in (torch.uint8, torch.int64):
        m = SegmentationMetrics(10, ignore_index=0)
        m.update(torch.from_numpy(p).to(dtype), torch.from_numpy(t).to(dtype))
        assert_close(m.compute(), numpy_reference([p], [t], 10, 0))


@pytest.mark.parametrize("bad", [5, 200, -3])
def test_target_out_of_range_names_the_value(bad):
    t = np.array([[0, 1, bad]])
    for dtype in ([np.int64] if bad < 0 else [np.int64, np.uint8]):
        m = SegmentationMetrics(3)
        with pytest.raises(ValueError, match=f"target value {bad} is outside 0..2"):
            m.update(np.zeros_like(t, dtype=dtype), t.astype(dtype))


def test_shape_mismatch_and_float_inputs_are_errors():
    m = SegmentationMetrics(3)
    with pytest.raises(ValueError, match=r"pred shape \(2, 2\) differs from target shape \(2, 3\)"):
        m.update(np.zeros((2, 2), np.int64), np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match="integer label map"):
        m.update(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.int64))


def test_numpy_and_torch_and_batches_agree():
    p, t = random_maps(7, 19, shape=(3, 20, 30))
    a, b, c = SegmentationMetrics(19), SegmentationMetrics(19), SegmentationMetrics(19)
    a.update(p, t)
    b.update(torch.from_numpy(p), torch.from_numpy(t))
    for i in range(3):
        c.update(p[i], t[i])
    assert torch.equal(a.state_tensor(), b.state_tensor()) and torch.equal(a.state_tensor(), c.state_tensor())


def test_merge_equals_one_pass_and_state_round_trip():
    p, t = random_maps(8, 19, shape=(4, 16, 16))
    whole = SegmentationMetrics(19)
    whole.update(p, t)
    a, b = SegmentationMetrics(19), SegmentationMetrics(19)
    a.update(p[:1], t[:1])
    b.update(p[1:], t[1:])
    a += b
    assert torch.equal(a.state_tensor(), whole.state_tensor())
    c = SegmentationMetrics(19)
    c.load_state_tensor(whole.state_tensor().clone())
    assert_close(c.compute(), {k: np.array(v, dtype=np.float64) for k, v in whole.compute().items()})
    with pytest.raises(ValueError):
        c.load_state_tensor(torch.zeros(3, 3, dtype=torch.int64))


def test_per_image_records_sum_to_the_dataset_counts():
    p, t = random_maps(9, 19, shape=(5, 16, 16))
    m = SegmentationMetrics(19, keep_per_image=True)
    m.update(p[:2], t[:2])
    m.update(p[2], t[2])
    m.update(p[3:], t[3:])
    inter, union, gt = m.per_image()
    assert inter.shape == (5, 19)
    cm = m.state_tensor().numpy()
    tp = np.diag(cm[:, :19])
    assert np.array_equal(inter.sum(0), tp)
    assert np.array_equal(gt.sum(0), cm.sum(1))
    for i in range(5):
        ref = numpy_reference([p[i]], [t[i]], 19, 255)
        with np.errstate(invalid="ignore", divide="ignore"):
            ours = np.where(union[i] > 0, inter[i] / np.maximum(union[i], 1), np.nan)
        np.testing.assert_allclose(ours, ref["IoU"], atol=1e-12)


def test_bootstrap_ci_contains_the_estimate_and_is_seeded():
    rng = np.random.default_rng(0)
    p, t = random_maps(10, 19, shape=(30, 16, 16))
    m = SegmentationMetrics(19, keep_per_image=True)
    m.update(p, t)
    inter, union, _ = m.per_image()
    lo, hi = bootstrap_miou(inter, union, n_boot=500, seed=1)
    assert lo <= m.compute()["mIoU"] <= hi and lo < hi
    assert (lo, hi) == bootstrap_miou(inter, union, n_boot=500, seed=1)
    assert (lo, hi) != bootstrap_miou(inter, union, n_boot=500, seed=2)
    assert all(math.isnan(x) for x in bootstrap_miou(np.zeros((0, 3)), np.zeros((0, 3))))
    del rng


def test_metrics_from_a_plain_square_matrix():
    cm = np.array([[3, 1], [0, 4]])
    r = metrics_from_confusion(cm)
    assert r["IoU"] == pytest.approx([3 / 4, 4 / 5]) and r["aAcc"] == pytest.approx(7 / 8)
