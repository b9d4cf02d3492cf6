"""SegmentationMetrics against torchmetrics and a float64 numpy reference written from the definitions."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

import harness.metrics as hm
from harness.metrics import (
    SegmentationMetrics,
    bootstrap_miou,
    confusion_matrix,
    metrics_from_confusion,
    pair_counts,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def numpy_reference(preds: list[np.ndarray], targets: list[np.ndarray], C: int, ignore: int) -> dict:
    """Dataset-level metrics in float64, straight from the definitions (one loop per class).

    A prediction outside 0..C-1 equals no class, so it is a miss that adds to no class's prediction count.
    """
    p = np.concatenate([np.asarray(x).ravel() for x in preds]).astype(np.int64)
    t = np.concatenate([np.asarray(x).ravel() for x in targets]).astype(np.int64)
    keep = t != ignore
    p, t = p[keep], t[keep]
    iou, acc, freq = [], [], []
    for c in range(C):
        inter = np.sum((p == c) & (t == c))
        union = np.sum((p == c) | (t == c))
        gt = np.sum(t == c)
        iou.append(inter / union if union else np.nan)
        acc.append(inter / gt if gt else np.nan)
        freq.append(gt / t.size if t.size else 0.0)
    iou, acc, freq = (np.array(v, dtype=np.float64) for v in (iou, acc, freq))
    has_iou, has_acc = ~np.isnan(iou), ~np.isnan(acc)
    return {
        "mIoU": iou[has_iou].mean() if has_iou.any() else np.nan,
        "aAcc": np.mean(p == t) if t.size else np.nan,
        "mAcc": acc[has_acc].mean() if has_acc.any() else np.nan,
        "fwIoU": np.sum(freq[has_iou] * iou[has_iou]) if t.size else np.nan,
        "IoU": iou,
        "Acc": acc,
    }


def random_maps(seed: int, C: int, shape=(2, 37, 53), ignore=255, ignore_frac=0.1, noise=0.3):
    """Targets with ~ignore_frac ignored pixels; predictions equal to the targets except ~noise of them."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, C, shape)
    t[rng.random(shape) < ignore_frac] = ignore
    p = np.where(rng.random(shape) < noise, rng.integers(0, C, shape), np.where(t == ignore, 0, t))
    return p, t


def assert_close(got: dict, ref: dict, atol: float = 1e-12):
    for k in ("mIoU", "aAcc", "mAcc", "fwIoU"):
        assert isinstance(got[k], float), k
        if np.isnan(ref[k]):
            assert math.isnan(got[k]), k
        else:
            assert got[k] == pytest.approx(float(ref[k]), abs=atol), k
    np.testing.assert_allclose(np.array(got["IoU"], dtype=np.float64), ref["IoU"], rtol=0, atol=atol)
    np.testing.assert_allclose(np.array(got["Acc"], dtype=np.float64), ref["Acc"], rtol=0, atol=atol)


def run(p, t, C: int, ignore: int = 255, **kw) -> SegmentationMetrics:
    m = SegmentationMetrics(C, ignore_index=ignore, **kw)
    m.update(p, t)
    return m


@pytest.fixture(params=["one block", "many blocks"])
def blocks(request, monkeypatch) -> str:
    """Run a test with the CPU engine's usual block size, and with tiny blocks (many per image)."""
    if request.param == "many blocks":
        monkeypatch.setattr(hm, "_BLOCK", 97)
    return request.param


# -- against the numpy reference ---------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("C", [2, 19, 150, 171])
@pytest.mark.parametrize("shape", [(2, 37, 53), (64, 48), (1000,)])
def test_matches_numpy_reference(seed, C, shape, blocks):
    p, t = random_maps(seed, C, shape=shape)
    assert_close(run(torch.from_numpy(p), torch.from_numpy(t), C).compute(), numpy_reference([p], [t], C, 255))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32, torch.int64])
def test_every_integer_dtype_agrees(dtype):
    p, t = random_maps(1, 150)
    got = run(torch.from_numpy(p).to(dtype), torch.from_numpy(t).to(dtype), 150).compute()
    assert_close(got, numpy_reference([p], [t], 150, 255))


