"""Qualitative depth samples: colormap PNGs of ground truth and prediction, and an error map.

For one sample and one cell, :func:`save_depth_sample` writes (paths relative to the run directory):

- ``samples/<dataset>/<id>.jpg``: the input (once per dataset);
- ``samples/<dataset>/<id>.depth.png``: the ground-truth depth (once per dataset);
- ``samples/<cell_id>/<id>.png``: the cell's prediction, aligned to the ground truth as the metrics
  align it (the cell's alignment, crop and range) and clipped to the range;
- ``samples/<cell_id>/<id>.error.png``: its absolute relative error |p − g| / g.

Pictures wider than :data:`MAX_WIDTH` pixels are scaled down (bilinear) to that width: they are
for looking at, the metrics never read them. Depth is coloured by inverse depth (near = bright) on one scale per sample: the 2nd to 98th
percentile of the ground truth's valid inverse depth, so every model's picture of a sample is
comparable with the ground truth's. The error map runs from black (0) through red to yellow
(>= :data:`ERROR_CAP`); pixels without valid ground truth are grey, pixels outside the evaluated
crop are dimmed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# colour ramps: (position, (r, g, b)); linear in between
DEPTH_RAMP = ((0.0, (22, 18, 64)), (0.3, (84, 32, 128)), (0.55, (178, 54, 104)), (0.8, (240, 128, 52)),
              (1.0, (252, 234, 128)))
ERROR_RAMP = ((0.0, (0, 0, 0)), (0.5, (200, 30, 20)), (1.0, (255, 236, 80)))
ERROR_CAP = 0.5  # absolute relative error shown at the top of the error ramp
NO_DEPTH = (128, 128, 128)
OUTSIDE_DIM = 0.45  # brightness kept outside the evaluated crop
MAX_WIDTH = 640  # px: wider pictures are scaled down to this width


def ramp(values: np.ndarray, stops=DEPTH_RAMP) -> np.ndarray:
    """(..., 3) uint8 colours of ``values`` in [0, 1] (clipped) on a piecewise-linear colour ramp."""
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0), 0.0, 1.0)
    pos = np.array([s[0] for s in stops])
    cols = np.array([s[1] for s in stops], dtype=np.float64)
    out = np.stack([np.interp(v, pos, cols[:, c]) for c in range(3)], axis=-1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def inverse_depth_scale(gt: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """(low, high) inverse depth (1/m) of the colour scale: 2nd and 98th percentile over valid pixels."""
    if not valid.any():
        return 0.0, 1.0
    inv = 1.0 / gt[valid].astype(np.float64)
    lo, hi = np.percentile(inv, [2, 98])
    return float(lo), float(hi if hi > lo else lo + 1e-6)


def depth_colors(depth: np.ndarray, scale: tuple[float, float], valid: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8 picture of metric depth on the inverse-depth ``scale``; invalid pixels grey."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(depth > 0, 1.0 / depth, np.nan)
    lo, hi = scale
    out = ramp((inv - lo) / (hi - lo))
    missing = ~np.isfinite(inv) if valid is None else ~valid
    out[missing] = NO_DEPTH
    return out


def error_colors(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 map of |pred − gt| / gt on valid pixels, capped at :data:`ERROR_CAP`; others grey."""
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.where(valid, np.abs(pred - gt) / gt, 0.0)
    out = ramp(err / ERROR_CAP, ERROR_RAMP)
    out[~valid] = NO_DEPTH
    return out


