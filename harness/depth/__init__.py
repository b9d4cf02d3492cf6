"""Monocular depth evaluation: metrics, alignment, crops, and the depth dataset contract.

Metrics. ``DepthMetrics(min_depth=1e-3, max_depth=10.0, crop=None, alignment="none",
reduction="image")`` with ``update(pred, target, mask=None)`` (depth maps in metres, any
leading batch shape, torch tensors or numpy arrays, computed on pred's device), ``compute()``
(abs_rel, sq_rel, rmse, rmse_log, log10, silog, silog_half, d1, d2, d3 and counts), ``reset()``
and a summable state (``state_tensor()`` / ``load_state_tensor()`` / ``merge()``). See
:mod:`harness.depth.metrics` for the protocol, :mod:`harness.depth.align` for the alignments
and :mod:`harness.depth.crops` for the crops; docs/DEPTH.md for the references reproduced.

Dataset contract (``harness.data.depth_base``). A depth dataset is map-style like a
segmentation dataset: ``len()``, ``load(i)``, ``sample_id(i)``, ``files()``, ``digest()``,
``name``, plus ``task = "depth"``, ``min_depth`` / ``max_depth`` (metres, the evaluated range of
its protocol), ``default_crop`` (a crop name or None), ``depth_scale_note`` (how depth is stored
on disk) and ``excluded`` (entries of the split list that are not evaluated, with the reason;
KITTI frames without ground truth). ``load(i)`` returns a ``DepthSample``:

- ``image``: RGB ``PIL.Image`` at its stored size (after the dataset's input crop, if any);
- ``depth``: float32 (H, W) metres, same H and W as the image, invalid pixels 0 or NaN;
- ``id``: stable string;
- ``label``: optional int64 (H, W) segmentation map (NYU-Depth-v2 labeled: 40 classes,
  255 = unlabeled), else None;
- ``intrinsics``: optional dict ``{fx, fy, cx, cy}`` in pixels (any may be missing), else None.

A broken sample raises :class:`harness.errors.DataError` naming the file.
"""

from __future__ import annotations

from harness.depth.align import ALIGNMENTS
from harness.depth.crops import CROPS, crop_box
from harness.depth.metrics import METRICS, DepthMetrics

__all__ = ["DepthMetrics", "METRICS", "ALIGNMENTS", "CROPS", "crop_box"]
