"""Cityscapes (fine annotations) with labelIds mapped to the 19 train ids; everything else -> 255.

Layout::

    cityscapes/
      leftImg8bit/{train,val,test}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
      gtFine/{train,val,test}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.data.files import PairedFilesDataset, require_dir, select, split_folder_pairs

LAYOUT = """  cityscapes/
    leftImg8bit/{split}/{city}/*_leftImg8bit.png
    gtFine/{split}/{city}/*_gtFine_labelIds.png"""
SPLITS = {"validation": "val", "val": "val", "train": "train", "training": "train", "test": "test"}

CLASSES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
           "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
           "bicycle"]
PALETTE = np.array([
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32)],
    dtype=np.uint8)
# labelId -> trainId for the 19 evaluated classes (the official label table)
LABEL_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                  26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


NUM_LABEL_IDS = 34  # labelIds 0..33 exist in gtFine (license plate, id -1, is never drawn)


def label_ids_to_train_ids(raw: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """Map Cityscapes labelIds 0..33 to train ids 0..18, the other labelIds to ``ignore_index``.

    A stored value that is no labelId (outside 0..33) becomes -1, which the sample checks
    report as a label value outside the classes.
    """
    lut = np.full(NUM_LABEL_IDS, ignore_index, dtype=np.int64)
    for k, v in LABEL_TO_TRAIN.items():
        lut[k] = v
    out = np.full(raw.shape, -1, dtype=np.int64)
    valid = (raw >= 0) & (raw < NUM_LABEL_IDS)
    out[valid] = lut[raw[valid]]
    return out


class CityscapesDataset(PairedFilesDataset):
    name = "cityscapes"
    label_set = "cityscapes"
    num_classes = 19
    ignore_index = 255
    class_names = CLASSES
    palette = PALETTE

    def __init__(self, root: str | Path, split: str = "validation", limit: int | None = None,
                 shard: tuple[int, int] | None = None):
        root = require_dir(Path(root), "Cityscapes root", LAYOUT)
        pairs, unpaired = split_folder_pairs(root, split, SPLITS, "cityscapes", LAYOUT,
                                             ("leftImg8bit", "_leftImg8bit.png", "Cityscapes images"),
                                             ("gtFine", "_gtFine_labelIds.png", "Cityscapes gtFine labels"),
                                             subdirs="*/")
        super().__init__(root, select(pairs, limit, shard), unpaired)

    def convert_label(self, raw: np.ndarray) -> np.ndarray:
        return label_ids_to_train_ids(raw, self.ignore_index)
