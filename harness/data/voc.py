"""Pascal VOC 2012 segmentation: palette PNG labels (index = class, 255 = boundary, ignored).

Layout::

    VOCdevkit/VOC2012/
      JPEGImages/*.jpg
      SegmentationClass/*.png          mode P, VOC palette
      ImageSets/Segmentation/{train,val,trainval}.txt
"""

from __future__ import annotations

from pathlib import Path

from harness.data.files import PairedFilesDataset, pair_by_id, read_id_list, require_dir, select, voc_palette
from harness.errors import DataError

LAYOUT = """  VOCdevkit/VOC2012/
    JPEGImages/*.jpg
    SegmentationClass/*.png   (mode P; index = class, 255 = boundary)
    ImageSets/Segmentation/{split}.txt"""
SPLITS = {"validation": "val", "val": "val", "train": "train", "training": "train", "trainval": "trainval",
          "all": "all"}
CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
           "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
           "tvmonitor"]


class VOCDataset(PairedFilesDataset):
    name = "voc"
    label_set = "voc"
    num_classes = 21
    ignore_index = 255
    class_names = CLASSES

    def __init__(self, root: str | Path, split: str = "validation", limit: int | None = None,
                 shard: tuple[int, int] | None = None):
        root = require_dir(Path(root), "VOC2012 root", LAYOUT)
        if split not in SPLITS:
            raise DataError(f"voc: split {split!r} is not one of {', '.join(SPLITS)}")
        if SPLITS[split] == "all":  # every annotated image, for copies without ImageSets
            split_file = root / "SegmentationClass"
            require_dir(split_file, "VOC SegmentationClass folder", LAYOUT)
            ids = sorted(p.stem for p in split_file.glob("*.png"))
        else:
            split_file = root / "ImageSets" / "Segmentation" / f"{SPLITS[split]}.txt"
            ids = read_id_list(split_file, LAYOUT + "\n(or use split: all to take every annotated image)")
        pairs, unpaired = pair_by_id(root, ids, "SegmentationClass", str(split_file))
        super().__init__(root, select(pairs, limit, shard), unpaired)
        self.palette = voc_palette(256)[:21]
