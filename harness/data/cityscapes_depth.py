"""Cityscapes with depth from its stereo disparity, and the 19-class segmentation of the same images.

Layout (the official ``leftImg8bit``, ``disparity``, ``camera`` and ``gtFine`` packages)::

    ROOT/leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png
    ROOT/disparity/{split}/{city}/{stem}_disparity.png    uint16: d = (p - 1) / 256 for p > 0, p = 0 invalid
    ROOT/camera/{split}/{city}/{stem}_camera.json         {"extrinsic": {"baseline": m}, "intrinsic": {"fx": px, ...}}
    ROOT/gtFine/{split}/{city}/{stem}_gtFine_labelIds.png  optional: labels (labelIds -> 19 train ids)

Depth = baseline x fx / d metres (the disparity encoding of cityscapesScripts' README). No
reference fixes an evaluated range for Cityscapes depth: ``min_depth`` / ``max_depth`` are
options (default 1e-3..80 m, segbench's choice); no crop. Each sample carries its label map when
the gtFine file is there (``labels: true`` requires it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from harness.data.cityscapes import CLASSES, PALETTE, SPLITS, label_ids_to_train_ids
from harness.data.depth_base import DepthSample, PairedDepthDataset, check_depth, read_depth_raw
from harness.data.files import read_image, read_label, require_dir, select
from harness.errors import DataError

LAYOUT = """  ROOT/leftImg8bit/{split}/{city}/*_leftImg8bit.png
  ROOT/disparity/{split}/{city}/*_disparity.png + ROOT/camera/{split}/{city}/*_camera.json
  ROOT/gtFine/{split}/{city}/*_gtFine_labelIds.png (labels)"""


def read_camera(path: Path, sample_id: str) -> dict:
    """baseline (m), fx, fy, cx, cy (px) from a Cityscapes ``_camera.json``."""
    try:
        cam = json.loads(path.read_text())
        intr = cam["intrinsic"]
        return {"baseline": float(cam["extrinsic"]["baseline"]), "fx": float(intr["fx"]), "fy": float(intr["fy"]),
                "cx": float(intr["u0"]), "cy": float(intr["v0"])}
    except FileNotFoundError:
        raise DataError(f"{path}: camera file is missing", path=str(path), sample_id=sample_id) from None
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: expected extrinsic.baseline and intrinsic fx, fy, u0, v0 ({e!r})", path=str(path),
                        sample_id=sample_id) from e


class CityscapesDepthDataset(PairedDepthDataset):
    """Options: labels (true: gtFine required), min_depth, max_depth."""

    name = "cityscapes-depth"
    default_crop = None
    depth_scale_note = "disparity uint16, d = (p - 1) / 256 (p = 0 invalid); depth = baseline * fx / d"
    num_classes, class_names, palette, ignore_index, label_set = 19, CLASSES, PALETTE, 255, "cityscapes"

    def __init__(self, root: str | Path, split: str = "validation", limit: int | None = None,
                 shard: tuple[int, int] | None = None, labels: bool = True, min_depth: float = 1e-3,
                 max_depth: float = 80.0):
        if split not in SPLITS:
            raise DataError(f"cityscapes-depth: split {split!r} is not one of {', '.join(SPLITS)}")
        if not (0 <= float(min_depth) < float(max_depth)):
            raise DataError(f"cityscapes-depth: depth range ({min_depth!r}, {max_depth!r}) must satisfy 0 <= min < max")
        root = require_dir(Path(root), "Cityscapes root", LAYOUT)
        sub = SPLITS[split]
        images = require_dir(root / "leftImg8bit" / sub, "Cityscapes images", LAYOUT)
        require_dir(root / "disparity" / sub, "Cityscapes disparity", LAYOUT)
        self.labels, self.min_depth, self.max_depth = bool(labels), float(min_depth), float(max_depth)
        items = []
        for img in sorted(images.glob("*/*_leftImg8bit.png")):
            city, stem = img.parent.name, img.name[: -len("_leftImg8bit.png")]
            items.append((img, root / "disparity" / sub / city / f"{stem}_disparity.png", stem, None))
        if not items:
            raise DataError(f"{images}: no *_leftImg8bit.png found. Expected layout:\n{LAYOUT}", path=str(images))
        self.sub = sub
        super().__init__(root, select(items, limit, shard))

    def _path(self, kind: str, disparity: Path, suffix: str) -> Path:
        stem = disparity.name[: -len("_disparity.png")]
        return self.root / kind / self.sub / disparity.parent.name / f"{stem}{suffix}"

    def load(self, index: int) -> DepthSample:
        image_path, disp_path, sid, _ = self.items[index]
        image = read_image(image_path, sid)
        cam = read_camera(self._path("camera", disp_path, "_camera.json"), sid)
        p = read_depth_raw(disp_path, sid).astype(np.float64)
        d = np.where(p > 0, (p - 1.0) / 256.0, 0.0)
        with np.errstate(divide="ignore"):
            depth = np.where(d > 0, cam["baseline"] * cam["fx"] / d, 0.0).astype(np.float32)
        label = None
        label_path = self._path("gtFine", disp_path, "_gtFine_labelIds.png")
        if self.labels:
            label = label_ids_to_train_ids(read_label(label_path, sid), self.ignore_index)
        check_depth(image, depth, disp_path, sid, label)
        intr = {k: cam[k] for k in ("fx", "fy", "cx", "cy")}
        return DepthSample(image=image, depth=depth, id=sid, label=label, intrinsics=intr)

    def files(self) -> list[str]:
        out = []
        for image, disp, _, _ in self.items:
            paths = [image, disp, self._path("camera", disp, "_camera.json")]
            if self.labels:
                paths.append(self._path("gtFine", disp, "_gtFine_labelIds.png"))
            out.extend(str(p.relative_to(self.root)) for p in paths)
        return out
