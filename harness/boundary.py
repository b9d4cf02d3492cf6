"""Boundary quality of semantic segmentation: Boundary IoU and trimap accuracy / IoU.

Boundary IoU (Cheng, Girshick, Dollar, Berg, Kirillov, CVPR 2021), per class ``c``: with
``G = (target == c)``, ``P = (pred == c)`` and ``X_d`` the pixels of mask ``X`` within distance
``d`` of its contour, ``BIoU_c = |G_d & P_d| / |G_d | P_d|``. As in the reference code
(``boundary_iou.utils.boundary_utils.mask_to_boundary``: ``mask - erode(pad(mask, 1), 3x3, d times)``),
distance is the chessboard (L-inf) distance, pixels just outside the image count as outside the
mask (so a mask touching the image border has a boundary there), and ``d = max(1,
round(0.02 * image diagonal))`` pixels per image by default. The contour band of a class is thus
the class's pixels having a pixel of another value, or the outside of the image, within ``d``.
Intersections and unions are summed over the dataset before dividing, like mIoU; a class with
an empty union has BIoU NaN and is left out of mBIoU. Pixels whose target is ``ignore_index`` are
not counted (they still count as "another value" when the bands are found); predictions outside
0..C-1 belong to no class.

Trimap (segmentation-refinement papers; e.g. Kohli et al. 2009, DeepLab): the band of width
``w`` is every pixel with a different ground-truth value within chessboard distance ``w``
(windows clipped to the image: the border is no boundary). Inside each band: pixel accuracy
(``trimap aAcc``) and per-class IoU summed over the dataset (``trimap mIoU``), ignore pixels excluded.

Computation (any device, one pass): a pixel is within ``r`` of another value exactly when the
(2r+1)^2 window around it holds two values, i.e. its window maximum differs from its window
minimum. Window extrema are separable (rows, then columns) and each 1-D running extremum costs
O(1) per pixel whatever ``r`` (van Herk / Gil-Werman: blocks of 2r+1, prefix and suffix
``cummax``). Counting is one ``bincount`` per quantity; no host synchronisation but the check of
target values. State: int64 sums, see :class:`BoundaryMetrics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from harness.metrics import _label_pair
from harness.summable import SummableState
from harness.threads import one_thread_on

DILATION_RATIO = 0.02  # Boundary IoU: d = ratio x image diagonal
TRIMAP_WIDTHS = (1, 2, 5, 10, 20, 40)  # pixels


def dilation_pixels(height: int, width: int, ratio: float = DILATION_RATIO) -> int:
    """The reference's band width in pixels: ``max(1, int(round(ratio * sqrt(H^2 + W^2))))``."""
    return max(1, int(round(ratio * math.sqrt(height**2 + width**2))))


def _window_extreme(x: torch.Tensor, r: int, dim: int, op) -> torch.Tensor:
    """``op`` (``torch.maximum`` or ``torch.minimum``) of ``x`` over the clipped window [i - r, i + r]
    along ``dim``, exact for any dtype.

    Edge values are repeated r times at both ends (a clipped window's extreme equals the extreme
    of the full window over the repeated edges); then windows of 2, 4, ... 2^j elements are built by
    doubling (one ``op`` each) and a window of 2r + 1 is the ``op`` of two overlapping 2^j windows.
    """
    if r == 0:
        return x
    n, k = x.shape[dim], 2 * r + 1
    edge = list(x.shape)
    edge[dim] = r
    y = torch.cat([x.narrow(dim, 0, 1).expand(edge), x, x.narrow(dim, n - 1, 1).expand(edge)], dim)
    m, p = y, 1
    while 2 * p <= k:
        length = m.shape[dim] - p
        m = op(m.narrow(dim, 0, length), m.narrow(dim, p, length))  # m[i]: extreme of y[i .. i + 2p - 1]
        p *= 2
    return op(m.narrow(dim, 0, n), m.narrow(dim, k - p, n))


