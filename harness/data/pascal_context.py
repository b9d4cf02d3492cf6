"""Pascal Context, 59-class variant, in the layout the common converters produce (mmsegmentation's
``tools/dataset_converters/pascal_context.py`` writes SegmentationClassContext from the 459-class
``trainval_merged.json``).

Layout::

    VOCdevkit/VOC2010/
      JPEGImages/*.jpg
      SegmentationClassContext/*.png     mode L: 0 = background (not evaluated), 1..59 = classes
      ImageSets/SegmentationContext/{train,val}.txt

Label convention (the 59-class benchmark): 0 -> 255 (ignored), k -> k-1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.data.ade20k import reduce_zero_label
from harness.data.files import (
    PairedFilesDataset,
    pair_by_id,
    read_id_list,
    require_dir,
    select,
)
from harness.data.palettes import PASCAL_CONTEXT_59_PALETTE
from harness.errors import DataError

LAYOUT = """  VOCdevkit/VOC2010/
    JPEGImages/*.jpg
    SegmentationClassContext/*.png   (mode L: 0 = background, 1..59 = classes)
    ImageSets/SegmentationContext/{split}.txt"""
SPLITS = {"validation": "val", "val": "val", "train": "train", "training": "train"}
CLASSES = ["aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle",
           "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup",
           "curtain", "dog", "door", "fence", "floor", "flower", "food", "grass", "ground", "horse", "keyboard",
           "light", "motorbike", "mountain", "mouse", "person", "plate", "platform", "pottedplant", "road", "rock",
           "sheep", "shelves", "sidewalk", "sign", "sky", "snow", "sofa", "table", "track", "train", "tree",
           "truck", "tvmonitor", "wall", "water", "window", "wood"]


class PascalContext59Dataset(PairedFilesDataset):
    name = "pascal-context-59"
    label_set = "pascal_context_59"
    num_classes = 59
    ignore_index = 255
    class_names = CLASSES

    def __init__(self, root: str | Path, split: str = "validation", limit: int | None = None,
                 shard: tuple[int, int] | None = None):
        root = require_dir(Path(root), "Pascal Context (VOC2010) root", LAYOUT)
        if split not in SPLITS:
            raise DataError(f"pascal-context-59: split {split!r} is not one of {', '.join(SPLITS)}")
        split_file = root / "ImageSets" / "SegmentationContext" / f"{SPLITS[split]}.txt"
        ids = read_id_list(split_file, LAYOUT)
        require_dir(root / "SegmentationClassContext", "SegmentationClassContext folder", LAYOUT)
        pairs, unpaired = pair_by_id(root, ids, "SegmentationClassContext", str(split_file))
        super().__init__(root, select(pairs, limit, shard), unpaired)
        self.palette = PASCAL_CONTEXT_59_PALETTE

    def convert_label(self, raw: np.ndarray) -> np.ndarray:
        return reduce_zero_label(raw, self.ignore_index)
