"""Dataset registry: ``load_dataset(name, root=None, split="validation", **options)``."""

from __future__ import annotations

import importlib
import inspect
import os
from pathlib import Path

from harness.data.base import DatasetInfo, Sample, SegmentationDataset
from harness.errors import ConfigError, did_you_mean

__all__ = ["load_dataset", "check_dataset", "DATASETS", "dataset_infos", "Sample", "SegmentationDataset"]


# name -> "module:class" under harness.data, imported only when the dataset is used
_CLASSES = {
    "synthetic": "synthetic:SyntheticDataset",
    "ade20k": "ade20k:ADE20KDataset",
    "ade20k-hf": "hf:ADE20KHFDataset",
    "cityscapes": "cityscapes:CityscapesDataset",
    "voc": "voc:VOCDataset",
    "pascal-context-59": "pascal_context:PascalContext59Dataset",
    "coco-stuff-164k": "coco_stuff:COCOStuff164kDataset",
    "folder": "folder:FolderDataset",
    # depth (task "depth": samples are harness.data.depth_base.DepthSample)
    "synthetic-depth": "synthetic_depth:SyntheticDepthDataset",
    "nyu-depth-v2": "nyu_depth:NYUDepthV2Dataset",
    "nyu-depth-v2-labeled": "nyu_depth:NYULabeledDataset",
    "kitti-eigen": "kitti_depth:KITTIEigenDataset",
    "diode": "diode:DIODEDataset",
    "rgbd-folder": "rgbd_folder:RGBDFolderDataset",
    "sintel": "sintel:SintelDepthDataset",
    "eth3d": "eth3d:ETH3DDataset",
    "cityscapes-depth": "cityscapes_depth:CityscapesDepthDataset",
}


def _factory(name: str):
    module, cls = _CLASSES[name].split(":")
    return getattr(importlib.import_module(f"harness.data.{module}"), cls)


DATASETS: dict[str, DatasetInfo] = {
    "synthetic": DatasetInfo("synthetic", "seeded synthetic images with structured label maps (offline, CI)",
                             150, 255, None, "(generated; no files)", extra={"label_set": None}),
    "ade20k": DatasetInfo("ade20k", "ADE20K SceneParsing-150, official layout, reduce_zero_label", 150, 255,
                          "ADEChallengeData2016", "images/{split}/*.jpg + annotations/{split}/*.png",
                          ("validation", "training"), {"label_set": "ade20k"}),
    "ade20k-hf": DatasetInfo("ade20k-hf", "ADE20K from a local Hugging Face datasets copy", 150, 255,
                             "ade20k-hf", "save_to_disk folder or data/{split}-*.parquet",
                             ("validation", "train"), {"label_set": "ade20k"}),
    "cityscapes": DatasetInfo("cityscapes", "Cityscapes fine, labelIds -> 19 train ids", 19, 255, "cityscapes",
                              "leftImg8bit/{split}/{city}/*_leftImg8bit.png + gtFine/{split}/{city}/*_gtFine_labelIds.png",
                              ("val", "train", "test"), {"label_set": "cityscapes"}),
    "voc": DatasetInfo("voc", "Pascal VOC 2012 segmentation, 21 classes, 255 = boundary", 21, 255,
                       "VOCdevkit/VOC2012", "JPEGImages/*.jpg + SegmentationClass/*.png + "
                       "ImageSets/Segmentation/{split}.txt", ("val", "train", "trainval"), {"label_set": "voc"}),
    "pascal-context-59": DatasetInfo("pascal-context-59", "Pascal Context, 59 classes (converted layout), "
                                     "0 = background ignored", 59, 255, "VOCdevkit/VOC2010",
                                     "JPEGImages/*.jpg + SegmentationClassContext/*.png + "
                                     "ImageSets/SegmentationContext/{split}.txt", ("val", "train"),
                                     {"label_set": "pascal_context_59"}),
    "coco-stuff-164k": DatasetInfo("coco-stuff-164k", "COCO-Stuff 164k, 171 classes (converted layout)", 171, 255,
                                   "coco_stuff164k", "images/{split}2017/*.jpg + annotations/{split}2017/"
                                   "*_labelTrainIds.png", ("val2017", "train2017"), {"label_set": "coco_stuff_171"}),
    "folder": DatasetInfo("folder", "your own data: images/ + masks/ paired by stem, classes.txt", 0, 255, None,
                          "images/NAME.jpg + masks/NAME.png + classes.txt", extra={"label_set": None}),
    "synthetic-depth": DatasetInfo("synthetic-depth", "seeded synthetic room scenes with metric depth (offline, CI)",
                                   0, 255, None, "(generated; no files)",
                                   extra={"task": "depth", "needs_root": False, "label_set": None,
                                          "labels_when": "num_classes"}),
    "nyu-depth-v2": DatasetInfo("nyu-depth-v2", "NYU-Depth-v2 test, BTS official_splits layout (654 with the BTS list)",
                                0, 255, "nyu_depth_v2/official_splits/test",
                                "<scene>/rgb_XXXXX.jpg + <scene>/sync_depth_XXXXX.png (mm); list_file", ("test",),
                                {"task": "depth", "label_set": None}),
    "nyu-depth-v2-labeled": DatasetInfo("nyu-depth-v2-labeled", "NYU-Depth-v2 labeled .mat (h5py), official split, "
                                        "depth + optional 40-class labels", 0, 255, "nyu_depth_v2",
                                        "nyu_depth_v2_labeled.mat + splits.mat [+ classMapping40.mat]",
                                        ("test", "train", "all"), {"task": "depth", "label_set": "nyu40",
                                                                   "labels_when": "class_mapping"}),
    "kitti-eigen": DatasetInfo("kitti-eigen", "KITTI Eigen test split: raw images + annotated depth (652 of 697)",
                               0, 255, "kitti", "<date>/<drive>/image_02/data/*.png + <drive>/proj_depth/groundtruth/"
                               "image_02/*.png; list_file", ("test",), {"task": "depth", "label_set": None}),
    "diode": DatasetInfo("diode", "DIODE val, indoors / outdoor (.npy depth + mask)", 0, 255, "diode",
                         "val/{indoors,outdoor}/scene_*/scan_*/NAME.png + NAME_depth.npy + NAME_depth_mask.npy",
                         ("val",), {"task": "depth", "label_set": None}),
    "rgbd-folder": DatasetInfo("rgbd-folder", "your own RGB-D data: images/ + depth/ paired by name, with a scale",
                               0, 255, None, "images/NAME.jpg + depth/NAME.png|npy (depth_scale, invalid_value)",
                               extra={"task": "depth", "label_set": None}),
    "sintel": DatasetInfo("sintel", "MPI Sintel training set with ground-truth depth (.dpt)", 0, 255, "sintel",
                          "training/{final,clean}/<scene>/frame_*.png + training/depth/<scene>/frame_*.dpt",
                          ("training",), {"task": "depth", "label_set": None}),
    "eth3d": DatasetInfo("eth3d", "ETH3D high-res multi-view training scenes, DSLR depth (raw float32)", 0, 255,
                         "eth3d", "<scene>/images/dslr_images/*.JPG + <scene>/ground_truth_depth/dslr_images/*.JPG",
                         ("training",), {"task": "depth", "label_set": None}),
    "cityscapes-depth": DatasetInfo("cityscapes-depth", "Cityscapes: depth from disparity + camera, and the 19-class "
                                    "labels of the same images", 19, 255, "cityscapes",
                                    "leftImg8bit/{split}/{city}/*_leftImg8bit.png + disparity/.../*_disparity.png + "
                                    "camera/.../*_camera.json [+ gtFine/.../*_gtFine_labelIds.png]",
                                    ("val", "train", "test"), {"task": "depth", "label_set": "cityscapes",
                                                                  "labels_when": "labels"}),
}


