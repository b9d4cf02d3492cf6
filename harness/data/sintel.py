"""MPI Sintel depth (Butler et al. 2012), the training set with its ground-truth depth.

Layout (MPI-Sintel-complete for the images, MPI-Sintel-depth-training for the depth)::

    ROOT/training/{final,clean}/<scene>/frame_XXXX.png   1024x436 RGB
    ROOT/training/depth/<scene>/frame_XXXX.dpt            float32 depth

A ``.dpt`` file is the Sintel SDK's format (``sintel_io.py depth_read``): the float32 tag
202021.25, int32 width, int32 height, then width x height float32 values, little-endian, row-major.
No reference evaluation code fixes Sintel's range for depth benchmarks: ``min_depth`` /
``max_depth`` (default 1e-3..80 m, segbench's choice) are options; no crop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.data.depth_base import PairedDepthDataset
from harness.data.files import require_dir, select
from harness.errors import DataError

LAYOUT = """  ROOT/training/{final,clean}/<scene>/frame_XXXX.png
  ROOT/training/depth/<scene>/frame_XXXX.dpt"""
TAG = np.float32(202021.25)


def read_dpt(path: Path, sample_id: str) -> np.ndarray:
    """An (H, W) float32 map from a Sintel ``.dpt`` file; a bad tag, size or length is a DataError."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: depth file is missing", path=str(path), sample_id=sample_id) from None
    if len(data) < 12 or np.frombuffer(data[:4], "<f4")[0] != TAG:
        raise DataError(f"{path}: not a Sintel .dpt file (expected the tag 202021.25 first)", path=str(path),
                        sample_id=sample_id)
    w, h = (int(v) for v in np.frombuffer(data[4:12], "<i4"))
    if not (0 < w < 100_000 and 0 < h < 100_000) or len(data) != 12 + 4 * w * h:
        raise DataError(f"{path}: header says {w}x{h} but the file holds {len(data) - 12} bytes of values",
                        path=str(path), sample_id=sample_id)
    return np.frombuffer(data[12:], "<f4").reshape(h, w).astype(np.float32)


class SintelDepthDataset(PairedDepthDataset):
    """Options: render_pass (final | clean), min_depth, max_depth."""

    name = "sintel"
    default_crop = None
    depth_scale_note = "Sintel .dpt float32 (tag 202021.25, width, height, values)"

    def __init__(self, root: str | Path, split: str = "training", limit: int | None = None,
                 shard: tuple[int, int] | None = None, render_pass: str = "final", min_depth: float = 1e-3,
                 max_depth: float = 80.0):
        if split not in ("training", "train"):
            raise DataError(f"sintel: split {split!r} is not 'training' (only the training set has depth)")
        if render_pass not in ("final", "clean"):
            raise DataError(f"sintel: render_pass {render_pass!r} is not 'final' or 'clean'")
        if not (0 <= float(min_depth) < float(max_depth)):
            raise DataError(f"sintel: depth range ({min_depth!r}, {max_depth!r}) must satisfy 0 <= min < max (metres)")
        root = require_dir(Path(root), "Sintel folder", LAYOUT)
        images = require_dir(root / "training" / render_pass, f"Sintel {render_pass} images", LAYOUT)
        depth = require_dir(root / "training" / "depth", "Sintel depth", LAYOUT)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        items = [(img, depth / img.parent.name / f"{img.stem}.dpt", f"{img.parent.name}/{img.stem}", None)
                 for img in sorted(images.glob("*/frame_*.png"))]
        if not items:
            raise DataError(f"{images}: no frame_*.png found. Expected layout:\n{LAYOUT}", path=str(images))
        super().__init__(root, select(items, limit, shard))

    def read_depth(self, path: Path, sample_id: str) -> np.ndarray:
        d = read_dpt(path, sample_id)
        d[~np.isfinite(d) | (d < 0)] = 0.0
        return d
