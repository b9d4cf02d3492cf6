"""Calibration statistics against a float64 numpy reference written here (resize of the whole
logit tensor, softmax, binning from scratch), torchmetrics' calibration error, hand-computed
values on edge cases, and the real samples (real labels, cropped; the LiteRT models are label-map models)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.calibration import LABEL_MAP_REASON, CalibrationMetrics, unsupported_reason
from harness.models.postprocess import upsample_argmax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_litert import REAL, load_real  # noqa: E402


def reference(logits_list, targets, C, mode="bilinear", bins=15, ignore=255) -> dict:
    """float64 statistics: each image's logits resized whole, softmax, bins (m/B, (m+1)/B] by loops."""
    conf, correct, nll, brier = [], [], [], []
    for logits, t in zip(logits_list, targets, strict=True):
        t = np.asarray(t)
        z = F.interpolate(torch.as_tensor(logits, dtype=torch.float64)[None], size=t.shape, mode=mode,
                          align_corners=False)[0].numpy() if logits.shape[1:] != t.shape else np.asarray(
                              logits, np.float64)
        p = np.exp(z - z.max(0))
        p /= p.sum(0)
        keep = t != ignore
        tk = t[keep]
        pk = p[:, keep]
        onehot = np.zeros_like(pk)
        onehot[tk, np.arange(tk.size)] = 1.0
        conf.append(pk.max(0))
        correct.append(pk.argmax(0) == tk)
        nll.append(-np.log(pk[tk, np.arange(tk.size)]))
        brier.append(((pk - onehot) ** 2).sum(0))
    conf, correct = np.concatenate(conf), np.concatenate(correct)
    n = conf.size
    near_edge = int(np.sum(np.abs(conf * bins - np.round(conf * bins)) < 1e-5 * bins))
    ece, gaps, counts = 0.0, [], []
    for m in range(bins):
        lo, hi = m / bins, (m + 1) / bins
        inb = (conf > lo) & (conf <= hi)
        counts.append(int(inb.sum()))
        if inb.any():
            gap = abs(correct[inb].mean() - conf[inb].mean())
            ece += inb.sum() / n * gap
            gaps.append(gap)
    return {"ECE": ece if n else math.nan, "MCE": max(gaps) if gaps else math.nan,
            "NLL": np.concatenate(nll).mean() if n else math.nan,
            "Brier": np.concatenate(brier).mean() if n else math.nan, "count": counts, "near_edge": near_edge,
            "accuracy": correct.mean() if n else math.nan}


def ours(logits_list, targets, C, mode="bilinear", bins=15, **kw) -> dict:
    m = CalibrationMetrics(C, n_bins=bins)
    for z, t in zip(logits_list, targets, strict=True):
        m.update_logits(torch.as_tensor(z), t, mode=mode, **kw)
    return m.compute()


def check(logits_list, targets, C, mode="bilinear", bins=15, tol=2e-6, **kw) -> dict:
    r, o = reference(logits_list, targets, C, mode, bins), ours(logits_list, targets, C, mode, bins, **kw)
    # float32 confidences within 1e-5 of a bin edge may fall on the other side of it than in float64
    assert np.abs(np.subtract(o["reliability"]["count"], r["count"])).sum() <= 2 * r["near_edge"]
    for key in ("ECE", "MCE", "NLL", "Brier", "accuracy"):
        if math.isnan(r[key]):
            assert math.isnan(o[key]), key
        else:
            assert o[key] == pytest.approx(r[key], abs=tol), key
    return o