def data_home() -> Path:
    """Where default dataset roots live: $SEGBENCH_DATA, or ./data."""
    return Path(os.environ.get("SEGBENCH_DATA", "data"))


def default_root(name: str) -> Path | None:
    info = DATASETS[name]
    return data_home() / info.default_root if info.default_root else None


def options_of(name: str) -> list[str]:
    """Names of the options dataset ``name`` accepts (beyond root, split, limit and shard)."""
    params = inspect.signature(_factory(name).__init__).parameters
    return [p for p in params if p not in ("self", "root", "split", "limit", "shard")]


def _check_subset(limit, shard) -> None:
    """``limit`` must be a positive integer or None; ``shard`` a pair (k, n) with 0 <= k < n, or None."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"dataset limit {limit!r}: expected a positive integer (number of samples) or none")
    if shard is not None:
        ok = (isinstance(shard, (tuple, list)) and len(shard) == 2
              and all(isinstance(v, int) and not isinstance(v, bool) for v in shard)
              and shard[1] >= 1 and 0 <= shard[0] < shard[1])
        if not ok:
            raise ConfigError(f"dataset shard {shard!r}: expected (k, n) with integers 0 <= k < n")


def check_dataset(name: str, options: dict) -> None:
    """ConfigError for an unknown dataset name, an unknown option or a bad option value (nothing is read)."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}{did_you_mean(name, DATASETS)}; "
                          f"known datasets: {', '.join(DATASETS)}")
    allowed = options_of(name)
    for key in options:
        if key not in allowed:
            raise ConfigError(f"dataset {name!r}: unknown option {key!r}{did_you_mean(key, allowed)}; "
                              f"allowed options: {', '.join(allowed) or 'none'}")
    _factory(name).check_options(**options)


def load_dataset(name: str, root: str | None = None, split: str = "validation", limit: int | None = None,
                 shard: tuple[int, int] | None = None, **options) -> SegmentationDataset:
    """Build a registered dataset. ``limit`` keeps the first N samples (sorted order);
    ``shard=(k, n)`` then keeps every n-th from k. Unknown names or options are ConfigErrors."""
    check_dataset(name, options)
    _check_subset(limit, shard)
    cls = _factory(name)
    if name == "synthetic" or not DATASETS[name].extra.get("needs_root", True):
        return cls(limit=limit, shard=shard, **options)
    if root is None:
        root = default_root(name)
        if root is None:
            raise ConfigError(f"dataset {name!r} needs a root folder (root: /path/to/data)")
    return cls(root=root, split=split, limit=limit, shard=shard, **options)


def _tasks_text(info: DatasetInfo) -> str:
    """The tasks a dataset scores, e.g. ``depth`` or ``depth+segmentation (with class_mapping)``."""
    primary = info.extra.get("task", "segmentation")
    option = info.extra.get("labels_when")
    return primary if option is None else f"{primary}+segmentation (with {option})"


def dataset_infos() -> list[dict]:
    """One row per registered dataset for ``segbench datasets``: what it is, where it is looked for, found or not."""
    rows = []
    for name, info in DATASETS.items():
        root = default_root(name)
        rows.append({"name": name, "description": info.description, "num_classes": info.num_classes or None,
                     "ignore_index": info.ignore_index, "label_set": info.extra.get("label_set"),
                     "task": info.extra.get("task", "segmentation"),
                     "tasks": _tasks_text(info),
                     "root": str(root) if root else "-", "layout": info.layout, "splits": list(info.splits),
                     "options": options_of(name),
                     "found": (root.exists() if root else not info.extra.get("needs_root", name != "synthetic"))})
    return rows
