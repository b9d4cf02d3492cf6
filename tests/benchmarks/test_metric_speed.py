"""Metric engine speed: segbench's confusion matrix vs torchmetrics and a plain torch.bincount.

Run: .venv/bin/pytest tests/benchmarks/test_metric_speed.py --benchmark-enable -s
Targets (asserted only with --benchmark-enable): >= 10x torchmetrics' MulticlassJaccardIndex
(default arguments) and >= 2x a plain masked ``torch.bincount`` on int64 ``gt * C + pred``.
"""

from __future__ import annotations

import torch
from torchmetrics.classification import MulticlassJaccardIndex

from harness.metrics import SegmentationMetrics

from .conftest import best_of

C, N, H, W, IGNORE = 150, 8, 512, 512, 255


def make_maps(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    gt = torch.randint(0, C, (N, H, W), generator=g)
    gt[torch.rand((N, H, W), generator=g) < 0.1] = IGNORE
    noise = torch.rand((N, H, W), generator=g) < 0.3
    pred = torch.where(noise, torch.randint(0, C, (N, H, W), generator=g), torch.where(gt == IGNORE, 0, gt))
    return pred, gt


def plain_bincount(pred, gt):
    mask = gt != IGNORE
    return torch.bincount(gt[mask] * C + pred[mask], minlength=C * C).view(C, C)


def ours(pred, gt):
    m = SegmentationMetrics(C, ignore_index=IGNORE)
    m.update(pred, gt)
    return m.confusion_matrix


def torchmetrics_engine(pred, gt):
    m = MulticlassJaccardIndex(num_classes=C, ignore_index=IGNORE)
    m.update(pred, gt)
    return m.confmat


def test_confusion_matrix_engines(benchmark, enforce_targets):
    pred, gt = make_maps()
    ref = plain_bincount(pred, gt)
    assert torch.equal(ours(pred, gt), ref)
    assert torch.equal(torchmetrics_engine(pred, gt).long(), ref)
    benchmark(ours, pred, gt)
    pixels = N * H * W
    t_ours = best_of(lambda: ours(pred, gt))
    t_plain = best_of(lambda: plain_bincount(pred, gt))
    t_tm = best_of(lambda: torchmetrics_engine(pred, gt), repeats=2)
    print(f"\nmetric engine, {N}x{H}x{W} int64 maps, {C} classes, {torch.get_num_threads()} threads (CPU):")
    for name, t in (("segbench", t_ours), ("plain bincount", t_plain), ("torchmetrics", t_tm)):
        print(f"  {name:15s} {pixels / t / 1e6:8.1f} Mpix/s")
    print(f"  ratio vs torchmetrics: {t_tm / t_ours:.1f}x; vs plain bincount: {t_plain / t_ours:.1f}x")
    if enforce_targets:
        assert t_tm / t_ours >= 10
        assert t_plain / t_ours >= 2
