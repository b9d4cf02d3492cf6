"""Your own RGB-D data: images and depth maps paired by name, with the depth's scale and encoding.

Layout (folder names and name affixes configurable)::

    root/
      images/<prefix>NAME<suffix>.{jpg,png,ppm,...}
      depth/<prefix>NAME<suffix>.{png,tif,pgm,npy}

Options: ``images_dir``, ``depth_dir``, ``image_prefix`` / ``image_suffix`` and ``depth_prefix`` /
``depth_suffix`` (stripped from the file stems to pair them), ``depth_scale`` (stored units per metre:
1000 for millimetres, 256 for KITTI, 5000 for TUM; default 1000 for integer files, 1 for float
files), ``invalid_value`` (a stored value meaning "no depth", default 0), ``encoding`` (``linear``,
``sun_rgbd``: SUN RGB-D's bit-rotated millimetres, ``kinect_disparity``: raw 11-bit Kinect
disparity), ``byte_order`` of 16-bit PGM files (``big``, the Netpbm standard, or ``little`` as the
NYU raw dumps store them), ``min_depth`` / ``max_depth`` / ``default_crop`` (the protocol),
``intrinsics`` ([fx, fy, cx, cy], for every image).

Examples (the real samples of ../shared/data/depth): NYU frames ``images_dir: rgb, depth_dir: depth,
image_prefix: rgb_, depth_prefix: sync_depth_``; SUN RGB-D ``images_dir: ., depth_dir: .,
image_suffix: _color, depth_suffix: _depth, encoding: sun_rgbd``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.data.depth_base import (
    ENCODINGS,
    IMAGE_SUFFIXES,
    PairedDepthDataset,
    decode_depth,
    read_depth_npy,
    read_depth_raw,
)
from harness.data.files import require_dir, select
from harness.depth.crops import check_crop
from harness.errors import DataError

LAYOUT = """  root/
    images/NAME.jpg|png|ppm
    depth/NAME.png|tif|pgm|npy   (depth_scale stored units per metre, invalid_value = no depth)"""
DEPTH_SUFFIXES = (".png", ".tif", ".tiff", ".pgm", ".npy")


def _key(path: Path, prefix: str, suffix: str) -> str | None:
    stem = path.stem
    if not (stem.startswith(prefix) and stem.endswith(suffix)) or len(stem) <= len(prefix) + len(suffix):
        return None
    return stem[len(prefix): len(stem) - len(suffix)]


class RGBDFolderDataset(PairedDepthDataset):
    name = "rgbd-folder"

    def __init__(self, root: str | Path, split: str = "validation", limit: int | None = None,
                 shard: tuple[int, int] | None = None, images_dir: str = "images", depth_dir: str = "depth",
                 image_prefix: str = "", image_suffix: str = "", depth_prefix: str = "", depth_suffix: str = "",
                 depth_scale: float | None = None, invalid_value: float | None = 0, encoding: str = "linear",
                 byte_order: str = "big", min_depth: float = 1e-3, max_depth: float = 10.0,
                 default_crop: str | None = None, intrinsics: list[float] | None = None):
        root = require_dir(Path(root), "RGB-D folder", LAYOUT)
        img_dir = require_dir(root / images_dir, "images folder", LAYOUT)
        dep_dir = require_dir(root / depth_dir, "depth folder", LAYOUT)
        if encoding not in ENCODINGS:
            raise DataError(f"rgbd-folder: encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
        if byte_order not in ("big", "little"):
            raise DataError(f"rgbd-folder: byte_order {byte_order!r} is not 'big' or 'little'")
        if depth_scale is not None and not float(depth_scale) > 0:
            raise DataError(f"rgbd-folder: depth_scale {depth_scale!r} must be positive (stored units per metre)")
        if not (0 <= float(min_depth) < float(max_depth)):
            raise DataError(f"rgbd-folder: depth range ({min_depth!r}, {max_depth!r}) must satisfy 0 <= min < max (metres)")
        try:
            check_crop(default_crop)
        except ValueError as e:
            raise DataError(f"rgbd-folder: {e}") from None
        if intrinsics is not None and len(intrinsics) != 4:
            raise DataError(f"rgbd-folder: intrinsics {intrinsics!r}: expected [fx, fy, cx, cy] in pixels")
        self.depth_scale, self.invalid_value, self.encoding, self.byte_order = depth_scale, invalid_value, encoding, byte_order
        self.min_depth, self.max_depth, self.default_crop = float(min_depth), float(max_depth), default_crop
        self.depth_scale_note = (f"{encoding}, {depth_scale or 'default'} stored units per metre, "
                                 f"{invalid_value!r} = invalid")
        intr = dict(zip(("fx", "fy", "cx", "cy"), (float(v) for v in intrinsics), strict=True)) if intrinsics else None
        images = {k: p for p in sorted(img_dir.iterdir())
                  if p.suffix.lower() in IMAGE_SUFFIXES and (k := _key(p, image_prefix, image_suffix)) is not None}
        depths = {k: p for p in sorted(dep_dir.iterdir())
                  if p.suffix.lower() in DEPTH_SUFFIXES and (k := _key(p, depth_prefix, depth_suffix)) is not None}
        if img_dir == dep_dir:  # one folder: a file is an image or a depth map by its affixes, not both
            images = {k: p for k, p in images.items() if p not in depths.values()}
        if not images:
            raise DataError(f"{img_dir}: no images found. Expected layout:\n{LAYOUT}", path=str(img_dir))
        items, self.unpaired = [], []
        for key in sorted(images.keys() | depths.keys()):
            if key in images and key in depths:
                items.append((images[key], depths[key], key, intr))
            else:
                present = images.get(key) or depths.get(key)
                what = "image without depth" if key in images else "depth without image"
                self.unpaired.append({"id": key, "path": str(present), "reason": f"{present}: {what}"})
        super().__init__(root, select(items, limit, shard))

    def read_depth(self, path: Path, sample_id: str) -> np.ndarray:
        if path.suffix.lower() == ".npy":
            raw = read_depth_npy(path, sample_id)
        else:
            raw = read_depth_raw(path, sample_id)
            if self.byte_order == "little" and path.suffix.lower() == ".pgm" and raw.dtype == np.uint16:
                raw = raw.byteswap()
        scale = self.depth_scale or (1.0 if raw.dtype.kind == "f" else 1000.0)
        return decode_depth(raw, scale, self.encoding, self.invalid_value)
