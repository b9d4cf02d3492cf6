"""Confusion-matrix segmentation metrics: mIoU, aAcc, mAcc, fwIoU, per-class IoU and accuracy.

The state is one integer matrix ``cm`` of shape (C, C + 1): rows are ground-truth classes,
columns predicted classes, and the extra last column counts predictions outside
``0..C-1`` (e.g. 255 from a model whose "other" class has no counterpart): such a pixel
is a miss for its true class (it counts in that class's ground truth and union) and nobody's
true positive. Pixels whose target equals ``ignore_index`` are not counted at all.

Conventions (mmsegmentation's): intersections and unions are summed over the whole dataset
before dividing; a class that appears in neither prediction nor ground truth has IoU NaN
and is left out of the mean (torchmetrics' JaccardIndex reports 0.0 for it instead, which
lowers the mean); a class with no ground-truth pixel has accuracy NaN.

Speed: the fused index ``target * (C + 1) + pred`` is built in int32 with ignored pixels
sent to a row that is dropped afterwards, so no boolean mask is materialised and
``torch.bincount`` runs on the device holding the inputs (see docs/PERFORMANCE.md).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _as_tensor(x, device: torch.device | None) -> torch.Tensor:
    t = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"expected an integer label map, got dtype {t.dtype}")
    return t.to(device) if device is not None and t.device != device else t


def fused_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int,
                 groups: torch.Tensor | None = None, num_groups: int = 1) -> torch.Tensor:
    """Counts of (target, pred) pairs as a (num_groups, C, C + 1) int64 tensor.

    ``groups`` (same shape as the inputs, values in 0..num_groups-1) splits the counts, e.g.
    per image. Raises ValueError for target values outside 0..C-1 that are not ``ignore_index``.
    """
    C = num_classes
    t = target.reshape(-1)
    p = pred.reshape(-1)
    if t.numel() != p.numel():
        raise ValueError(f"pred has {p.numel()} elements, target {t.numel()}")
    if t.dtype != torch.uint8 and t.numel():
        lo, hi = torch.aminmax(t)
        if int(lo) >= 0 and int(hi) <= 255:
            t = t.to(torch.uint8)  # one narrowing pass; the uint8 path below checks values
    if t.dtype == torch.uint8 and C <= ignore_index <= 255:
        # Fast path: rows 0..255 exist; the ignore row is dropped and the other rows >= C must be empty.
        rows = 256
        t32 = t.to(torch.int32)
    else:
        rows = C + 1  # row C collects ignored pixels and is dropped
        bad = ((t < 0) | (t >= C)) & (t != ignore_index)
        if bool(bad.any()):
            v = int(t[bad][0])
            raise ValueError(f"target value {v} is outside 0..{C - 1} and is not the ignore index {ignore_index}")
        t32 = torch.where(t == ignore_index, C, t).to(torch.int32)
    bins = rows * (C + 1)
    plo, phi = torch.aminmax(p) if p.numel() else (torch.tensor(0), torch.tensor(0))
    if int(plo) >= 0 and int(phi) <= C:
        p32 = p.to(torch.int32)  # every prediction already in 0..C
    else:
        p32 = torch.where((p < 0) | (p > C), C, p).to(torch.int32)
    idx = t32.mul_(C + 1).add_(p32)  # t32 is always a fresh tensor here
    if groups is not None:
        g = groups.reshape(-1).to(device=idx.device, dtype=torch.int64)
        counts = torch.bincount(idx.to(torch.int64) + g * bins, minlength=bins * num_groups)
    else:
        counts = torch.bincount(idx, minlength=bins)
    counts = counts.view(num_groups, rows, C + 1)
    if rows == 256:
        extra = counts[:, C:, :].sum(dim=(0, 2))
        extra[ignore_index - C] = 0  # the ignore row
        if bool((extra > 0).any()):
            v = C + int(torch.nonzero(extra)[0])
            raise ValueError(f"target value {v} is outside 0..{C - 1} and is not the ignore index {ignore_index}")
    return counts[:, :C, :].to(torch.int64)


def confusion_matrix(pred, target, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """(C, C) int64 confusion matrix (rows ground truth, columns prediction), ignore excluded.

    Predictions outside 0..C-1 are not in this matrix (see :class:`SegmentationMetrics`).
    """
    pred, target = _as_tensor(pred, None), _as_tensor(target, None)
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    target = target.to(pred.device)
    return fused_counts(pred, target, num_classes, ignore_index)[0, :, :num_classes].cpu()


def metrics_from_confusion(cm: torch.Tensor | np.ndarray) -> dict:
    """Metrics from a (C, C) or (C, C + 1) count matrix (the extra column: out-of-range predictions).

    Returns mIoU, aAcc, mAcc, fwIoU (floats, fractions; NaN when undefined), IoU and Acc
    (per-class lists with NaN where undefined).
    """
    cm = np.asarray(cm.cpu() if isinstance(cm, torch.Tensor) else cm, dtype=np.float64)
    C = cm.shape[0]
    tp = np.diag(cm[:, :C])
    gt = cm.sum(axis=1)
    pr = cm[:, :C].sum(axis=0)
    union = gt + pr - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)
        acc = np.where(gt > 0, tp / np.where(gt > 0, gt, 1), np.nan)
    total = gt.sum()
    valid = union > 0
    return {
        "mIoU": float(np.nanmean(iou)) if valid.any() else math.nan,
        "aAcc": float(tp.sum() / total) if total > 0 else math.nan,
        "mAcc": float(np.nanmean(acc)) if (gt > 0).any() else math.nan,
        "fwIoU": float(np.sum((gt / total)[valid] * iou[valid])) if total > 0 else math.nan,
        "IoU": [float(x) for x in iou],
        "Acc": [float(x) for x in acc],
    }


class SegmentationMetrics:
    """Accumulates a confusion matrix over ``update`` calls; ``compute`` gives the metrics.

    Args:
        num_classes: C, the number of evaluated classes (0..C-1).
        ignore_index: target value excluded from every count.
        device: where counts are accumulated (default: the device of the first inputs).
        keep_per_image: also keep per-image per-class intersections and unions (for a
            bootstrap over images); each (H, W) map, or each item of an (N, H, W) batch, is one image.

    The state is a plain sum: ``state_tensor()`` / ``load_state_tensor()`` expose it so
    processes can all-reduce it; ``merge(other)`` (or ``+=``) adds another instance's counts.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, device: str | torch.device | None = None,
                 keep_per_image: bool = False):
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.device = torch.device(device) if device is not None else None
        self.keep_per_image = keep_per_image
        self.reset()

    def reset(self) -> None:
        self._cm: torch.Tensor | None = None
        self._inter: list[np.ndarray] = []
        self._union: list[np.ndarray] = []
        self._gt: list[np.ndarray] = []

    def update(self, pred, target) -> None:
        """Add a prediction and its target: tensors or arrays of the same shape, integer dtypes."""
        pred, target = _as_tensor(pred, self.device), _as_tensor(target, self.device)
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
        target = target.to(pred.device)
        C = self.num_classes
        if self.keep_per_image:
            n = pred.shape[0] if pred.dim() == 3 else 1
            groups = None
            if n > 1:
                groups = torch.arange(n, device=pred.device).view(n, 1, 1).expand_as(pred)
            counts = fused_counts(pred, target, C, self.ignore_index, groups=groups, num_groups=n)
            per = counts.cpu().numpy()
            tp = np.diagonal(per[:, :, :C], axis1=1, axis2=2)
            gt = per.sum(axis=2)
            pr = per[:, :, :C].sum(axis=1)
            self._inter.extend(tp.astype(np.int64))
            self._union.extend((gt + pr - tp).astype(np.int64))
            self._gt.extend(gt.astype(np.int64))
            cm = counts.sum(0)
        else:
            cm = fused_counts(pred, target, C, self.ignore_index)[0]
        self._cm = cm if self._cm is None else self._cm + cm.to(self._cm.device)

    # -- state ---------------------------------------------------------------------
    @property
    def confusion_matrix(self) -> torch.Tensor:
        """(C, C) int64 CPU tensor: rows ground truth, columns prediction (out-of-range column dropped)."""
        return self.state_tensor()[:, : self.num_classes].cpu()

    def state_tensor(self) -> torch.Tensor:
        """The (C, C + 1) int64 counts (last column: out-of-range predictions), for all-reduce."""
        if self._cm is None:
            return torch.zeros((self.num_classes, self.num_classes + 1), dtype=torch.int64,
                               device=self.device or "cpu")
        return self._cm

    def load_state_tensor(self, t: torch.Tensor) -> None:
        """Replace the counts (e.g. by their all-reduced sum)."""
        expected = (self.num_classes, self.num_classes + 1)
        if tuple(t.shape) != expected:
            raise ValueError(f"state tensor shape {tuple(t.shape)} is not {expected}")
        self._cm = t.to(torch.int64)

    def merge(self, other: SegmentationMetrics) -> SegmentationMetrics:
        """Add ``other``'s counts (and per-image records) to this instance; returns self."""
        if other.num_classes != self.num_classes or other.ignore_index != self.ignore_index:
            raise ValueError("cannot merge metrics with different num_classes or ignore_index")
        mine = self.state_tensor()
        self._cm = mine + other.state_tensor().to(mine.device)
        self._inter += other._inter
        self._union += other._union
        self._gt += other._gt
        return self

    __iadd__ = merge

    def per_image(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-image (intersection, union, ground-truth count) arrays of shape (N_images, C)."""
        C = self.num_classes
        if not self._inter:
            empty = np.zeros((0, C), dtype=np.int64)
            return empty, empty, empty
        return np.stack(self._inter), np.stack(self._union), np.stack(self._gt)

    def compute(self) -> dict:
        """mIoU, aAcc, mAcc, fwIoU (fractions in [0, 1]), IoU and Acc per class (NaN where undefined)."""
        return metrics_from_confusion(self.state_tensor())


def bootstrap_miou(inter: np.ndarray, union: np.ndarray, n_boot: int = 1000, alpha: float = 0.05,
                   seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the dataset-level mIoU, resampling images with replacement.

    ``inter`` and ``union`` are (N_images, C) per-image per-class counts; each resample sums
    them over its images and takes the NaN-excluding mean IoU, as the point estimate does.
    """
    inter = np.asarray(inter, dtype=np.float64)
    union = np.asarray(union, dtype=np.float64)
    n = inter.shape[0]
    if n == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    si, su = weights @ inter, weights @ union
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(su > 0, si / np.where(su > 0, su, 1), np.nan)
    valid = ~np.all(np.isnan(iou), axis=1)
    miou = np.full(n_boot, np.nan)
    miou[valid] = np.nanmean(iou[valid], axis=1)
    miou = miou[~np.isnan(miou)]
    if miou.size == 0:
        return math.nan, math.nan
    lo, hi = np.percentile(miou, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)