def test_mixed_dtypes_and_inputs_left_untouched():
    p, t = random_maps(2, 150)
    pt, tt = torch.from_numpy(p).to(torch.int32), torch.from_numpy(t).to(torch.uint8)
    p0, t0 = pt.clone(), tt.clone()
    assert_close(run(pt, tt, 150).compute(), numpy_reference([p], [t], 150, 255))
    assert torch.equal(pt, p0) and torch.equal(tt, t0)


@pytest.mark.parametrize("ignore", [0, 254, 65535, -1, -100])
def test_any_ignore_index(ignore, blocks):
    """Ignore indices inside the class range, just above it, far above it and negative."""
    C = 10 if ignore == 0 else 150
    p, t = random_maps(3, C, ignore=ignore)
    ref = numpy_reference([p], [t], C, ignore)
    assert_close(run(p, t, C, ignore).compute(), ref)
    if 0 <= ignore <= 255:
        assert_close(run(p.astype(np.uint8), t.astype(np.uint8), C, ignore).compute(), ref)


def test_large_maps_span_many_blocks():
    """A 512x512 batch (several blocks per image), an invalid target only in the last block."""
    p, t = random_maps(16, 150, shape=(2, 512, 512))
    assert_close(run(p, t, 150).compute(), numpy_reference([p], [t], 150, 255))
    t[-1, -1, -1] = 151
    with pytest.raises(ValueError, match="target value 151 is outside 0..149"):
        run(p, t, 150)


@pytest.mark.parametrize("ignore", [255, 0, -1, 65535])
@pytest.mark.parametrize("dtypes", [(torch.int64, torch.int64), (torch.uint8, torch.uint8), (torch.int32, torch.int16),
                                    (torch.int8, torch.int8)])
def test_whole_tensor_path_equals_the_block_path(ignore, dtypes, monkeypatch):
    """The path CUDA takes (one bincount over the batch), run on the CPU, against the CPU block path."""
    info = torch.iinfo(dtypes[1])
    if not info.min <= ignore <= info.max:
        pytest.skip(f"ignore index {ignore} does not fit {dtypes[1]}")
    monkeypatch.setattr(hm, "_BLOCK", 101)
    p, t = random_maps(17, 19, shape=(3, 21, 23), ignore=ignore)
    p[0, 0, :4] = [255, -1, 19, 40]  # out-of-range predictions
    if dtypes[0] == torch.uint8:
        p = np.where(p < 0, 255, p)
    if dtypes[0] == torch.int8:
        p = np.where(p > 127, -100, p)
    pt, tt = torch.from_numpy(p).to(dtypes[0]), torch.from_numpy(t).to(dtypes[1])
    layout = hm._Layout(19, ignore)
    whole = hm._counts_whole(pt.reshape(-1), tt.reshape(-1), layout, 3)
    blocks = hm._counts_blocks(pt.reshape(-1), tt.reshape(-1), layout, 3)
    assert torch.equal(whole, blocks) and whole.shape == (3, 19, 20)
    assert_close(metrics_from_confusion(blocks.sum(0)), numpy_reference([p], [t], 19, ignore))
    t[1, 2, 3] = 30
    tt = torch.from_numpy(t).to(dtypes[1])
    for engine in (hm._counts_whole, hm._counts_blocks):
        with pytest.raises(ValueError, match="target value 30 is outside 0..18"):
            engine(pt.reshape(-1), tt.reshape(-1), layout, 3)


def test_inference_mode_inputs_and_updates():
    """Predictions made under torch.inference_mode, updates inside and outside it."""
    p, t = random_maps(18, 19, shape=(3, 16, 16))
    m = SegmentationMetrics(19, keep_per_image=True)
    with torch.inference_mode():
        m.update(torch.from_numpy(p[:2]), torch.from_numpy(t[:2]))
    m.update(p[2], t[2])
    with torch.inference_mode():
        other = run(p, t, 19, keep_per_image=True)
    other += m
    assert not m.state_tensor().is_inference()
    assert_close(m.compute(), numpy_reference([p], [t], 19, 255))
    assert torch.equal(other.state_tensor(), 2 * m.state_tensor())


