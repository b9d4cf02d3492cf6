"""ETH3D high-resolution multi-view training scenes (Schöps et al. 2017) as a monocular depth set.

Layout (the official ``multi_view_training_dslr_jpg`` and ``multi_view_training_dslr_depth``
archives, extracted into one folder, as Marigold's ETH3D dataset pairs them)::

    ROOT/<scene>/images/dslr_images/DSC_XXXX.JPG               6048x4032 RGB
    ROOT/<scene>/ground_truth_depth/dslr_images/DSC_XXXX.JPG   raw float32 depth (named .JPG!)

The depth file is headerless: height x width little-endian float32, row-major, inf = no depth
(ETH3D documentation, "format of multi-view data"; Marigold ``eth3d_dataset.py``), with the
size of its image. Protocol from Marigold's ETH3D dataset: depth above 1e-5 m, no upper bound
(inf), no crop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from harness.data.depth_base import PairedDepthDataset
from harness.data.files import require_dir, select
from harness.errors import DataError

LAYOUT = """  ROOT/<scene>/images/dslr_images/NAME.JPG
  ROOT/<scene>/ground_truth_depth/dslr_images/NAME.JPG   (raw float32, inf = invalid)"""


class ETH3DDataset(PairedDepthDataset):
    name = "eth3d"
    min_depth, max_depth, default_crop = 1e-5, float("inf"), None
    depth_scale_note = "raw little-endian float32 (H x W, no header), inf = invalid"

    def __init__(self, root: str | Path, split: str = "training", limit: int | None = None,
                 shard: tuple[int, int] | None = None):
        if split not in ("training", "train"):
            raise DataError(f"eth3d: split {split!r} is not 'training'")
        root = require_dir(Path(root), "ETH3D folder", LAYOUT)
        items = [(img, img.parents[2] / "ground_truth_depth" / "dslr_images" / img.name,
                  f"{img.parents[2].name}/{img.stem}", None)
                 for img in sorted(root.glob("*/images/dslr_images/*.JPG"))]
        if not items:
            raise DataError(f"{root}: no <scene>/images/dslr_images/*.JPG found. Expected layout:\n{LAYOUT}",
                            path=str(root))
        super().__init__(root, select(items, limit, shard))

    def read_depth(self, path: Path, sample_id: str) -> np.ndarray:
        image_path = path.parents[2] / "images" / "dslr_images" / path.name
        try:
            with Image.open(image_path) as im:
                w, h = im.size
        except (FileNotFoundError, OSError) as e:
            raise DataError(f"{image_path}: cannot read the image size ({e})", path=str(image_path),
                            sample_id=sample_id) from e
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DataError(f"{path}: depth file is missing", path=str(path), sample_id=sample_id) from None
        if len(data) != 4 * w * h:
            raise DataError(f"{path}: {len(data)} bytes; expected {4 * w * h} (float32 for its {w}x{h} image)",
                            path=str(path), sample_id=sample_id)
        d = np.frombuffer(data, "<f4").reshape(h, w).astype(np.float32)
        d[~np.isfinite(d) | (d < 0)] = 0.0
        return d
