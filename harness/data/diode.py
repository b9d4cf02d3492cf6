"""DIODE (Vasiljevic et al. 2019), validation split: indoor and outdoor scans.

Layout of the official ``val.tar.gz``::

    ROOT/val/indoors/scene_XXXXX/scan_XXXXX/<name>.png              1024x768 RGB
    ROOT/val/indoors/scene_XXXXX/scan_XXXXX/<name>_depth.npy        float32 metres, (768, 1024, 1)
    ROOT/val/indoors/scene_XXXXX/scan_XXXXX/<name>_depth_mask.npy   (768, 1024), 1 = valid
    ROOT/val/outdoor/...                                            the same for outdoor scans

Depth outside the mask becomes 0. The evaluated range and crop follow the references per
``scene_type``: ``indoors`` 1e-3..10 m with the Eigen crop and ``outdoor`` 1e-3..80 m with the Garg
crop, as ZoeDepth's ``diode_indoor`` / ``diode_outdoor`` configs; ``all`` 0.6..350 m without crop,
as Marigold's DIODE dataset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.data.depth_base import PairedDepthDataset, read_depth_npy
from harness.data.files import require_dir, select
from harness.errors import DataError

LAYOUT = """  ROOT/val/{indoors,outdoor}/scene_*/scan_*/NAME.png + NAME_depth.npy + NAME_depth_mask.npy"""
PROTOCOLS = {"indoors": (1e-3, 10.0, "eigen"), "outdoor": (1e-3, 80.0, "garg"), "all": (0.6, 350.0, None)}


class DIODEDataset(PairedDepthDataset):
    """Options: scene_type (indoors | outdoor | all)."""

    name = "diode"
    depth_scale_note = "float32 .npy metres with a separate validity mask (_depth_mask.npy)"

    def __init__(self, root: str | Path, split: str = "val", limit: int | None = None,
                 shard: tuple[int, int] | None = None, scene_type: str = "indoors"):
        if split not in ("val", "validation"):
            raise DataError(f"diode: split {split!r} is not 'val'")
        if scene_type not in PROTOCOLS:
            raise DataError(f"diode: scene_type {scene_type!r} is not one of {', '.join(PROTOCOLS)}")
        root = require_dir(Path(root), "DIODE folder", LAYOUT)
        self.min_depth, self.max_depth, self.default_crop = PROTOCOLS[scene_type]
        kinds = ("indoors", "outdoor") if scene_type == "all" else (scene_type,)
        items = []
        for kind in kinds:
            base = require_dir(root / "val" / kind, f"DIODE val/{kind} folder", LAYOUT)
            for img in sorted(base.glob("scene_*/scan_*/*.png")):
                sid = f"{kind}/{img.relative_to(base).with_suffix('').as_posix()}"
                items.append((img, img.with_name(img.stem + "_depth.npy"), sid, None))
        if not items:
            raise DataError(f"{root}: no DIODE images found. Expected layout:\n{LAYOUT}", path=str(root))
        super().__init__(root, select(items, limit, shard))

    def read_depth(self, path: Path, sample_id: str) -> np.ndarray:
        depth = read_depth_npy(path, sample_id).astype(np.float32)
        mask_path = path.with_name(path.name[: -len("_depth.npy")] + "_depth_mask.npy")
        mask = read_depth_npy(mask_path, sample_id)
        if mask.shape != depth.shape:
            raise DataError(f"{mask_path}: mask {mask.shape} does not match depth {depth.shape}", path=str(mask_path),
                            sample_id=sample_id)
        depth[(mask == 0) | ~np.isfinite(depth)] = 0.0
        return depth

    def files(self) -> list[str]:
        out = []
        for image, depth, _, _ in self.items:
            mask = depth.with_name(depth.name[: -len("_depth.npy")] + "_depth_mask.npy")
            out.extend(str(p.relative_to(self.root)) for p in (image, depth, mask))
        return out