def aligned_prediction(pred, gt: np.ndarray, protocol: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """The prediction as the metrics see it, (H, W) float32 metres, and the evaluated-pixel mask.

    The cell's alignment is fitted on the evaluated pixels (valid ground truth inside the crop and,
    with ``predict_crop: kb``, inside the predicted box) and applied to the whole map, which is then
    clipped to the range (NaN -> min_depth, as the metrics do).
    """
    import torch

    from harness.depth.align import align
    from harness.depth.crops import crop_mask, kb_box

    p = protocol or {"min_depth": 1e-3, "max_depth": float(np.nanmax(gt)) + 1.0, "crop": None, "alignment": "none"}
    lo, hi = p["min_depth"], p["max_depth"]
    h, w = gt.shape
    with np.errstate(invalid="ignore"):
        evaluated = np.isfinite(gt) & (gt > lo) & (gt < hi) & crop_mask(p["crop"], h, w)
    if p.get("predict_crop") == "kb":
        top, bottom, left, right = kb_box(h, w)
        inside = np.zeros((h, w), dtype=bool)
        inside[top:bottom, left:right] = True
        evaluated &= inside
    pr = torch.as_tensor(pred).detach().float().cpu()[None]
    aligned, _ = align(pr, torch.from_numpy(np.nan_to_num(gt, nan=0.0))[None], torch.from_numpy(evaluated)[None],
                       p["alignment"], hi)
    out = aligned[0].numpy().astype(np.float32)
    floor = lo if lo > 0 else 1e-6
    out = np.clip(np.nan_to_num(out, nan=floor, posinf=hi, neginf=floor), floor, hi)
    return out, evaluated


def _dim_outside(picture: np.ndarray, crop, shape: tuple[int, int]) -> np.ndarray:
    from harness.depth.crops import crop_mask

    if crop is None:
        return picture
    inside = crop_mask(crop, *shape)
    out = picture.astype(np.float32)
    out[~inside] *= OUTSIDE_DIM
    return out.astype(np.uint8)


def _save_rgb(path: Path, array: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 picture as PNG, scaled down to :data:`MAX_WIDTH` when wider."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array, mode="RGB")
    if im.width > MAX_WIDTH:
        im = im.resize((MAX_WIDTH, max(1, round(im.height * MAX_WIDTH / im.width))), Image.Resampling.BILINEAR)
    im.save(path, optimize=True)


def save_depth_sample(run_dir: Path, cell_id: str, dataset_name: str, dataset, sample_id: str, pred, target,
                      protocol: dict | None) -> dict:
    """Write a sample's pictures (see the module docstring); return ``{id, image, label, pred, error}``
    (paths relative to ``run_dir``; ``label`` is the ground-truth depth picture)."""
    from harness.tasks.segmentation import _safe_name

    run_dir = Path(run_dir)
    gt = np.nan_to_num(np.asarray(target, dtype=np.float32), nan=0.0)
    safe = _safe_name(sample_id, 80)
    base = Path("samples") / _safe_name(dataset_name, 64)
    image_rel, truth_rel = base / f"{safe}.jpg", base / f"{safe}.depth.png"
    pred_rel = Path("samples") / cell_id / f"{safe}.png"
    error_rel = Path("samples") / cell_id / f"{safe}.error.png"
    aligned, evaluated = aligned_prediction(pred, gt, protocol)
    lo, hi = (protocol or {}).get("min_depth", 0.0), (protocol or {}).get("max_depth", np.inf)
    valid = (gt > lo) & (gt < hi)
    scale = inverse_depth_scale(gt, valid)
    crop = (protocol or {}).get("crop")
    if not (run_dir / image_rel).exists() or not (run_dir / truth_rel).exists():
        # the input may be there already: a segmentation cell over the same images wrote it
        idx = next((i for i in range(len(dataset)) if dataset.sample_id(i) == sample_id), None)
        if idx is not None and not (run_dir / image_rel).exists():
            (run_dir / image_rel).parent.mkdir(parents=True, exist_ok=True)
            image = dataset.load(idx).image.convert("RGB")
            if image.width > MAX_WIDTH:
                image = image.resize((MAX_WIDTH, max(1, round(image.height * MAX_WIDTH / image.width))))
            image.save(run_dir / image_rel, quality=90)
        _save_rgb(run_dir / truth_rel, _dim_outside(depth_colors(gt, scale, valid), crop, gt.shape))
    _save_rgb(run_dir / pred_rel, _dim_outside(depth_colors(aligned, scale), crop, gt.shape))
    _save_rgb(run_dir / error_rel, error_colors(aligned, gt, evaluated))
    return {"id": sample_id, "image": str(image_rel), "label": str(truth_rel), "pred": str(pred_rel),
            "error": str(error_rel)}
