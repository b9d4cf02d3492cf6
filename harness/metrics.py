"""Confusion-matrix segmentation metrics: mIoU, aAcc, mAcc, fwIoU, per-class IoU and accuracy.

State. One int64 count matrix of shape (C, C + 1): rows are ground-truth classes, columns
predicted classes, and the extra last column counts predictions outside ``0..C-1`` (e.g. 255
from a model whose "other" class has no counterpart in the dataset). Such a pixel is a miss
for its true class: it counts in that class's ground truth and union, lowers its accuracy,
and is nobody's true positive. Pixels whose target equals ``ignore_index`` are not counted.
The state is a plain sum, so shards of a dataset (processes, ranks) combine by addition:
``SegmentationMetrics.state_tensor()`` can be all-reduced and put back with
``load_state_tensor()``, or two instances combined with ``merge()`` / ``+=``.

Conventions (mmsegmentation's). Intersections and unions are summed over the whole dataset
before dividing. A class in neither prediction nor ground truth has IoU NaN and is left out
of mIoU; a class with no ground-truth pixel has accuracy NaN and is left out of mAcc.
torchmetrics differs: ``MulticlassJaccardIndex(average=None)`` reports such a class as 0.0
(its ``average="macro"`` skips it, like mIoU here), and ``MulticlassAccuracy(average="macro")``
counts a class that is predicted but absent from the ground truth as accuracy 0.0, where
mAcc here leaves it out. All metrics are fractions in [0, 1]; NaN when undefined.

Dice, precision and recall come from the same dataset-level counts (mmsegmentation's mDice,
mPrecision, mRecall). One difference: mmsegmentation derives its F-score from precision and
recall, so a class present in the ground truth but never predicted has F-score NaN there (its
precision is 0/0); Dice here is 2 TP / (GT + P), which is 0.0 for that class and equals the
F-score wherever both are defined.

Speed. Both maps are fused into one bin index ``target * (C + 1) + pred`` and counted.
Ignored pixels are not removed with a boolean mask: they fall into their own histogram row,
dropped afterwards, and target values that are not classes are found from the counts of the
unused rows. On CUDA (or any non-CPU device) the whole batch is indexed by one
``torch.add(pred, target, alpha=C + 1)`` and counted by one ``torch.bincount``. On the CPU
the pixels go through in cache-sized blocks (~32k pixels), each checked and indexed with
numpy and counted into one histogram with ``index_add_``, all in the calling thread. None of
these kernels starts an OpenMP team: whole-tensor ATen kernels do, and when another process
holds a core their barriers stall, which costs far more on a busy machine than the team
gains on an idle one. docs/PERFORMANCE.md has the figures and the command that measures them.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

# Pixels per CPU block: two int64 maps and the int64 index stay in a core's L2 cache (measured best).
_BLOCK = 32768 - 64
# Bin indices are int32 while the histogram (rows x (C + 1) per image, times the images) stays below this.
_INT32_BINS = 2**31 - 1
# Target values below this bound (or below C, if larger) get their own histogram row.
_FAST_ROWS = 256
# Unsigned types torch stores but cannot scan or count: widened to int64 first.
_WIDEN = {torch.uint16, torch.uint32, torch.uint64}
# bootstrap_miou draws resamples in blocks of this many (resample, image) cells: ~128 MiB of float64.
_BOOT_CELLS = 2**24

_ONES = torch.ones(_BLOCK, dtype=torch.int64)  # index_add_ source: one count per pixel


def _label_tensor(x, name: str, device: torch.device | None) -> torch.Tensor:
    """``x`` (tensor, numpy array or nested list) as an integer tensor on ``device`` (if given).

    The result may share memory with ``x``; it is never written to.
    """
    if not isinstance(x, torch.Tensor):
        a = np.asarray(x)
        if a.dtype.kind not in "iu":
            raise ValueError(f"{name}: expected an integer label map, got numpy dtype {a.dtype}")
        if a.dtype.kind == "u" and a.dtype.itemsize > 1:
            a = a.astype(np.int64)
        elif not a.dtype.isnative or any(s < 0 for s in a.strides):
            a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))
        with warnings.catch_warnings():
            # a read-only array (e.g. np.broadcast_to) is fine: the tensor is only read
            warnings.simplefilter("ignore", UserWarning)
            x = torch.as_tensor(a)
    if x.dtype.is_floating_point or x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"{name}: expected an integer label map, got dtype {x.dtype}")
    if x.dtype in _WIDEN:
        x = x.to(torch.int64)
    if device is not None and x.device != device:
        x = x.to(device)
    return x


def _label_pair(pred, target, device: torch.device | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated (pred, target) tensors of equal shape on one device (``device``, else pred's)."""
    pred = _label_tensor(pred, "pred", device)
    target = _label_tensor(target, "target", device)
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}; "
                         "expected the same shape")
    if target.device != pred.device:
        target = target.to(pred.device)
    return pred, target