def test_wide_index_when_the_bins_do_not_fit_int32(monkeypatch):
    p, t = random_maps(4, 19, shape=(3, 20, 20))
    pt, tt = torch.from_numpy(p).reshape(-1), torch.from_numpy(t).reshape(-1)
    narrow = hm._counts_whole(pt, tt, hm._Layout(19, 255), 3)
    monkeypatch.setattr(hm, "_INT32_BINS", 100)
    layout = hm._Layout(19, 255)
    assert layout.index_dtype == torch.int64
    assert torch.equal(hm._counts_whole(pt, tt, layout, 3), narrow)
    assert torch.equal(hm._counts_blocks(pt, tt, layout, 3), narrow)


# -- against torchmetrics ----------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_matches_torchmetrics_when_every_class_is_present(seed):
    C = 21
    p, t = random_maps(seed, C, shape=(3, 40, 40))
    pt, tt = torch.from_numpy(p), torch.from_numpy(t)
    got = run(pt, tt, C).compute()
    kw = {"num_classes": C, "ignore_index": 255}
    np.testing.assert_allclose(got["IoU"], MulticlassJaccardIndex(average=None, **kw)(pt, tt).double(), atol=1e-6)
    assert got["mIoU"] == pytest.approx(MulticlassJaccardIndex(average="macro", **kw)(pt, tt).item(), abs=1e-6)
    assert got["aAcc"] == pytest.approx(MulticlassAccuracy(average="micro", **kw)(pt, tt).item(), abs=1e-6)
    assert got["mAcc"] == pytest.approx(MulticlassAccuracy(average="macro", **kw)(pt, tt).item(), abs=1e-6)
    np.testing.assert_allclose(got["Acc"], MulticlassAccuracy(average="none", **kw)(pt, tt).double(), atol=1e-6)
    tm = MulticlassJaccardIndex(**kw)
    tm.update(pt, tt)
    assert torch.equal(confusion_matrix(pt, tt, C), tm.confmat.long())


def test_absent_class_is_nan_here_and_zero_in_torchmetrics():
    C = 4  # class 3 appears in neither prediction nor target
    t = torch.tensor([[0, 1, 2, 2]])
    p = torch.tensor([[0, 1, 2, 1]])
    got = run(p, t, C).compute()
    assert math.isnan(got["IoU"][3]) and math.isnan(got["Acc"][3])
    assert got["mIoU"] == pytest.approx((1 + 0.5 + 0.5) / 3)  # mean over classes 0..2
    tm = MulticlassJaccardIndex(num_classes=C, average=None)(p, t)
    assert tm[3].item() == 0.0
    # averaging torchmetrics' per-class values counts the absent class as 0 and lowers the mean ...
    assert tm.mean().item() == pytest.approx(2 / 4)
    # ... while its "macro" average skips the class, as mIoU does
    assert MulticlassJaccardIndex(num_classes=C, average="macro")(p, t).item() == pytest.approx(got["mIoU"])


def test_class_predicted_but_absent_from_the_target():
    """IoU 0 (it has a union) and accuracy NaN here; torchmetrics' macro accuracy counts it as 0."""
    t = torch.tensor([0, 0, 1, 1])
    p = torch.tensor([0, 2, 1, 1])
    got = run(p, t, 3).compute()
    assert got["IoU"] == pytest.approx([1 / 2, 1.0, 0.0])
    assert math.isnan(got["Acc"][2]) and got["mAcc"] == pytest.approx((1 / 2 + 1) / 2)
    assert MulticlassJaccardIndex(num_classes=3, average="macro")(p, t).item() == pytest.approx(got["mIoU"])
    assert MulticlassAccuracy(num_classes=3, average="none")(p, t)[2].item() == 0.0
    assert MulticlassAccuracy(num_classes=3, average="macro")(p, t).item() == pytest.approx((1 / 2 + 1 + 0) / 3)


