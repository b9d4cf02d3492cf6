"""Independent depth-metric references for the tests, written from the formulas and the anchors' algorithms.

``reference_image`` is a float64 numpy computation straight from the definitions; the
``anchor_*`` functions re-implement each reference implementation's algorithm as its source
describes it (ZoeDepth ``compute_metrics`` + ``compute_errors`` in float32 numpy, Marigold's
masked per-image torch metrics, Depth Anything V2's ``eval_depth``), so the engine is checked
against each convention separately.
"""

from __future__ import annotations

import numpy as np
import torch

KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "silog_half", "d1", "d2", "d3")


def box_mask(shape, box) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    if box is None:
        m[...] = True
    else:
        top, bottom, left, right = box
        m[..., top:bottom, left:right] = True
    return m


def clip_like_zoedepth(pred: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """pred < lo -> lo, pred > hi -> hi, inf -> hi, NaN -> lo, in that order."""
    p = np.array(pred, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        p[p < lo] = lo
        p[p > hi] = hi
    p[np.isinf(p)] = hi
    p[np.isnan(p)] = lo
    return p


def errors64(g: np.ndarray, p: np.ndarray) -> dict:
    """Every metric of one image's evaluated pixels (1-D arrays), float64, from the definitions."""
    g, p = g.astype(np.float64), p.astype(np.float64)
    ratio = np.maximum(g / p, p / g)
    d = np.log(p) - np.log(g)
    return {
        "abs_rel": np.mean(np.abs(g - p) / g),
        "sq_rel": np.mean((g - p) ** 2 / g),
        "rmse": np.sqrt(np.mean((g - p) ** 2)),
        "rmse_log": np.sqrt(np.mean(d**2)),
        "log10": np.mean(np.abs(np.log10(p) - np.log10(g))),
        "silog": 100 * np.sqrt(np.mean(d**2) - np.mean(d) ** 2),
        "silog_half": np.sqrt(np.mean(d**2) - 0.5 * np.mean(d) ** 2),
        "d1": np.mean(ratio < 1.25), "d2": np.mean(ratio < 1.25**2), "d3": np.mean(ratio < 1.25**3),
    }


def evaluated(pred2d, gt2d, lo, hi, box=None, mask=None):
    """(gt, pred) 1-D float64 arrays of one image's evaluated pixels, pred clipped as ZoeDepth."""
    g = np.asarray(gt2d, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(g) & (g > lo) & (g < hi) & box_mask(g.shape, box)
    if mask is not None:
        valid &= mask
    p = clip_like_zoedepth(pred2d, max(lo, 1e-6) if lo > 0 else 1e-6, hi)
    return g[valid], p[valid]


def reference(preds, gts, lo, hi, box=None, masks=None, reduction="image") -> dict:
    """Float64 reference over images (iterables of 2-D maps at the ground truth's size)."""
    per, pooled_g, pooled_p = [], [], []
    for i, (p, g) in enumerate(zip(preds, gts, strict=True)):
        gg, pp = evaluated(p, g, lo, hi, box, None if masks is None else masks[i])
        if gg.size == 0:
            continue
        per.append(errors64(gg, pp))
        pooled_g.append(gg)
        pooled_p.append(pp)
    if reduction == "pixel":
        return errors64(np.concatenate(pooled_g), np.concatenate(pooled_p))
    return {k: float(np.mean([e[k] for e in per])) for k in KEYS}


def anchor_zoedepth(pred2d: np.ndarray, gt2d: np.ndarray, lo: float, hi: float, box) -> dict:
    """ZoeDepth's algorithm: float32 numpy, clipping by boolean assignment, mask, compaction, compute_errors."""
    p = np.array(pred2d, dtype=np.float32)
    p[p < lo] = lo
    p[p > hi] = hi
    p[np.isinf(p)] = hi
    p[np.isnan(p)] = lo
    g = np.asarray(gt2d, dtype=np.float32)
    valid = (g > lo) & (g < hi) & (box_mask(g.shape, box) if box is not None else True)
    return zoedepth_compute_errors(g[valid], p[valid])


def zoedepth_compute_errors(g: np.ndarray, p: np.ndarray) -> dict:
    """ZoeDepth's ``compute_errors`` on compacted ground truth and prediction (1-D arrays)."""
    thresh = np.maximum(g / p, p / g)
    err = np.log(p) - np.log(g)
    return {"d1": (thresh < 1.25).mean(), "d2": (thresh < 1.25**2).mean(), "d3": (thresh < 1.25**3).mean(),
            "abs_rel": np.mean(np.abs(g - p) / g), "sq_rel": np.mean((g - p) ** 2 / g),
            "rmse": np.sqrt(((g - p) ** 2).mean()), "rmse_log": np.sqrt(((np.log(g) - np.log(p)) ** 2).mean()),
            "silog": np.sqrt(np.mean(err**2) - np.mean(err) ** 2) * 100,
            "log10": np.abs(np.log10(g) - np.log10(p)).mean()}


def zoedepth_compute_metrics(gt: torch.Tensor, pred: torch.Tensor, lo: float, hi: float, crop: str) -> dict:
    """ZoeDepth's per-image evaluation as it runs (``zoedepth/utils/misc.py: compute_metrics``): ``pred``
    (1, 1, h, w) interpolated bilinearly (align_corners=True) to the ground truth's size when they
    differ, both to numpy, the prediction clipped by boolean assignment, a float64 crop mask built
    and combined with the valid mask, the pixels compacted and ``compute_errors`` run on them."""
    if gt.shape[-2:] != pred.shape[-2:]:
        pred = torch.nn.functional.interpolate(pred, gt.shape[-2:], mode="bilinear", align_corners=True)
    p = pred.squeeze().cpu().numpy()
    p[p < lo] = lo
    p[p > hi] = hi
    p[np.isinf(p)] = hi
    p[np.isnan(p)] = lo
    g = gt.squeeze().cpu().numpy()
    valid = np.logical_and(g > lo, g < hi)
    h, w = g.shape
    eval_mask = np.zeros(valid.shape)
    if crop == "garg":
        eval_mask[int(0.40810811 * h):int(0.99189189 * h), int(0.03594771 * w):int(0.96405229 * w)] = 1
    else:  # eigen on NYU
        eval_mask[45:471, 41:601] = 1
    valid = np.logical_and(valid, eval_mask)
    return zoedepth_compute_errors(g[valid], p[valid])


def anchor_marigold(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> dict:
    """Marigold's masked per-image torch metrics (zeroed outside the mask, divided by the mask count)."""
    n = valid.sum((-1, -2))

    def masked_mean(x):
        x = torch.where(valid, x, 0)
        return (x.sum((-1, -2)) / n).mean()

    diff = torch.log(pred) - torch.log(gt)
    first = torch.where(valid, diff**2, 0).sum((-1, -2)) / n
    second = torch.where(valid, diff, 0).sum((-1, -2)) ** 2 / n**2
    ratio = torch.max(pred / gt, gt / pred)
    return {"abs_rel": masked_mean((pred - gt).abs() / gt), "sq_rel": masked_mean((pred - gt).abs() ** 2 / gt),
            "rmse": torch.sqrt(torch.where(valid, (pred - gt) ** 2, 0).sum((-1, -2)) / n).mean(),
            "rmse_log": torch.sqrt(torch.where(valid, diff**2, 0).sum((-1, -2)) / n).mean(),
            "log10": (torch.log10(pred[valid]) - torch.log10(gt[valid])).abs().mean(),
            "silog": torch.sqrt((first - second).mean()) * 100,
            "d1": masked_mean((ratio < 1.25).to(pred.dtype))}


def anchor_depth_anything(pred: torch.Tensor, gt: torch.Tensor) -> dict:
    """Depth Anything V2 ``eval_depth`` on the evaluated pixels (1-D): its SILog has lambda 0.5, no x100."""
    diff_log = torch.log(pred) - torch.log(gt)
    ratio = torch.max(gt / pred, pred / gt)
    return {"d1": (ratio < 1.25).float().mean(), "abs_rel": ((pred - gt).abs() / gt).mean(),
            "silog_half": torch.sqrt((diff_log**2).mean() - 0.5 * diff_log.mean() ** 2)}


def synthetic_pair(rng, shape, invalid=0.3, lo=0.3, hi=9.5, noise=0.15):
    """(pred, gt) float32: gt uniform in [lo, hi] with ``invalid`` zeros, pred = gt x lognormal noise."""
    gt = rng.uniform(lo, hi, shape).astype(np.float32)
    gt[rng.random(shape) < invalid] = 0
    pred = (np.where(gt > 0, gt, rng.uniform(lo, hi, shape)) * np.exp(rng.normal(0, noise, shape))).astype(np.float32)
    return pred, gt
