"""Per-image alignment of a relative prediction to the ground truth, before the depth metrics.

All functions take batches: ``pred`` and ``target`` float tensors of shape (N, H, W) on one
device, ``mask`` a bool tensor of that shape (the pixels that are evaluated: valid ground truth
inside the crop). Each image gets its own parameters, fitted on its own masked pixels in float64.

- ``none``: the prediction is taken as metric depth.
- ``median``: depth = pred x median(gt) / median(pred) (median scaling of self-supervised
  monocular work, e.g. monodepth2's ``evaluate_depth.py``; ``np.median`` semantics: the mean of
  the two middle values for an even count).
- ``lstsq``: depth = s x pred + t with (s, t) the least-squares fit of pred to the ground-truth
  *depth* (Marigold ``align_depth_least_square`` with ``--alignment least_square``, its default
  for NYU and KITTI).
- ``lstsq_disparity``: pred is a relative inverse depth; (s, t) is the least-squares fit of pred
  to the ground-truth *disparity* 1/gt, the aligned disparity is clamped to at least
  1/max_depth (1e-3 for an unbounded range, Marigold's floor) and depth = 1 / disparity (the MiDaS / DPT evaluation: Ranftl's published NYU and
  KITTI alignment snippets linked from isl-org/DPT EVALUATION.md; Marigold's
  ``least_square_disparity`` gives the same depth after its clipping to the range, but fits only
  pixels where pred > 0).

The least-squares solution is the closed form of the 2x2 normal equations, written with
centred sums (s = cov(pred, y) / var(pred), t = mean(y) - s mean(pred)), which is the same
solution with less cancellation. An image with fewer than two masked pixels or a constant
masked prediction has no unique (s, t): it gets s = 0, t = mean(y) (the fitted values of
``np.linalg.lstsq``'s minimum-norm solution) and is counted as degenerate. Ranftl's snippet
gives s = t = 0 there instead, which becomes max_depth everywhere after the clamp.
Non-finite predictions are left out of every fit.
"""

from __future__ import annotations

import math

import torch

ALIGNMENTS = ("none", "median", "lstsq", "lstsq_disparity")


def check_alignment(alignment: str) -> str:
    if alignment not in ALIGNMENTS:
        raise ValueError(f"unknown alignment {alignment!r}; expected one of {', '.join(ALIGNMENTS)}")
    return alignment


def fit_scale_shift(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image least-squares (scale, shift) minimising sum over mask of (s pred + t - target)^2.

    Returns float64 tensors ``scale``, ``shift`` of shape (N,) and a bool tensor ``degenerate``
    (fewer than two masked pixels, or a constant masked prediction: s = 0, t = masked mean of
    target, or 0 without pixels).
    """
    m = mask & torch.isfinite(pred) & torch.isfinite(target)
    w = m.to(torch.float64)
    p = torch.where(m, pred, 0).to(torch.float64)
    y = torch.where(m, target, 0).to(torch.float64)
    n = w.sum(dim=(-2, -1))
    safe_n = n.clamp(min=1)
    mp = p.sum(dim=(-2, -1)) / safe_n
    my = y.sum(dim=(-2, -1)) / safe_n
    pc = (p - mp[:, None, None]) * w
    var = (pc * pc).sum(dim=(-2, -1))
    cov = (pc * (y - my[:, None, None])).sum(dim=(-2, -1))
    # a prediction constant up to rounding has a variance at the float64 noise level of its mean
    degenerate = (n < 2) | (var <= (mp.abs() * 1e-12) ** 2 * n)
    scale = torch.where(degenerate, 0.0, cov / torch.where(degenerate, 1.0, var))
    shift = my - scale * mp
    return scale, shift, degenerate


def _median(values: torch.Tensor) -> torch.Tensor:
    """``np.median`` of a 1-D tensor (mean of the two middle values for an even count), float64."""
    s = torch.sort(values.to(torch.float64)).values
    k = s.numel()
    return (s[(k - 1) // 2] + s[k // 2]) / 2


def median_scale(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image ratio median(target) / median(pred) over the masked finite pixels, float64 (N,).

    Degenerate (no pixels, or a median prediction <= 0): scale 1 and flagged.
    """
    n = pred.shape[0]
    scale = torch.ones(n, dtype=torch.float64, device=pred.device)
    degenerate = torch.zeros(n, dtype=torch.bool, device=pred.device)
    m = mask & torch.isfinite(pred)
    for i in range(n):
        sel = m[i]
        if not bool(sel.any()):
            degenerate[i] = True
            continue
        mp = _median(pred[i][sel])
        if not bool(mp > 0):
            degenerate[i] = True
            continue
        scale[i] = _median(target[i][sel]) / mp
    return scale, degenerate


def align(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, alignment: str,
          max_depth: float) -> tuple[torch.Tensor, int]:
    """The aligned depth prediction (float tensor like ``pred``) and the number of degenerate images.

    See the module docstring for each ``alignment``. ``max_depth`` (metres) bounds the depth
    of ``lstsq_disparity`` (its disparity floor is 1 / max_depth).
    """
    check_alignment(alignment)
    if alignment == "none":
        return pred, 0
    if alignment == "median":
        scale, degenerate = median_scale(pred, target, mask)
        out = pred * scale.to(pred.dtype)[:, None, None]
    elif alignment == "lstsq":
        scale, shift, degenerate = fit_scale_shift(pred, target, mask)
        out = pred * scale.to(pred.dtype)[:, None, None] + shift.to(pred.dtype)[:, None, None]
    else:
        m = mask & (target > 0)
        disparity = torch.where(m, 1.0 / torch.where(m, target, 1.0), 0.0)
        scale, shift, degenerate = fit_scale_shift(pred, disparity, m)
        aligned = pred.to(torch.float64) * scale[:, None, None] + shift[:, None, None]
        floor = 1.0 / max_depth if math.isfinite(max_depth) else 1e-3  # unbounded range: Marigold's floor
        aligned = torch.clamp(aligned, min=floor)
        out = (1.0 / aligned).to(pred.dtype)
    return out, int(degenerate.sum())