# -- edge cases ----------------------------------------------------------------------------------
def test_out_of_range_predictions_are_misses(blocks):
    t = np.array([[0, 0, 1, 1, 255]])
    p = np.array([[0, 255, 1, 7, 0]])
    m = run(p, t, 2)
    r = m.compute()
    assert r["aAcc"] == pytest.approx(2 / 4)
    assert r["IoU"] == pytest.approx([1 / 2, 1 / 2])  # class 0: tp 1, gt 2, predicted 1
    assert r["Acc"] == pytest.approx([1 / 2, 1 / 2])
    assert m.state_tensor()[:, 2].tolist() == [1, 1]
    assert m.confusion_matrix.tolist() == [[1, 0], [0, 1]]
    assert_close(r, numpy_reference([p], [t], 2, 255))
    # negative predictions, and 255 in uint8 maps (a model whose "other" class maps to nothing)
    assert run(torch.tensor([[0, -1, 1, 1]]), torch.tensor([[0, 0, 1, 1]]), 2).compute()["aAcc"] == 0.75
    p8, t8 = random_maps(5, 150)
    p8[:, :, ::4] = 255
    assert_close(run(p8.astype(np.uint8), t8.astype(np.uint8), 150).compute(), numpy_reference([p8], [t8], 150, 255))


def test_all_ignored_gives_nan_not_an_error():
    r = run(np.zeros((4, 4), np.int64), np.full((4, 4), 255), 5).compute()
    assert all(math.isnan(r[k]) for k in ("mIoU", "aAcc", "mAcc", "fwIoU"))
    assert len(r["IoU"]) == 5 and all(math.isnan(x) for x in r["IoU"] + r["Acc"])


def test_nothing_updated_and_empty_inputs():
    assert math.isnan(SegmentationMetrics(3).compute()["mIoU"])
    m = run(np.zeros((0, 4, 4), np.int64), np.zeros((0, 4, 4), np.int64), 3, keep_per_image=True)
    assert math.isnan(m.compute()["aAcc"]) and m.per_image()[0].shape == (0, 3)


def test_one_class_only():
    r = run(np.zeros((3, 3), np.int64), np.zeros((3, 3), np.int64), 1).compute()
    assert r["mIoU"] == r["aAcc"] == r["mAcc"] == r["fwIoU"] == 1.0


@pytest.mark.parametrize("bad,ignore", [(5, 255), (200, 255), (300, 255), (-3, 255), (7, -1), (1000, 65535)])
def test_target_out_of_range_names_the_value(bad, ignore):
    t = np.array([[0, 1, bad, ignore]])
    dtypes = [np.int64] + ([np.uint8] if 0 <= bad <= 255 and 0 <= ignore <= 255 else [])
    for dtype in dtypes:
        with pytest.raises(ValueError, match=f"target value {bad} is outside 0..2 and is not the ignore index {ignore}"):
            run(np.zeros_like(t, dtype=dtype), t.astype(dtype), 3, ignore)


