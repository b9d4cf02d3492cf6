"""KITTI depth, Eigen test split: raw images with the annotated (``proj_depth/groundtruth``) depth.

Layout, as BTS, ZoeDepth, Marigold and the DPT evaluation read it::

    ROOT/<date>/<drive>/image_02/data/<frame>.png          raw RGB (1242x375 or so)
    ROOT/<date>/calib_cam_to_cam.txt                        optional: intrinsics from P_rect_02
    GT_ROOT/<drive>/proj_depth/groundtruth/image_02/<frame>.png   uint16, value / 256 = m, 0 = invalid
          (the official data_depth_annotated archive puts drives under train/ and val/: both are searched)

The split comes from the user's list file, in one of two formats:

- BTS / ZoeDepth ``eigen_test_files_with_gt.txt``: ``<image> <gt|None> <focal>`` per line, 697
  lines, 45 of them with ``None``;
- monodepth2 ``splits/eigen/test_files.txt``: ``<date>/<drive> <frame> l|r`` per line.

A frame the list gives no ground truth for, or whose ground-truth file is absent, is not a
sample: it is recorded in ``excluded`` with the reason (the references skip these frames and
evaluate 652 of the 697). A listed image that is missing is a broken sample (DataError).
``kb_crop`` (default on, as ZoeDepth and Marigold) crops image and depth to the KITTI benchmark's
352x1216 bottom-centre box; intrinsics are shifted with it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from harness.data.depth_base import PairedDepthDataset, decode_depth, list_lines, parse_focal, read_depth_raw
from harness.data.files import require_dir, select
from harness.depth.crops import kb_box
from harness.errors import DataError

LAYOUT = """  ROOT/<date>/<drive>/image_02/data/<frame>.png
  GT_ROOT/[train|val/]<drive>/proj_depth/groundtruth/image_02/<frame>.png
  list_file: eigen_test_files_with_gt.txt (697 lines; BTS train_test_inputs/) or monodepth2 test_files.txt"""
NOTE = "uint16 PNG, value / 256 = m, 0 = invalid (annotated depth, proj_depth/groundtruth)"
_DRIVE = re.compile(r"(\d{4}_\d{2}_\d{2})_drive_\d{4}_sync")


def read_calib(path: Path) -> dict | None:
    """fx, fy, cx, cy of camera 2 from ``calib_cam_to_cam.txt`` (its P_rect_02 line), or None if absent."""
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("P_rect_02:"):
            values = line.split(":", 1)[1].split()
            try:
                p = [float(v) for v in values]
            except ValueError:
                raise DataError(f"{path}: P_rect_02 holds non-numbers", path=str(path)) from None
            if len(p) != 12:
                raise DataError(f"{path}: P_rect_02 has {len(p)} values; expected 12 (a 3x4 matrix)", path=str(path))
            return {"fx": p[0], "fy": p[5], "cx": p[2], "cy": p[6]}
    raise DataError(f"{path}: no P_rect_02 line", path=str(path))


def parse_list(list_file: Path) -> list[dict]:
    """Entries ``{image, gt (relative path or None), focal, drive, frame, camera}`` of an Eigen list file."""
    out = []
    for n, parts, line in list_lines(list_file, LAYOUT):
        if len(parts) == 3 and parts[2] in ("l", "r"):  # monodepth2: <date>/<drive> <frame> <side>
            folder, frame, side = parts
            cam = "image_02" if side == "l" else "image_03"
            drive = Path(folder).name
            out.append({"image": f"{folder}/{cam}/data/{int(frame):010d}.png", "focal": None, "drive": drive,
                        "frame": f"{int(frame):010d}", "camera": cam,
                        "gt": f"{drive}/proj_depth/groundtruth/{cam}/{int(frame):010d}.png"})
            continue
        if len(parts) != 3:
            raise DataError(f"{list_file}:{n}: expected '<image> <gt|None> <focal>' or '<date>/<drive> <frame> l|r', "
                            f"got {line!r}", path=str(list_file))
        image, gt, focal = parts
        focal_v = parse_focal(focal, list_file, n)
        p = Path(image)
        if len(p.parts) < 4 or p.parts[-2] != "data":
            raise DataError(f"{list_file}:{n}: image path {image!r} is not <date>/<drive>/image_0X/data/<frame>.png",
                            path=str(list_file))
        out.append({"image": image.lstrip("/"), "gt": None if gt == "None" else gt.lstrip("/"), "focal": focal_v,
                    "drive": p.parts[-4], "frame": p.stem, "camera": p.parts[-3]})
    return out


class KITTIEigenDataset(PairedDepthDataset):
    """Options: list_file (required), gt_root (default: root), kb_crop (default true)."""

    name = "kitti-eigen"
    min_depth, max_depth, default_crop = 1e-3, 80.0, "garg"
    depth_scale_note = NOTE

    def __init__(self, root: str | Path, split: str = "test", limit: int | None = None,
                 shard: tuple[int, int] | None = None, list_file: str | None = None, gt_root: str | None = None,
                 kb_crop: bool = True):
        if split not in ("test", "validation"):
            raise DataError(f"kitti-eigen: split {split!r} is not 'test' (the Eigen test split given by list_file)")
        root = require_dir(Path(root), "KITTI raw data folder", LAYOUT)
        if list_file is None:
            raise DataError(f"kitti-eigen: no list_file given (eigen_test_files_with_gt.txt from BTS or ZoeDepth, "
                            f"or monodepth2's splits/eigen/test_files.txt). Expected layout:\n{LAYOUT}")
        lf = Path(list_file) if Path(list_file).is_absolute() else root / list_file
        gt_base = require_dir(Path(gt_root), "KITTI annotated depth folder", LAYOUT) if gt_root else root
        self.kb_crop = bool(kb_crop)
        items, excluded, calib = [], [], {}
        for entry in parse_list(lf):
            sid = f"{entry['drive']}/{entry['camera']}/{entry['frame']}"
            if entry["gt"] is None:
                excluded.append({"id": sid, "path": entry["image"], "reason": "the list gives no ground truth (None)"})
                continue
            gt = self._find_gt(gt_base, entry["gt"])
            if gt is None:
                excluded.append({"id": sid, "path": entry["gt"], "reason": "ground-truth file not found"})
                continue
            items.append((root / entry["image"], gt, sid, self._intrinsics(root, entry, calib)))
        self.num_listed = len(items) + len(excluded)
        items.sort(key=lambda it: it[2])
        super().__init__(root, select(items, limit, shard), excluded)

    @staticmethod
    def _find_gt(base: Path, relative: str) -> Path | None:
        for candidate in (base / relative, base / "train" / relative, base / "val" / relative):
            if candidate.is_file():
                return candidate
        return None

    @staticmethod
    def _intrinsics(root: Path, entry: dict, cache: dict) -> dict | None:
        m = _DRIVE.match(entry["drive"])
        intr = None
        if m:
            date = m.group(1)
            if date not in cache:
                cache[date] = read_calib(root / date / "calib_cam_to_cam.txt")
            intr = dict(cache[date]) if cache[date] else None
        if intr is None and entry["focal"] is not None:
            intr = {"fx": entry["focal"], "fy": entry["focal"]}
        return intr

    def read_depth(self, path: Path, sample_id: str) -> np.ndarray:
        return decode_depth(read_depth_raw(path, sample_id), 256.0)

    def transform(self, image: Image.Image, depth: np.ndarray, intrinsics: dict | None, path: Path, sample_id: str):
        if not self.kb_crop:
            return image, depth, intrinsics
        try:
            top, bottom, left, right = kb_box(image.height, image.width)
        except ValueError as e:
            raise DataError(f"{path}: {e}", path=str(path), sample_id=sample_id) from e
        if intrinsics:
            intrinsics = dict(intrinsics)
            if "cx" in intrinsics:
                intrinsics["cx"] -= left
            if "cy" in intrinsics:
                intrinsics["cy"] -= top
        return image.crop((left, top, right, bottom)), depth[top:bottom, left:right], intrinsics
