"""Calibration of per-pixel softmax confidence: ECE, MCE, NLL, Brier score, reliability diagram.

Definitions (per valid pixel, ``p = softmax(logits)`` at the label's resolution, ``y`` the target,
``k*`` the predicted label, by default the argmax): confidence ``p_k*`` (= ``max_k p_k`` for the
argmax), correct when ``k* = y``.

- ECE (Guo et al., ICML 2017; Naeini et al. 2015): ``sum_m |correct_m - conf_m| / n`` over ``B``
  equal-width bins (default 15); bin ``m`` (0-based) holds confidences in ``(m/B, (m+1)/B]`` (Guo
  et al.'s right-closed bins; torchmetrics' ``calibration_error`` uses left-closed bins, which
  differ only for a confidence exactly on a bin edge).
- MCE: ``max_m |accuracy_m - mean confidence_m|`` over non-empty bins.
- NLL: mean of ``-ln p_y`` (nats per pixel).
- Brier: mean of ``sum_k (p_k - [k = y])^2`` (the multi-class Brier score, in [0, 2]; some papers
  divide it by the number of classes).

Pixels whose target is ``ignore_index`` are excluded. Nothing per pixel is kept: the state is
per-bin counts, confidence sums and correct counts plus the NLL and Brier sums, a float64
vector that sums across images and ranks.

Resolution. :meth:`CalibrationMetrics.update_logits` takes the model's low-resolution logits and
resizes them to the label size exactly as :mod:`harness.models.postprocess` does
(``F.interpolate(logits, size, mode, align_corners=False)``, float32), in channel chunks of at
most ``CHUNK_BYTES``: a running maximum, softmax denominator and sum of squared exponentials
(rescaled when the maximum grows, as in an online log-sum-exp) and the logits of the target and
predicted classes carry over from chunk to chunk, so the full-resolution probability tensor never
exists. The predicted labels are the postprocess's when passed in; otherwise the running argmax of
the same resized chunks gives them (exactly the label map of
:func:`harness.models.postprocess.upsample_argmax`, ties to the first class), so a loop that
calibrates needs no separate postprocess resize. They are returned. Cost: one full-resolution
resize of every channel plus a few passes over it (on the CPU about the reference postprocess
without its shortcut; docs/PERFORMANCE.md).

Label-map models (LiteRT, argmax inside the model) have no probabilities:
:func:`unsupported_reason` says so.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from harness.metrics import _label_tensor
from harness.models.postprocess import UPSAMPLE_CHUNK_BYTES
from harness.summable import SummableState
from harness.threads import one_thread_on

N_BINS = 15
# Largest block of resized logits handled at once (bytes). Each block also costs a dozen (H, W)
# map operations, so smaller blocks are slower (CPU, 150 classes at 512x683: 0.5-4 MiB 2-4x slower
# than 16 MiB; 64 MiB and more 1.2-1.6x slower).
CHUNK_BYTES = UPSAMPLE_CHUNK_BYTES
LABEL_MAP_REASON = ("cannot be calibrated: the model outputs label maps (the argmax is taken inside the model), "
                    "not logits, so it has no per-pixel class probabilities")


def unsupported_reason(model) -> str | None:
    """Why ``model`` cannot be calibrated (a label-map model), or None when it outputs logits."""
    return LABEL_MAP_REASON if getattr(model, "output_kind", "logits") == "labels" else None


class _Picker:
    """The logit of each pixel's label (one label map (H, W), values 0..C-1), read chunk by chunk.

    ``by_label`` (the CPU's way): pixels are sorted by label once, and each chunk reads only the
    pixels whose label it holds (two small index operations). Otherwise each chunk gathers at
    every pixel and keeps the pixels whose label it holds (no host synchronisation: the device's way).
    """

    def __init__(self, labels: torch.Tensor, num_classes: int, by_label: bool):
        self.labels, self.by_label = labels, by_label
        self.values = torch.zeros(labels.shape, dtype=torch.float32, device=labels.device)
        if by_label:
            self.sorted, self.order = torch.sort(labels.reshape(-1), stable=True)
            classes = torch.arange(num_classes + 1, device=labels.device, dtype=self.sorted.dtype)
            self.bounds = torch.searchsorted(self.sorted, classes).tolist()

    def add(self, z: torch.Tensor, start: int) -> None:
        """Read the logits of the labels ``start .. start + len(z) - 1`` from ``z`` (k, H, W)."""
        k = z.shape[0]
        if self.by_label:
            a, b = self.bounds[start], self.bounds[min(start + k, len(self.bounds) - 1)]
            pixels = self.order[a:b]
            self.values.view(-1)[pixels] = z.reshape(k, -1)[self.sorted[a:b] - start, pixels]
            return
        inside = (self.labels >= start) & (self.labels < start + k)
        picked = z.gather(0, (self.labels - start).clamp(0, k - 1)[None])[0]
        self.values = torch.where(inside, picked, self.values)


class _Running:
    """Per-pixel running softmax statistics over channel chunks of resized logits (float32, (H, W)):
    maximum, denominator ``sum exp(z - max)`` and ``sum exp(2 (z - max))`` (both rescaled when the
    maximum grows), and the logits of the target and of the predicted class.

    ``pred`` None: the predicted class is the argmax, found on the way (``argmax``: the first class
    holding the maximum, as :func:`harness.models.postprocess.upsample_argmax` resolves ties); its
    logit is then the running maximum itself."""

    def __init__(self, target: torch.Tensor, pred: torch.Tensor | None, num_classes: int, by_label: bool):
        self.target = _Picker(target, num_classes, by_label)
        self.pred = _Picker(pred, num_classes, by_label) if pred is not None else None
        self.max = self.denom = self.sq = self.argmax = None

    def _chunk_max(self, z: torch.Tensor, start: int) -> torch.Tensor:
        """The chunk's maximum per pixel; without a given prediction, also the running argmax
        (replaced only where a later chunk is strictly greater: the first maximal class wins)."""
        if self.pred is not None:
            self.pred.add(z, start)
            return z.amax(0)
        cmax, idx = z.max(0)
        if self.argmax is None:
            self.argmax = idx
        else:
            self.argmax = torch.where(cmax > self.max, idx + start, self.argmax)
        return cmax

    def add(self, z: torch.Tensor, start: int) -> None:
        """Fold channels ``start .. start + len(z) - 1`` (``z``: (k, H, W) logits, overwritten) into the
        statistics. In-place arithmetic: no second chunk-sized tensor is allocated."""
        self.target.add(z, start)
        cmax = self._chunk_max(z, start)
        if self.max is not None:
            new = torch.maximum(self.max, cmax)
            scale = torch.exp(self.max - new)
            cmax = new
        e = z.sub_(cmax).exp_()
        denom = e.sum(0)
        sq = e.square_().sum(0)
        if self.max is None:
            self.denom, self.sq = denom, sq
        else:
            self.denom = self.denom.mul_(scale).add_(denom)
            self.sq = self.sq.mul_(scale.square_()).add_(sq)
        self.max = cmax


def _chunks(logits: torch.Tensor, size: tuple[int, int], mode: str, max_bytes: int):
    """(start, (k, H, W) float32 logits at ``size``, a fresh tensor) for channel chunks of at most ``max_bytes``."""
    c, h, w = logits.shape
    step = max(1, min(c, max_bytes // max(size[0] * size[1] * 4, 1)))
    for start in range(0, c, step):
        chunk = logits[start:start + step]
        if (h, w) != tuple(size):
            yield start, F.interpolate(chunk[None].float(), size=size, mode=mode, align_corners=False)[0]
        else:
            yield start, chunk.to(torch.float32, copy=True)  # the consumer overwrites it


class CalibrationMetrics(SummableState):
    """Accumulates calibration statistics of per-pixel softmax confidence; ``compute`` gives them.

    Args:
        num_classes: C, the logits' channels and the classes 0..C-1 of the targets.
        ignore_index: target value excluded from every statistic.
        n_bins: number of equal-width confidence bins.
        device: where the state lives (default: the inputs' device).

    State (``state_tensor()``): float64 of shape (3 * n_bins + 2,): per-bin pixel counts, per-bin
    confidence sums, per-bin correct counts, then the NLL sum and the Brier sum (counts are exact
    in float64 up to 2**53 pixels).
    """

    _dtype = torch.float64

    def __init__(self, num_classes: int, ignore_index: int = 255, n_bins: int = N_BINS,
                 device: str | torch.device | None = None):
        super().__init__(device)
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1:
            raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
        self.num_classes, self.ignore_index, self.n_bins = num_classes, ignore_index, int(n_bins)
        self.pick_by_label: bool | None = None  # how labels' logits are read (None: by device, see _Picker)

    def _shape(self) -> tuple[int, ...]:
        return (3 * self.n_bins + 2,)

    def _settings(self) -> tuple:
        return (self.num_classes, self.ignore_index, self.n_bins)

    def _target(self, target, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(int64 target with ignored pixels set to 0, valid mask); ValueError for a non-class value."""
        t = _label_tensor(target, "target", device).long()
        ignored = t == self.ignore_index
        bad = ((t < 0) | (t >= self.num_classes)) & ~ignored
        if bool(bad.any()):
            raise ValueError(f"target value {int(t[bad][0])} is outside 0..{self.num_classes - 1} and is not "
                             f"the ignore index {self.ignore_index}")
        return torch.where(ignored, 0, t), ~ignored

    def update_logits(self, logits: torch.Tensor, target, mode: str = "bilinear", pred=None,
                      max_bytes: int = CHUNK_BYTES) -> torch.Tensor:
        """Add logits (C, h, w) or (N, C, h, w) at any resolution and their targets (H, W) / (N, H, W).

        The logits are resized to the target's size with ``mode`` (as the postprocess does) chunk
        by chunk. ``pred``: the label map(s) already computed from these logits (the postprocess
        output), else the argmax is taken from the same resized chunks: the label map of
        :func:`upsample_argmax` (ties to the first class), with no second resize. Returns the int64
        label map(s) at the target's size. On the CPU the work runs in the calling thread.
        """
        if not isinstance(logits, torch.Tensor) or logits.dim() not in (3, 4) or not logits.is_floating_point():
            desc = f"{logits.dtype} {tuple(logits.shape)}" if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"logits {desc}: expected a float tensor (C, h, w) or (N, C, h, w)")
        single = logits.dim() == 3
        batch = (logits[None] if single else logits).to(self.device or logits.device)
        t, valid = self._target(target, batch.device)
        t, valid = (t[None], valid[None]) if t.dim() == 2 else (t, valid)
        if batch.shape[1] != self.num_classes or t.dim() != 3 or t.shape[0] != batch.shape[0]:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(t.shape)}: expected {self.num_classes} "
                             "channels and one (H, W) target per image")
        if pred is not None:
            pred = _label_tensor(pred, "pred", batch.device).long().reshape(t.shape)
        out = []
        with one_thread_on(batch.device):
            for i in range(batch.shape[0]):
                out.append(self._image(batch[i], t[i], valid[i], None if pred is None else pred[i], mode, max_bytes))
        return out[0] if single else torch.stack(out)

    def _image(self, logits: torch.Tensor, t: torch.Tensor, valid: torch.Tensor, pred: torch.Tensor | None,
               mode: str, max_bytes: int) -> torch.Tensor:
        """Add the statistics of one image: logits (C, h, w), target and valid mask (H, W), its labels
        (None: the argmax of the resized logits); returns the labels."""
        by_label = self.pick_by_label if self.pick_by_label is not None else logits.device.type == "cpu"
        picked = None if pred is None else pred.clamp(0, self.num_classes - 1)
        run = _Running(t, picked, self.num_classes, by_label)
        for start, z in _chunks(logits, tuple(t.shape), mode, max_bytes):
            run.add(z, start)
        if pred is None:
            pred = run.argmax.long()
        inv = 1.0 / run.denom
        target_logit = run.target.values
        pred_logit = run.max if run.pred is None else run.pred.values
        conf = torch.exp(pred_logit - run.max) * inv  # the predicted class's probability
        p_target = torch.exp(target_logit - run.max) * inv
        nll = torch.log(run.denom) + run.max - target_logit
        brier = run.sq * inv * inv - 2.0 * p_target + 1.0
        self._add_pixels(conf, pred == t, nll, brier, valid)
        return pred

    def _add_pixels(self, conf: torch.Tensor, correct: torch.Tensor, nll: torch.Tensor, brier: torch.Tensor,
                    valid: torch.Tensor) -> None:
        """Bin and sum per-pixel confidence, correctness, NLL and Brier of the valid pixels."""
        B = self.n_bins
        conf64 = conf.double().reshape(-1)
        edges = torch.arange(1, B, dtype=torch.float64, device=conf.device) / B
        idx = torch.where(valid.reshape(-1), torch.bucketize(conf64, edges, right=False), B)
        keep = valid.reshape(-1)

        def masked(x: torch.Tensor) -> torch.Tensor:  # where, not a product: an ignored pixel may be inf
            return torch.where(keep, x.reshape(-1).double(), 0.0)
        stats = [torch.bincount(idx, weights=masked(w), minlength=B + 1)[:B]
                 for w in (torch.ones_like(conf64), conf64, correct)]
        sums = torch.stack([masked(nll).sum(), masked(brier).sum()])
        self._add(torch.cat([*stats, sums]))

    def compute(self) -> dict:
        """``ECE``, ``MCE``, ``NLL`` (nats/pixel), ``Brier``, ``accuracy`` (pixel accuracy of the argmax),
        ``pixels`` and ``reliability``: per bin ``edges`` (B + 1), ``count``, ``confidence`` and
        ``accuracy`` (means; NaN for an empty bin). Metrics are NaN when no pixel was counted."""
        s = self.state_tensor().cpu().numpy()
        B = self.n_bins
        count, conf_sum, correct = s[:B], s[B:2 * B], s[2 * B:3 * B]
        n = float(count.sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            acc_bin = np.where(count > 0, correct / count, np.nan)
            conf_bin = np.where(count > 0, conf_sum / count, np.nan)
        gaps = np.abs(acc_bin - conf_bin)[count > 0]
        out = {"ECE": float(np.abs(correct - conf_sum).sum() / n) if n else math.nan,
               "MCE": float(gaps.max()) if gaps.size else math.nan,
               "NLL": float(s[3 * B] / n) if n else math.nan,
               "Brier": float(s[3 * B + 1] / n) if n else math.nan,
               "accuracy": float(correct.sum() / n) if n else math.nan,
               "pixels": int(n), "n_bins": B}
        out["reliability"] = {"edges": [m / B for m in range(B + 1)], "count": [int(c) for c in count],
                              "confidence": [float(x) for x in conf_bin], "accuracy": [float(x) for x in acc_bin]}
        return out