def test_shape_dtype_and_state_errors_are_clear():
    m = SegmentationMetrics(3)
    with pytest.raises(ValueError, match=r"pred shape \(2, 2\) differs from target shape \(2, 3\)"):
        m.update(np.zeros((2, 2), np.int64), np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match="pred: expected an integer label map, got numpy dtype float32"):
        m.update(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="target: expected an integer label map, got dtype torch.bool"):
        m.update(torch.zeros(2, dtype=torch.int64), torch.zeros(2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"state tensor of shape \(3, 3\): expected \(3, 4\)"):
        m.load_state_tensor(torch.zeros(3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="num_classes must be at least 1, got 0"):
        SegmentationMetrics(0)
    with pytest.raises(ValueError, match=r"confusion matrix of shape \(2, 4\)"):
        metrics_from_confusion(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="non-negative"):
        metrics_from_confusion(np.array([[1, -1], [0, 1]]))


def test_numpy_layouts_that_torch_cannot_take_directly():
    """Reversed strides, other byte order, read-only and wide unsigned arrays, nested lists."""
    p, t = random_maps(6, 19, shape=(20, 30))
    ref = numpy_reference([p], [t], 19, 255)
    assert_close(run(p[:, ::-1], t[:, ::-1], 19).compute(), ref)
    assert_close(run(p.astype(">i4"), t.astype(">i2"), 19).compute(), ref)
    ro_p, ro_t = p.copy(), t.copy()
    ro_p.flags.writeable = ro_t.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_close(run(ro_p, ro_t, 19).compute(), ref)
    assert_close(run(p.astype(np.uint16), t.astype(np.uint32), 19).compute(), ref)
    assert_close(run(p.tolist(), t.tolist(), 19).compute(), ref)


def test_numpy_torch_batches_and_single_images_agree():
    p, t = random_maps(7, 19, shape=(3, 20, 30))
    a, b, c = run(p, t, 19), run(torch.from_numpy(p), torch.from_numpy(t), 19), SegmentationMetrics(19)
    for i in range(3):
        c.update(p[i], t[i])
    assert torch.equal(a.state_tensor(), b.state_tensor()) and torch.equal(a.state_tensor(), c.state_tensor())
    assert a.confusion_matrix.dtype == torch.int64 and a.confusion_matrix.shape == (19, 19)


# -- combining state -----------------------------------------------------------------------------
def test_merge_equals_one_pass_and_state_round_trip():
    p, t = random_maps(8, 19, shape=(4, 16, 16))
    whole = run(p, t, 19)
    a, b = run(p[:1], t[:1], 19), run(p[1:], t[1:], 19)
    a += b
    assert torch.equal(a.state_tensor(), whole.state_tensor())
    assert_close(a.compute(), numpy_reference([p], [t], 19, 255))
    # the state tensor summed by hand (as an all-reduce does) gives the same metrics
    c, d = run(p[:2], t[:2], 19), run(p[2:], t[2:], 19)
    summed = c.state_tensor() + d.state_tensor()
    fresh = SegmentationMetrics(19)
    fresh.load_state_tensor(summed)
    assert torch.equal(fresh.state_tensor(), whole.state_tensor())
    fresh.update(p[:1], t[:1])  # the loaded tensor is copied, not updated in place
    assert torch.equal(summed, whole.state_tensor())
    with pytest.raises(ValueError, match="num_classes=20"):
        whole.merge(SegmentationMetrics(20))
    with pytest.raises(ValueError, match="per-image"):
        whole.merge(SegmentationMetrics(19, keep_per_image=True))


def test_per_image_records_sum_to_the_dataset_counts():
    p, t = random_maps(9, 19, shape=(5, 16, 16))
    m = SegmentationMetrics(19, keep_per_image=True)
    m.update(p[:2], t[:2])
    m.update(p[2], t[2])
    m.update(torch.from_numpy(p[3:]).unsqueeze(1), torch.from_numpy(t[3:]).unsqueeze(1))  # (N, 1, H, W)
    inter, union, gt = m.per_image()
    assert inter.shape == union.shape == gt.shape == (5, 19) and inter.dtype == np.int64
    cm = m.state_tensor().numpy()
    assert np.array_equal(inter.sum(0), np.diag(cm[:, :19]))
    assert np.array_equal(gt.sum(0), cm.sum(1))
    for i in range(5):
        ref = numpy_reference([p[i]], [t[i]], 19, 255)
        with np.errstate(invalid="ignore", divide="ignore"):
            ours = np.where(union[i] > 0, inter[i] / np.maximum(union[i], 1), np.nan)
        np.testing.assert_allclose(ours, ref["IoU"], atol=1e-12)
        assert np.array_equal(gt[i], [np.sum(t[i] == c) for c in range(19)])
    other = run(p, t, 19, keep_per_image=True)
    other += m
    assert other.per_image()[0].shape == (10, 19)


# -- bootstrap -------------------------------------------------------------------------------
def per_image_counts(seed: int, n: int, C: int = 19):
    p, t = random_maps(seed, C, shape=(n, 16, 16), noise=0.5)
    m = run(p, t, C, keep_per_image=True)
    inter, union, _ = m.per_image()
    return inter, union, m.compute()["mIoU"]


def naive_bootstrap(inter, union, n_boot, alpha, seed):
    """Resample image indices one resample at a time (independent of the engine's multinomial draws)."""
    rng = np.random.default_rng(seed)
    n, out = len(inter), []
    for _ in range(n_boot):
        pick = rng.integers(0, n, n)
        si, su = inter[pick].sum(0), union[pick].sum(0)
        out.append(np.mean(si[su > 0] / su[su > 0]))
    return np.percentile(out, [100 * alpha / 2, 100 * (1 - alpha / 2)])


def test_bootstrap_ci_contains_the_estimate_and_is_seeded():
    inter, union, miou = per_image_counts(10, 30)
    lo, hi = bootstrap_miou(inter, union, n_boot=500, seed=1)
    assert lo < miou < hi
    assert (lo, hi) == bootstrap_miou(inter, union, n_boot=500, seed=1)
    assert (lo, hi) != bootstrap_miou(inter, union, n_boot=500, seed=2)
    assert all(math.isnan(x) for x in bootstrap_miou(np.zeros((0, 3)), np.zeros((0, 3))))


def test_bootstrap_agrees_with_naive_resampling():
    inter, union, _ = per_image_counts(11, 40)
    lo, hi = bootstrap_miou(inter, union, n_boot=2000, alpha=0.1, seed=3)
    nlo, nhi = naive_bootstrap(inter, union, 2000, 0.1, seed=4)
    width = nhi - nlo
    assert width > 0
    assert abs(lo - nlo) < 0.1 * width and abs(hi - nhi) < 0.1 * width


def test_bootstrap_degenerate_and_blocked_cases(monkeypatch):
    inter, union, miou = per_image_counts(12, 1)
    assert bootstrap_miou(np.repeat(inter, 5, 0), np.repeat(union, 5, 0)) == pytest.approx((miou, miou))
    inter, union, _ = per_image_counts(13, 20)
    whole = bootstrap_miou(inter, union, n_boot=300, seed=5)
    monkeypatch.setattr(hm, "_BOOT_CELLS", 20 * 7)  # 7 resamples per block
    assert bootstrap_miou(inter, union, n_boot=300, seed=5) == whole
    with pytest.raises(ValueError, match=r"inter shape \(20, 19\) and union shape \(19,\)"):
        bootstrap_miou(inter, union[0])
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_miou(inter, union, alpha=1.5)


# -- the plain functions ---------------------------------------------------------------------------
def test_metrics_from_a_plain_square_matrix():
    r = metrics_from_confusion(np.array([[3, 1], [0, 4]]))
    assert r["IoU"] == pytest.approx([3 / 4, 4 / 5]) and r["aAcc"] == pytest.approx(7 / 8)
    assert r["mAcc"] == pytest.approx((3 / 4 + 1) / 2)
    assert r["fwIoU"] == pytest.approx(4 / 8 * 3 / 4 + 4 / 8 * 4 / 5)


def test_pair_counts_per_image_blocks():
    p, t = random_maps(14, 7, shape=(4, 9, 11))
    counts = pair_counts(torch.from_numpy(p), torch.from_numpy(t), 7, num_images=4)
    for i in range(4):
        assert torch.equal(counts[i], pair_counts(torch.from_numpy(p[i]), torch.from_numpy(t[i]), 7)[0])
    with pytest.raises(ValueError, match="equal images"):
        pair_counts(torch.from_numpy(p), torch.from_numpy(t), 7, num_images=5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_accumulates_on_the_device_and_matches_cpu():
    p, t = random_maps(15, 150, shape=(2, 64, 64))
    m = run(torch.from_numpy(p).cuda(), torch.from_numpy(t).cuda(), 150, keep_per_image=True)
    assert m.state_tensor().device.type == "cuda"
    assert torch.equal(m.confusion_matrix, run(p, t, 150).confusion_matrix)
    assert_close(m.compute(), numpy_reference([p], [t], 150, 255))


# -- real labels ---------------------------------------------------------------------------------
def test_real_ade20k_label_against_both_references():
    """A real ADE20K annotation (0 = other -> ignored, k -> k-1) and a prediction shifted by 3 pixels."""
    from PIL import Image

    path = SHARED / "data/ade20k/ADEChallengeData2016/annotations/validation/ADE_val_00000001.png"
    if not path.is_file():
        pytest.skip(f"{path} is not present (real samples live in ../shared beside the repository)")
    raw = np.asarray(Image.open(path), dtype=np.int64)
    target = np.where(raw == 0, 255, raw - 1)
    pred = np.roll(np.where(raw == 0, 0, raw - 1), shift=(3, -3), axis=(0, 1))
    got = run(pred.astype(np.uint8), target.astype(np.uint8), 150).compute()
    assert_close(got, numpy_reference([pred], [target], 150, 255))
    present = ~np.isnan(got["IoU"])
    assert 0 < present.sum() < 150  # a real image: most classes absent, so the NaN rule matters
    tm = MulticlassJaccardIndex(num_classes=150, ignore_index=255, average=None)(
        torch.from_numpy(pred), torch.from_numpy(target)).double().numpy()
    np.testing.assert_allclose(np.array(got["IoU"])[present], tm[present], atol=1e-6)
    assert np.all(tm[~present] == 0.0)


def dice_precision_recall_reference(preds, targets, C: int, ignore: int) -> dict:
    """Per-class Dice, precision and recall over the dataset in float64, from pixel counts (one loop per class)."""
    p = np.concatenate([np.asarray(x).ravel() for x in preds]).astype(np.int64)
    t = np.concatenate([np.asarray(x).ravel() for x in targets]).astype(np.int64)
    keep = t != ignore
    p, t = p[keep], t[keep]
    dice, prec, rec = [], [], []
    for c in range(C):
        tp, pc, gc = np.sum((p == c) & (t == c)), np.sum(p == c), np.sum(t == c)
        dice.append(2 * tp / (pc + gc) if pc + gc else np.nan)
        prec.append(tp / pc if pc else np.nan)
        rec.append(tp / gc if gc else np.nan)
    dice, prec, rec = (np.array(v, dtype=np.float64) for v in (dice, prec, rec))
    return {"Dice": dice, "Precision": prec, "Recall": rec, "mDice": np.nanmean(dice),
            "mPrecision": np.nanmean(prec), "mRecall": np.nanmean(rec)}


@pytest.mark.parametrize("seed, C", [(0, 5), (1, 19), (2, 150)])
def test_dice_precision_recall_match_the_numpy_reference(seed, C):
    p, t = random_maps(seed, C)
    p[0, :3, :3] = C + 4  # out-of-range predictions: misses of the true class, nobody's prediction
    m = SegmentationMetrics(C)
    m.update(p, t)
    got, ref = m.compute(), dice_precision_recall_reference([p], [t], C, 255)
    for k in ("Dice", "Precision", "Recall"):
        assert np.allclose(np.array(got[k], dtype=float), ref[k], atol=1e-12, equal_nan=True), k
    for k in ("mDice", "mPrecision", "mRecall"):
        assert got[k] == pytest.approx(float(ref[k]), abs=1e-12), k
    assert got["mRecall"] == got["mAcc"]


def test_dice_precision_recall_match_torchmetrics_where_defined():
    from torchmetrics.classification import MulticlassF1Score, MulticlassPrecision, MulticlassRecall

    C = 6
    p, t = random_maps(3, C, ignore_frac=0.0)
    p[p == 5] = 4  # class 5 is in the targets but never predicted: precision undefined here, 0 in torchmetrics
    m = SegmentationMetrics(C)
    m.update(p, t)
    got = m.compute()
    pt, tt = torch.from_numpy(p).reshape(-1), torch.from_numpy(t).reshape(-1)
    kw = {"num_classes": C, "average": None}
    f1, prec, rec = (cls(**kw)(pt, tt).numpy() for cls in (MulticlassF1Score, MulticlassPrecision, MulticlassRecall))
    assert np.allclose(got["Dice"], f1, atol=1e-6) and np.allclose(got["Recall"], rec, atol=1e-6)
    assert np.allclose(got["Precision"][:5], prec[:5], atol=1e-6)
    assert math.isnan(got["Precision"][5]) and prec[5] == 0.0 and got["Dice"][5] == 0.0


def test_dice_of_a_class_absent_everywhere_is_nan_and_left_out():
    t = np.array([[0, 0, 1, 1]])
    p = np.array([[0, 1, 1, 1]])
    got = metrics_from_confusion(confusion_matrix(p, t, 3))
    assert got["Dice"][:2] == pytest.approx([2 * 1 / 3, 2 * 2 / 5]) and math.isnan(got["Dice"][2])
    assert got["mDice"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert got["Precision"][:2] == pytest.approx([1.0, 2 / 3]) and got["Recall"][:2] == pytest.approx([0.5, 1.0])