def _as_unsigned(x: np.ndarray) -> np.ndarray:
    """``x`` viewed as the unsigned type of its size: negative values read as huge, so one ``max()``
    checks both bounds."""
    return x.view(x.dtype.str.replace("i", "u")) if x.dtype.kind == "i" else x


class _Layout:
    """Histogram layout of one image: ``rows`` target rows x ``K = C + 1`` prediction columns.

    Rows 0..C-1 are the classes; rows C..spill-1 hold target values that are not classes
    (they must stay empty, except the ignore index's own row); row ``spill`` takes ignored
    pixels whose value has no row (a negative or very large ignore index). All are dropped.
    """

    def __init__(self, num_classes: int, ignore_index: int):
        self.C, self.K, self.ignore_index = num_classes, num_classes + 1, ignore_index
        self.spill = max(num_classes, _FAST_ROWS)
        self.rows = self.spill + 1
        self.bins = self.rows * self.K
        self.ignore_row = ignore_index if 0 <= ignore_index < self.spill else self.spill
        self.index_dtype = torch.int32 if self.bins <= _INT32_BINS else torch.int64

    def bad_target(self, value: int) -> ValueError:
        return ValueError(f"target value {value} is outside 0..{self.C - 1} and is not the "
                          f"ignore index {self.ignore_index}")

    def index(self, p: torch.Tensor, t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Bin index ``t * K + p`` of flat pixels ``p``, ``t`` written into ``out`` (same length)."""
        C = self.C
        if t.dtype != torch.uint8:  # uint8 values always have a row: nothing to check
            lo, hi = (int(v) for v in torch.aminmax(t))
            if lo < 0 or hi >= self.spill:
                t = t.long()  # compare with ignore_index and C without wrapping them into a narrow type
                bad = ((t < 0) | (t >= C)) & (t != self.ignore_index)
                if bool(bad.any()):
                    raise self.bad_target(int(t[bad][0]))
                t = torch.where(t == self.ignore_index, self.spill, t)
        plo, phi = (int(v) for v in torch.aminmax(p))
        if plo < 0:
            p = p.long()
            p = torch.where((p < 0) | (p > C), C, p)
        elif phi > C:
            p = p.clamp(max=C)
        if torch.promote_types(p.dtype, t.dtype).itemsize < out.element_size():
            t = t.to(out.dtype)  # the arithmetic happens in the inputs' type
        return torch.add(p, t, alpha=self.K, out=out)

    def index_numpy(self, p: np.ndarray, t: np.ndarray, out: np.ndarray, pu: np.ndarray,
                    tu: np.ndarray | None) -> np.ndarray:
        """:meth:`index` for a CPU block, in numpy (whose kernels never start a thread team).

        ``pu`` and ``tu`` are ``p`` and ``t`` seen through :func:`_as_unsigned` (``tu`` None for a
        uint8 target, whose values all have a row).
        """
        C = self.C
        if tu is not None and int(tu.max()) >= self.spill:  # a negative value also lands here
            t = t.astype(np.int64)
            bad = ((t < 0) | (t >= C)) & (t != self.ignore_index)
            if bad.any():
                raise self.bad_target(int(t[bad][0]))
            t = np.where(t == self.ignore_index, self.spill, t)
        if int(pu.max()) > C:
            p = p.astype(np.int64)
            p = np.where((p < 0) | (p > C), C, p)
        np.multiply(t, self.K, out=out, dtype=out.dtype)
        return np.add(out, p, out=out, dtype=out.dtype)

    def finish(self, counts: torch.Tensor) -> torch.Tensor:
        """(n, rows, K) histogram -> (n, C, K) counts; raises if a non-class target value was counted."""
        counts[:, self.ignore_row, :] = 0
        extra = counts[:, self.C:self.spill, :]
        if extra.numel() and bool((extra.numpy() if extra.device.type == "cpu" else extra).any()):
            per_row = extra.sum(dim=(0, 2)).cpu().numpy()
            raise self.bad_target(self.C + int(np.flatnonzero(per_row)[0]))
        return counts[:, :self.C, :]


def _counts_whole(p: torch.Tensor, t: torch.Tensor, layout: _Layout, num_images: int) -> torch.Tensor:
    """One fused index and one ``torch.bincount`` over all pixels (the path for CUDA and other devices)."""
    dtype = layout.index_dtype if layout.bins * num_images <= _INT32_BINS else torch.int64
    idx = layout.index(p, t, torch.empty(p.shape, dtype=dtype, device=p.device))
    if num_images > 1:
        offsets = torch.arange(num_images, dtype=dtype, device=idx.device).mul_(layout.bins)
        idx.view(num_images, -1).add_(offsets.view(num_images, 1))
    counts = torch.bincount(idx, minlength=layout.bins * num_images)
    return layout.finish(counts.view(num_images, layout.rows, layout.K))


def _counts_blocks(p: torch.Tensor, t: torch.Tensor, layout: _Layout, num_images: int) -> torch.Tensor:
    """CPU path: cache-sized blocks, each indexed in numpy and counted by ``index_add_``, in this thread."""
    # int8 read as uint8 tops out at 255: a negative value would pass the unsigned range checks
    pn, tn = (x.numpy().astype(np.int16) if x.dtype == torch.int8 else x.numpy() for x in (p, t))
    pu, tu = _as_unsigned(pn), (None if tn.dtype == np.uint8 else _as_unsigned(tn))
    per_image = pn.size // num_images
    n_blocks = -(-per_image // _BLOCK)
    hist = np.zeros(num_images * layout.bins, dtype=np.int64)
    hist_t = torch.from_numpy(hist)
    buf = np.empty(_BLOCK, dtype=np.int64)  # int64 arithmetic needs no cast: faster than int32 here
    buf_t = torch.from_numpy(buf)
    for i in range(num_images):
        image_hist = hist_t[i * layout.bins:(i + 1) * layout.bins]
        for j in range(n_blocks):
            a = i * per_image + per_image * j // n_blocks
            b = i * per_image + per_image * (j + 1) // n_blocks
            layout.index_numpy(pn[a:b], tn[a:b], buf[: b - a], pu[a:b], None if tu is None else tu[a:b])
            image_hist.index_add_(0, buf_t[: b - a], _ONES[: b - a])
    return layout.finish(hist_t.view(num_images, layout.rows, layout.K))


def pair_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255,
                num_images: int = 1) -> torch.Tensor:
    """Counts of (target, pred) pairs, as a (num_images, C, C + 1) int64 tensor on the inputs' device.

    ``pred`` and ``target`` are integer tensors of the same shape on the same device whose
    flattened pixels split into ``num_images`` equal contiguous parts (e.g. an (N, H, W) batch
    with ``num_images=N``); each part gets its own matrix. Column C counts predictions outside
    0..C-1; pixels with target ``ignore_index`` are dropped. Raises ValueError for any other
    target value outside 0..C-1.
    """
    C = num_classes
    t, p = target.reshape(-1), pred.reshape(-1)
    if t.numel() != p.numel():
        raise ValueError(f"pred has {p.numel()} elements, target {t.numel()}; expected the same number")
    if t.numel() == 0:
        return torch.zeros((num_images, C, C + 1), dtype=torch.int64, device=t.device)
    if num_images < 1 or t.numel() % num_images:
        raise ValueError(f"{t.numel()} pixels do not split into {num_images} equal images")
    layout = _Layout(C, ignore_index)
    if t.device.type == "cpu":
        return _counts_blocks(p, t, layout, num_images)
    return _counts_whole(p, t, layout, num_images)


def confusion_matrix(pred, target, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """(C, C) int64 CPU confusion matrix (rows ground truth, columns prediction) of one pair of maps.

    ``pred`` and ``target``: tensors or numpy arrays of the same shape, integer dtypes; pixels
    with target ``ignore_index`` are excluded. Predictions outside 0..C-1 are not in this matrix
    (``SegmentationMetrics`` keeps them as misses in an extra column).
    """
    pred, target = _label_pair(pred, target, None)
    return pair_counts(pred, target, num_classes, ignore_index)[0, :, :num_classes].cpu()


def metrics_from_confusion(cm: torch.Tensor | np.ndarray) -> dict:
    """Metrics from a (C, C) count matrix, or (C, C + 1) with out-of-range predictions last.

    Returns ``mIoU``, ``aAcc``, ``mAcc``, ``fwIoU``, ``mDice``, ``mPrecision``, ``mRecall`` (python
    floats, fractions in [0, 1], NaN when undefined) and the per-class lists ``IoU``, ``Acc``,
    ``Dice``, ``Precision``, ``Recall`` (NaN where undefined). Per class, over the whole dataset:
    Dice = F1 = 2 TP / (GT + P) (NaN when the class is in neither), Precision = TP / P (NaN when
    never predicted), Recall = TP / GT = Acc (NaN when absent from the ground truth); each mean
    leaves out the NaN classes. See the module docstring for the NaN convention.
    """
    a = np.asarray(cm.detach().cpu() if isinstance(cm, torch.Tensor) else cm)
    if a.ndim != 2 or a.shape[1] not in (a.shape[0], a.shape[0] + 1) or a.shape[0] < 1:
        raise ValueError(f"confusion matrix of shape {a.shape}: expected (C, C) or (C, C + 1) with C >= 1")
    if a.dtype.kind not in "iuf" or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError("confusion matrix: expected finite non-negative counts")
    a = a.astype(np.float64)
    C = a.shape[0]
    tp = np.diag(a[:, :C])
    gt = a.sum(axis=1)  # includes out-of-range predictions
    union = gt + a[:, :C].sum(axis=0) - tp
    total = gt.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt > 0, tp / gt, np.nan)
    predicted = a[:, :C].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(gt + predicted > 0, 2 * tp / (gt + predicted), np.nan)
        precision = np.where(predicted > 0, tp / predicted, np.nan)
    has_iou, has_gt = union > 0, gt > 0

    def mean(values: np.ndarray, defined: np.ndarray) -> float:
        return float(values[defined].mean()) if defined.any() else math.nan

    return {
        "mIoU": mean(iou, has_iou),
        "aAcc": float(tp.sum() / total) if total > 0 else math.nan,
        "mAcc": mean(acc, has_gt),
        "fwIoU": float(np.sum(gt[has_gt] * iou[has_gt]) / total) if total > 0 else math.nan,
        "mDice": mean(dice, has_iou),
        "mPrecision": mean(precision, predicted > 0),
        "mRecall": mean(acc, has_gt),
        "IoU": [float(x) for x in iou],
        "Acc": [float(x) for x in acc],
        "Dice": [float(x) for x in dice],
        "Precision": [float(x) for x in precision],
        "Recall": [float(x) for x in acc],
    }


class SegmentationMetrics:
    """Accumulates a confusion matrix over ``update`` calls; ``compute`` gives the metrics.

    Args:
        num_classes: C, the number of evaluated classes (0..C-1).
        ignore_index: target value excluded from every count.
        device: where counts are accumulated; inputs are moved there. Default: the device
            of the first inputs.
        keep_per_image: also keep per-image per-class intersection, union and ground-truth
            pixel counts (for a bootstrap over images, ``per_image()``). A 1-D or 2-D input
            is one image; for 3 or more dimensions the first one indexes images.

    Combining shards: the state is a plain sum. ``state_tensor()`` returns the (C, C + 1)
    int64 counts (on the accumulation device, so ``torch.distributed.all_reduce`` can sum it
    in place) and ``load_state_tensor(t)`` replaces them; ``merge(other)`` or ``self += other``
    adds another instance's counts and per-image records. Per-image records are not part of
    the state tensor: gather them separately (``per_image()``).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, device: str | torch.device | None = None,
                 keep_per_image: bool = False):
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.device = torch.device(device) if device is not None else None
        self.keep_per_image = keep_per_image
        self.reset()

    def reset(self) -> None:
        """Forget every count and per-image record."""
        self._cm: torch.Tensor | None = None
        self._per_image: list[np.ndarray] = []  # (n, 3, C) int64 blocks: intersection, union, gt

    def update(self, pred, target) -> None:
        """Add predictions and their targets.

        ``pred``, ``target``: tensors or numpy arrays of the same shape (any shape), integer
        dtypes, class indices 0..C-1. Target pixels equal to ``ignore_index`` are skipped; any
        other target value outside 0..C-1 raises ValueError naming it. Predictions outside
        0..C-1 count as misses of the pixel's true class.
        """
        pred, target = _label_pair(pred, target, self.device)
        C = self.num_classes
        if self.keep_per_image:
            n = pred.shape[0] if pred.dim() >= 3 else 1
            counts = pair_counts(pred, target, C, self.ignore_index, num_images=n)
            per = counts.cpu().numpy()
            tp = np.diagonal(per[:, :, :C], axis1=1, axis2=2)
            gt = per.sum(axis=2)
            union = gt + per[:, :, :C].sum(axis=1) - tp
            self._per_image.append(np.stack([tp, union, gt], axis=1))
            cm = torch.from_numpy(per.sum(axis=0)).to(counts.device)
        else:
            cm = pair_counts(pred, target, C, self.ignore_index)[0]
        if self._cm is None:
            with torch.inference_mode(False):  # a normal tensor, so later in-place sums work anywhere
                self._cm = cm.clone()
        else:
            self._cm += cm.to(self._cm.device)

    # -- state ---------------------------------------------------------------------------
    @property
    def confusion_matrix(self) -> torch.Tensor:
        """(C, C) int64 CPU tensor: rows ground truth, columns prediction (out-of-range column left out)."""
        return self.state_tensor()[:, : self.num_classes].cpu()

    def state_tensor(self) -> torch.Tensor:
        """The (C, C + 1) int64 counts (last column: out-of-range predictions), not a copy."""
        if self._cm is None:
            with torch.inference_mode(False):
                self._cm = torch.zeros((self.num_classes, self.num_classes + 1), dtype=torch.int64,
                                       device=self.device or "cpu")
        return self._cm

    def load_state_tensor(self, t: torch.Tensor) -> None:
        """Replace the counts by ``t`` (e.g. their all-reduced sum), a (C, C + 1) integer tensor."""
        expected = (self.num_classes, self.num_classes + 1)
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != expected:
            shape = tuple(t.shape) if hasattr(t, "shape") else type(t).__name__
            raise ValueError(f"state tensor of shape {shape}: expected {expected} (C, C + 1) counts")
        if t.dtype.is_floating_point or t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"state tensor of dtype {t.dtype}: expected integer counts")
        with torch.inference_mode(False):
            self._cm = t.to(torch.int64, copy=True)

    def merge(self, other: SegmentationMetrics) -> SegmentationMetrics:
        """Add ``other``'s counts and per-image records to this instance; returns self."""
        if not isinstance(other, SegmentationMetrics):
            raise TypeError(f"cannot merge {type(other).__name__} into SegmentationMetrics")
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(f"cannot merge metrics of num_classes={other.num_classes}, ignore_index="
                             f"{other.ignore_index} into num_classes={self.num_classes}, "
                             f"ignore_index={self.ignore_index}")
        if other.keep_per_image != self.keep_per_image:
            raise ValueError("cannot merge metrics that keep per-image records with metrics that do not")
        mine = self.state_tensor()
        with torch.inference_mode(False):
            self._cm = mine + other.state_tensor().to(mine.device)
        self._per_image = self._per_image + other._per_image
        return self

    def __iadd__(self, other: SegmentationMetrics) -> SegmentationMetrics:
        return self.merge(other)

    def per_image(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-image (intersection, union, ground-truth pixels) int64 arrays of shape (N_images, C)."""
        if not self._per_image:
            empty = np.zeros((0, self.num_classes), dtype=np.int64)
            return empty, empty.copy(), empty.copy()
        stacked = np.concatenate(self._per_image)
        return stacked[:, 0], stacked[:, 1], stacked[:, 2]

    def compute(self) -> dict:
        """``mIoU``, ``aAcc``, ``mAcc``, ``fwIoU`` (fractions) and per-class ``IoU``, ``Acc`` lists.

        NaN where undefined (see the module docstring); never raises for lack of pixels.
        """
        return metrics_from_confusion(self.state_tensor())


def bootstrap_miou(inter: np.ndarray, union: np.ndarray, n_boot: int = 1000, alpha: float = 0.05,
                   seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the dataset-level mIoU, resampling images.

    ``inter``, ``union``: per-image per-class intersection and union pixel counts, shape
    (N_images, C). Each of ``n_boot`` resamples draws N images with replacement, sums their
    counts and takes the mIoU as :func:`metrics_from_confusion` does (classes with zero union
    left out). Returns the (alpha/2, 1 - alpha/2) percentiles as fractions; (NaN, NaN) when
    there is no image or no class with pixels. Deterministic for a given ``seed``.
    """
    inter = np.asarray(inter, dtype=np.float64)
    union = np.asarray(union, dtype=np.float64)
    if inter.ndim != 2 or inter.shape != union.shape:
        raise ValueError(f"inter shape {inter.shape} and union shape {union.shape}: "
                         "expected the same (N_images, C) shape")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    n = inter.shape[0]
    if n == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    block = max(1, _BOOT_CELLS // n)
    mious = []
    for start in range(0, n_boot, block):
        # how many times each image is drawn, per resample
        draws = rng.multinomial(n, np.full(n, 1.0 / n), size=min(block, n_boot - start)).astype(np.float64)
        si, su = draws @ inter, draws @ union
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(su > 0, si / su, np.nan)
        defined = ~np.all(np.isnan(iou), axis=1)
        mious.append(np.nanmean(iou[defined], axis=1))
    miou = np.concatenate(mious)
    if miou.size == 0:
        return math.nan, math.nan
    lo, hi = np.percentile(miou, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)