def random_case(seed, C=6, low=(9, 13), size=(37, 50), scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn((C, *low), generator=g) * scale
    target = torch.randint(0, C, size, generator=g).numpy()
    target[torch.rand(size, generator=g).numpy() < 0.1] = 255
    return logits, target


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_low_resolution_logits_match_the_reference(mode):
    cases = [random_case(s) for s in range(3)]
    check([c[0] for c in cases], [c[1] for c in cases], 6, mode)


def test_channel_chunks_change_nothing_and_labels_equal_the_postprocess():
    logits, target = random_case(5, C=40, low=(11, 8), size=(60, 45))
    whole = CalibrationMetrics(40)
    labels = whole.update_logits(logits, target)
    chunked = CalibrationMetrics(40)
    labels_c = chunked.update_logits(logits, target, max_bytes=60 * 45 * 4 * 3)  # 3 channels per chunk
    assert torch.equal(labels, upsample_argmax(logits, (60, 45), "bilinear", shortcut=False))
    assert torch.equal(labels, labels_c)
    assert torch.allclose(whole.state_tensor(), chunked.state_tensor(), rtol=1e-6, atol=1e-6)
    check([logits], [target], 40, max_bytes=60 * 45 * 4 * 3)


def test_logits_at_label_resolution_and_batches():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn((3, 4, 20, 24), generator=g) * 2
    targets = torch.randint(0, 4, (3, 20, 24), generator=g)
    batch = CalibrationMetrics(4)
    preds = batch.update_logits(logits, targets)
    assert preds.shape == (3, 20, 24) and torch.equal(preds, logits.argmax(1))
    one = CalibrationMetrics(4)
    for i in range(3):
        one.update_logits(logits[i], targets[i].numpy())
    assert torch.allclose(batch.state_tensor(), one.state_tensor(), rtol=0, atol=1e-9)
    check(list(logits), list(targets.numpy()), 4)


def test_torchmetrics_calibration_error_agrees():
    tm = pytest.importorskip("torchmetrics.classification", reason="torchmetrics is not installed")
    logits, target = random_case(7, C=5, low=(10, 10), size=(40, 40))
    mine = ours([logits], [target], 5)
    z = F.interpolate(logits[None], size=(40, 40), mode="bilinear", align_corners=False)[0]
    probs = z.softmax(0).reshape(5, -1).T
    t = torch.as_tensor(target).reshape(-1)
    for norm, key in (("l1", "ECE"), ("max", "MCE")):
        ref = tm.MulticlassCalibrationError(num_classes=5, n_bins=15, norm=norm, ignore_index=255)(probs, t)
        assert mine[key] == pytest.approx(float(ref), abs=1e-5)


def test_constant_confidence_by_hand():
    """Equal logits over 4 classes: confidence 1/4 everywhere (bin 3 of 15), prediction class 0."""
    target = np.array([[0, 1, 2, 3], [0, 0, 255, 1]])
    o = check([torch.zeros(4, 2, 4)], [target], 4)
    assert o["reliability"]["count"][3] == 7 and sum(o["reliability"]["count"]) == 7
    assert o["accuracy"] == pytest.approx(3 / 7)
    assert o["ECE"] == pytest.approx(abs(3 / 7 - 0.25)) and o["MCE"] == pytest.approx(abs(3 / 7 - 0.25))
    assert o["NLL"] == pytest.approx(math.log(4)) and o["Brier"] == pytest.approx(0.75)


def test_confidence_on_a_bin_edge_goes_to_the_lower_bin():
    """Two equal logits: confidence exactly 0.5, the edge between bins 1 and 2 of 4: right-closed -> bin 1."""
    o = ours([torch.zeros(2, 3, 3)], [np.zeros((3, 3), np.int64)], 2, bins=4)
    assert o["reliability"]["count"] == [0, 9, 0, 0]
    assert o["ECE"] == pytest.approx(0.5) and o["reliability"]["edges"] == [0, 0.25, 0.5, 0.75, 1.0]


def test_perfect_confident_predictions_and_a_single_class():
    target = np.array([[0, 1], [2, 1]])
    logits = torch.as_tensor(np.eye(3)[target].transpose(2, 0, 1) * 60.0, dtype=torch.float32)
    o = check([logits], [target], 3, tol=1e-9)
    assert o["ECE"] < 1e-12 and o["NLL"] < 1e-12 and o["Brier"] < 1e-12 and o["accuracy"] == 1.0
    assert o["reliability"]["count"][-1] == 4
    one = check([torch.randn(1, 3, 3)], [np.zeros((6, 6), np.int64)], 1, tol=1e-9)
    assert one["ECE"] == 0.0 and one["NLL"] == 0.0 and one["accuracy"] == 1.0


def test_all_ignored_pixels_give_nan_without_error():
    o = check([torch.randn(3, 4, 4)], [np.full((8, 8), 255)], 3)
    assert o["pixels"] == 0 and all(math.isnan(o[k]) for k in ("ECE", "MCE", "NLL", "Brier"))
    assert all(math.isnan(a) for a in o["reliability"]["accuracy"])


def test_ignored_pixels_with_infinite_logits_do_not_leak():
    logits = torch.zeros(2, 2, 2)
    logits[0, 0, 0] = -math.inf
    logits[1, 0, 0] = -math.inf  # a NaN softmax at an ignored pixel
    o = ours([logits], [np.array([[255, 0], [1, 0]])], 2)
    assert o["pixels"] == 3 and o["NLL"] == pytest.approx(math.log(2))


def test_state_sums_across_shards():
    cases = [random_case(s, C=4, low=(6, 6), size=(18, 18)) for s in range(4)]
    full, a, b = CalibrationMetrics(4), CalibrationMetrics(4), CalibrationMetrics(4)
    for i, (z, t) in enumerate(cases):
        full.update_logits(z, t)
        (a if i % 2 else b).update_logits(z, t)
    reduced = CalibrationMetrics(4)
    reduced.load_state_tensor(a.state_tensor() + b.state_tensor())
    a += b
    for m in (a, reduced):
        assert torch.allclose(m.state_tensor(), full.state_tensor(), rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="settings"):
        a.merge(CalibrationMetrics(4, n_bins=10))
    with pytest.raises(ValueError, match=r"state tensor of shape \(3,\): expected \(47,\)"):
        a.load_state_tensor(torch.zeros(3, dtype=torch.float64))


def test_bad_inputs_name_the_value():
    m = CalibrationMetrics(3)
    with pytest.raises(ValueError, match=r"target value 5 is outside 0..2 and is not the ignore index 255"):
        m.update_logits(torch.zeros(3, 2, 2), np.full((4, 4), 5))
    with pytest.raises(ValueError, match=r"expected 3 channels"):
        m.update_logits(torch.zeros(4, 2, 2), np.zeros((4, 4), np.int64))
    with pytest.raises(ValueError, match=r"expected a float tensor \(C, h, w\) or \(N, C, h, w\)"):
        m.update_logits(torch.zeros(3, 2, 2, dtype=torch.int64), np.zeros((4, 4), np.int64))
    with pytest.raises(ValueError, match=r"n_bins must be a positive integer"):
        CalibrationMetrics(3, n_bins=0)


@pytest.mark.parametrize("dataset", list(REAL))
def test_real_samples(dataset):
    """The real LiteRT model is a label-map model: it says why it cannot be calibrated. The real labels
    (sizes, ignore pixels) with quarter-resolution logits built from its predictions match the reference."""
    ds, model = load_real(dataset)
    assert unsupported_reason(model) == LABEL_MAP_REASON and "cannot be calibrated" in LABEL_MAP_REASON
    C = ds.num_classes
    g = torch.Generator().manual_seed(0)
    logits, labels = [], []
    for i in range(len(ds)):
        s = ds.load(i)
        pred = torch.as_tensor(model.predict([s.image])[0][:160, :200]).clamp(max=C)  # 255 (no class) -> an extra channel
        onehot = F.one_hot(pred, C + 1).permute(2, 0, 1)[:C].float()[None]
        low = F.avg_pool2d(onehot, 4, ceil_mode=True)[0] * 4.0 + 0.3 * torch.randn(
            (C, -(-pred.shape[0] // 4), -(-pred.shape[1] // 4)), generator=g)
        logits.append(low)
        labels.append(s.label[:160, :200])  # a crop keeps the float64 reference small (150 classes)
    o = check(logits, labels, C, tol=1e-5)
    assert o["pixels"] == sum(int((lab != 255).sum()) for lab in labels)


def test_logit_models_are_supported():
    class Logits:
        output_kind = "logits"
    assert unsupported_reason(Logits()) is None


def test_given_labels_set_the_confidence_and_correctness():
    """Confidence is the probability of the given label: logits (1, 0), labels all 1 -> 1 / (1 + e)."""
    logits = torch.stack([torch.ones(3, 3), torch.zeros(3, 3)])
    target = np.array([[1, 1, 0], [0, 0, 0], [1, 255, 0]])
    m = CalibrationMetrics(2, n_bins=10)
    out = m.update_logits(logits, target, pred=torch.ones(3, 3, dtype=torch.int64))
    assert torch.equal(out, torch.ones(3, 3, dtype=torch.int64))
    o = m.compute()
    q = 1 / (1 + math.e)
    assert o["reliability"]["count"][2] == 8 and o["accuracy"] == pytest.approx(3 / 8)
    assert o["ECE"] == pytest.approx(abs(3 / 8 - q), abs=1e-7)
    argmax = CalibrationMetrics(2, n_bins=10)
    assert torch.equal(argmax.update_logits(logits, target), torch.zeros(3, 3, dtype=torch.int64))
    assert argmax.compute()["reliability"]["count"][7] == 8  # 1 - q = 0.731 in (0.7, 0.8]


def test_logits_are_not_modified():
    logits = torch.randn(2, 5, 4, 6)
    copy = logits.clone()
    CalibrationMetrics(5).update_logits(logits, torch.zeros(2, 4, 6, dtype=torch.int64))  # label resolution
    CalibrationMetrics(5).update_logits(logits, torch.zeros(2, 8, 12, dtype=torch.int64))
    assert torch.equal(logits, copy)


@pytest.mark.parametrize("by_label", [True, False])
def test_both_ways_of_reading_label_logits(by_label):
    """Sorted by label (the CPU's way) and gathered everywhere (the device's way) agree with the reference."""
    logits, target = random_case(11, C=30, low=(9, 7), size=(41, 33))
    m = CalibrationMetrics(30)
    m.pick_by_label = by_label
    m.update_logits(logits, target, max_bytes=41 * 33 * 4 * 7)  # chunks of 7 channels
    r = reference([logits], [target], 30)
    o = m.compute()
    for key in ("ECE", "NLL", "Brier", "accuracy"):
        assert o[key] == pytest.approx(r[key], abs=2e-6), key
