"""ADE20K SceneParsing-150 (ADEChallengeData2016), in its official layout or a local HF copy.

Layout::

    ADEChallengeData2016/
      images/{training,validation}/ADE_*.jpg
      annotations/{training,validation}/ADE_*.png   mode L, 0 = other, 1..150 = classes
      objectInfo150.txt                               (optional) the class table

Label convention ``reduce_zero_label``: 0 (other) -> 255 (ignored), k -> k-1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.data.files import PairedFilesDataset, require_dir, select, split_folder_pairs
from harness.data.palettes import ADE20K_PALETTE
from harness.errors import DataError

LAYOUT = """  ADEChallengeData2016/
    images/{split}/*.jpg
    annotations/{split}/*.png   (mode L: 0 = other, 1..150 = classes)"""
SPLITS = {"validation": "validation", "val": "validation", "training": "training", "train": "training"}

# The first name of each class in objectInfo150.txt (class k+1 of the file is train id k).
ADE20K_CLASSES = [
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
]


def read_object_info(path: Path) -> list[str]:
    """Class names from objectInfo150.txt (tab-separated: Idx, Ratio, Train, Val, Name); first synonym."""
    names = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 5:
            raise DataError(f"{path}:{n}: expected 5 tab-separated columns (Idx Ratio Train Val Name)", path=str(path))
        names.append(cols[4].split(",")[0].strip())
    if len(names) != 150:
        raise DataError(f"{path}: lists {len(names)} classes; expected 150", path=str(path))
    return names


def reduce_zero_label(raw: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """0 -> ignore_index, k -> k-1 (values above 150 stay out of range and are reported by the checks)."""
    if raw.dtype == np.uint8:  # a table of the 256 stored values: one pass
        table = np.arange(-1, 255, dtype=np.int64)
        table[0] = ignore_index
        return table[raw]
    out = raw.astype(np.int64) - 1
    out[raw == 0] = ignore_index
    return out


class ADE20KDataset(PairedFilesDataset):
    name = "ade20k"
    label_set = "ade20k"
    num_classes = 150
    ignore_index = 255

    def __init__(self, root: str | Path, split: str = "validation", limit: int | None = None,
                 shard: tuple[int, int] | None = None):
        root = require_dir(Path(root), "ADE20K root", LAYOUT)
        pairs, unpaired = split_folder_pairs(root, split, SPLITS, "ade20k", LAYOUT,
                                             ("images", ".jpg", "ADE20K images"),
                                             ("annotations", ".png", "ADE20K annotations"))
        super().__init__(root, select(pairs, limit, shard), unpaired)
        info = root / "objectInfo150.txt"
        self.class_names = read_object_info(info) if info.is_file() else list(ADE20K_CLASSES)
        self.palette = ADE20K_PALETTE

    def convert_label(self, raw: np.ndarray) -> np.ndarray:
        return reduce_zero_label(raw, self.ignore_index)