def _grow(hi: torch.Tensor, lo: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Window maximum and minimum grown by ``r`` in both image axes (clipped (2r+1)^2 windows compose:
    radius a then radius b is radius a + b)."""
    for dim in (-1, -2):
        hi, lo = _window_extreme(hi, r, dim, torch.maximum), _window_extreme(lo, r, dim, torch.minimum)
    return hi, lo


def near_other_values(labels: torch.Tensor, radii: Sequence[int]) -> dict[int, torch.Tensor]:
    """For each radius r: bool map of the pixels of integer ``labels`` (N, H, W) with a different
    value within chessboard distance r inside the image (window maximum != window minimum)."""
    out, hi, lo, done = {}, labels, labels, 0
    for r in sorted(set(radii)):
        hi, lo = _grow(hi, lo, r - done)
        out[r], done = hi != lo, r
    return out


def _wide(x: torch.Tensor) -> torch.Tensor:
    """An integer label map as int32, or int64 when it is wider (values are compared, never wrapped)."""
    return x.long() if x.dtype.itemsize > 4 else x.int()


def _code_dtype(num_classes: int) -> torch.dtype:
    """The narrowest integer type holding codes 0..C (window extremes read less memory)."""
    return torch.uint8 if num_classes < 255 else torch.int16 if num_classes < 2**15 - 1 else torch.int32


def image_frame(shape: tuple[int, ...], d: int, device: torch.device) -> torch.Tensor:
    """bool (H, W): pixels within chessboard distance ``d`` of the outside of an (H, W) image."""
    h, w = shape[-2:]
    rows, cols = torch.arange(h, device=device), torch.arange(w, device=device)
    near_row = (rows < d) | (rows >= h - d)
    near_col = (cols < d) | (cols >= w - d)
    return near_row[:, None] | near_col[None, :]


class BoundaryMetrics(SummableState):
    """Accumulates Boundary IoU and trimap counts over ``update`` calls; ``compute`` gives them.

    Args:
        num_classes: C, classes 0..C-1.
        ignore_index: target value excluded from every count.
        dilation_ratio: Boundary IoU band width as a fraction of each image's diagonal.
        dilation_px: a fixed band width in pixels instead (None: from ``dilation_ratio``).
        trimap_widths: widths (pixels) of the trimap bands around ground-truth boundaries.
        device: where counts are accumulated (default: the inputs' device).

    State (``state_tensor()``): int64 of shape (1 + len(trimap_widths), 3, C): for the Boundary
    IoU band (index 0) and each trimap band, per class the intersection, the ground-truth pixels
    and the predicted pixels in the band. Sums over images, so it all-reduces across ranks.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, dilation_ratio: float = DILATION_RATIO,
                 dilation_px: int | None = None, trimap_widths: Sequence[int] = TRIMAP_WIDTHS,
                 device: str | torch.device | None = None):
        super().__init__(device)
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if not 0 < dilation_ratio < 1:
            raise ValueError(f"dilation_ratio must lie strictly between 0 and 1, got {dilation_ratio}")
        if dilation_px is not None and (isinstance(dilation_px, bool) or int(dilation_px) != dilation_px
                                        or dilation_px < 1):
            raise ValueError(f"dilation_px must be a positive integer (pixels), got {dilation_px!r}")
        widths = tuple(trimap_widths)
        if (any(isinstance(w, bool) or int(w) != w or w < 1 for w in widths) or len(set(widths)) != len(widths)
                or len(widths) > 255):
            raise ValueError(f"trimap_widths must be at most 255 distinct positive integers (pixels), got {list(widths)}")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.dilation_ratio, self.dilation_px = float(dilation_ratio), dilation_px
        self.trimap_widths = tuple(int(w) for w in widths)

    def _shape(self) -> tuple[int, ...]:
        return (1 + len(self.trimap_widths), 3, self.num_classes)

    def _settings(self) -> tuple:
        return (self.num_classes, self.ignore_index, self.dilation_ratio, self.dilation_px, self.trimap_widths)

    def band_width(self, height: int, width: int) -> int:
        """Boundary IoU band width (pixels) for an image of ``height`` x ``width``."""
        return int(self.dilation_px) if self.dilation_px is not None else dilation_pixels(height, width,
                                                                                         self.dilation_ratio)

    def _codes(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pred, target) as int32 codes 0..C (C: no class / ignored) and the valid-target mask."""
        C = self.num_classes
        t = _wide(target)
        ignored = t == self.ignore_index
        bad = ((t < 0) | (t >= C)) & ~ignored
        if bool(bad.any()):
            raise ValueError(f"target value {int(t[bad][0])} is outside 0..{C - 1} and is not the ignore index "
                             f"{self.ignore_index}")
        p = _wide(pred)
        p = torch.where((p < 0) | (p >= C), C, p).int()
        return p, torch.where(ignored, C, t).int(), ~ignored

    def _bincounts(self, indices: list[torch.Tensor], levels: int) -> torch.Tensor:
        """(levels, len(indices), C) counts of flat bin indices ``level * (C + 1) + class`` (class C dropped)."""
        K = self.num_classes + 1
        rows = [torch.bincount(i.reshape(-1), minlength=levels * K).view(levels, K)[:, :-1] for i in indices]
        return torch.stack(rows, 1)

    def _trimap_levels(self, near: dict[int, torch.Tensor], shape: torch.Size, device) -> torch.Tensor:
        """Per pixel, the index (in ascending width order) of the narrowest trimap band holding it;
        len(widths) outside every band (at most 255 widths). Bands are nested, so a band's counts are
        a cumulative sum."""
        level = torch.zeros(shape, dtype=torch.uint8, device=device)
        for w in self.trimap_widths:
            level += ~near[w]  # the number of bands missing the pixel: the narrowest one's index
        return level.to(torch.int32)

    def update(self, pred, target) -> None:
        """Add one label map (H, W) or a batch of equally sized maps (N, H, W) and their targets.

        Integer tensors or numpy arrays of the same shape; the band width follows (H, W). On the
        CPU the work runs in the calling thread (:mod:`harness.threads`).
        """
        pred, target = _label_pair(pred, target, self.device)
        if pred.dim() not in (2, 3):
            raise ValueError(f"pred of shape {tuple(pred.shape)}: expected (H, W) or (N, H, W)")
        if pred.dim() == 2:
            pred, target = pred[None], target[None]
        if pred.numel() == 0:
            return
        with one_thread_on(pred.device):
            self._add(self._image_counts(pred, target))

    def _image_counts(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The state's counts for a batch (N, H, W) of equally sized maps."""
        C = self.num_classes
        p, t, valid = self._codes(pred, target)
        d = self.band_width(*t.shape[-2:])
        code = _code_dtype(C)
        near_t = near_other_values(t.to(code), [d, *self.trimap_widths])
        frame = image_frame(t.shape, d, t.device)
        band_t = (near_t[d] | frame) & valid
        band_p = (near_other_values(p.to(code), [d])[d] | frame) & valid
        hit = valid & (p == t)
        boundary = self._bincounts([torch.where(band_t & band_p & hit, t, C), torch.where(band_t, t, C),
                                    torch.where(band_p, p, C)], 1)
        base = self._trimap_levels(near_t, t.shape, t.device) * (C + 1)
        n = len(self.trimap_widths)
        trimap = self._bincounts([base + torch.where(hit, t, C), base + t, base + torch.where(valid, p, C)],
                                 n + 1)[:n].cumsum(0)
        order = [sorted(self.trimap_widths).index(w) for w in self.trimap_widths]
        return torch.cat([boundary, trimap[order]])

    def compute(self) -> dict:
        """``mBIoU`` and per-class ``BIoU`` (fractions, NaN for an empty union) and ``trimap``:
        ``{widths_px, aAcc, mIoU}`` lists, one entry per band width (NaN for an empty band)."""
        s = self.state_tensor().cpu().numpy().astype(np.float64)
        inter, gt, pr = s[:, 0], s[:, 1], s[:, 2]
        union = gt + pr - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, inter / union, np.nan)
            acc = np.where(gt.sum(1) > 0, inter.sum(1) / gt.sum(1), np.nan)
        miou = [float(np.nanmean(row)) if np.any(~np.isnan(row)) else math.nan for row in iou]
        return {"mBIoU": miou[0], "BIoU": [float(x) for x in iou[0]],
                "dilation_ratio": self.dilation_ratio, "dilation_px": self.dilation_px,
                "trimap": {"widths_px": list(self.trimap_widths), "aAcc": [float(x) for x in acc[1:]],
                           "mIoU": miou[1:]}}
