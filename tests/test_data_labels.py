"""Label tables of each dataset: class names, palettes, label sets and the Cityscapes id table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from layouts import (
    write_ade20k,
    write_cityscapes,
    write_coco_stuff,
    write_folder,
    write_pascal_context,
    write_voc,
)
from PIL import Image

from harness.data import load_dataset
from harness.data.ade20k import ADE20K_CLASSES, read_object_info, reduce_zero_label
from harness.data.base import SegmentationDataset
from harness.data.cityscapes import label_ids_to_train_ids
from harness.data.palettes import ADE20K_PALETTE, COCO_STUFF_171_PALETTE, PASCAL_CONTEXT_59_PALETTE
from harness.errors import DataError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# labelId -> trainId of the official Cityscapes table (cityscapesScripts labels.py), all 34 ids.
OFFICIAL_TRAIN_IDS = [255, 255, 255, 255, 255, 255, 255, 0, 1, 255, 255, 2, 3, 4, 255, 255, 255, 5, 255, 6, 7, 8,
                      9, 10, 11, 12, 13, 14, 15, 255, 255, 16, 17, 18]


def test_builtin_ade20k_names_match_the_shipped_object_info():
    info = SHARED / "ade20k" / "ADEChallengeData2016" / "objectInfo150.txt"
    if not info.is_file():
        pytest.skip(f"real ADE20K class table not present at {info}")
    assert read_object_info(info) == ADE20K_CLASSES
    assert ADE20K_CLASSES[89] == "television" and len(set(ADE20K_CLASSES)) == 150


def test_object_info_malformed_names_the_file(tmp_path):
    bad = tmp_path / "objectInfo150.txt"
    bad.write_text("Idx\tRatio\tTrain\tVal\tName\n1\t0.1\twall\n")
    with pytest.raises(DataError, match=r"objectInfo150.txt:2: expected 5 tab-separated columns"):
        read_object_info(bad)


def test_standard_palettes():
    assert ADE20K_PALETTE.shape == (150, 3) and ADE20K_PALETTE.dtype == np.uint8
    assert ADE20K_PALETTE[:3].tolist() == [[120, 120, 120], [180, 120, 120], [6, 230, 230]]
    assert ADE20K_PALETTE[-1].tolist() == [92, 0, 255]
    assert np.array_equal(PASCAL_CONTEXT_59_PALETTE, ADE20K_PALETTE[1:60])
    assert COCO_STUFF_171_PALETTE.shape == (171, 3)
    assert COCO_STUFF_171_PALETTE[2].tolist() == [0, 64, 96] and COCO_STUFF_171_PALETTE[-1].tolist() == [64, 64, 0]


@pytest.mark.parametrize("name,writer,kwargs,label_set", [
    ("ade20k", write_ade20k, {}, "ade20k"),
    ("cityscapes", write_cityscapes, {}, "cityscapes"),
    ("voc", write_voc, {}, "voc"),
    ("pascal-context-59", write_pascal_context, {}, "pascal_context_59"),
    ("coco-stuff-164k", write_coco_stuff, {}, "coco_stuff_171"),
    ("folder", write_folder, {}, None),
])
def test_each_dataset_states_its_label_space(tmp_path, name, writer, kwargs, label_set):
    ds = load_dataset(name, root=str(writer(tmp_path)), **kwargs)
    assert ds.label_set == label_set
    assert len(ds.class_names) == ds.num_classes
    assert ds.palette.shape == (ds.num_classes, 3) and ds.palette.dtype == np.uint8
    s = ds.load(0)
    valid = (s.label == ds.ignore_index) | ((s.label >= 0) & (s.label < ds.num_classes))
    assert s.label.dtype == np.int64 and valid.all()


def test_label_set_defaults_to_none():
    assert SegmentationDataset.label_set is None
    assert load_dataset("synthetic", num_samples=1, image_size=[16, 16]).label_set is None


def test_cityscapes_table_is_the_official_one():
    raw = np.arange(34, dtype=np.uint8).reshape(1, 34)
    assert label_ids_to_train_ids(raw)[0].tolist() == OFFICIAL_TRAIN_IDS


def test_cityscapes_value_that_is_no_label_id_is_reported(tmp_path):
    root = write_cityscapes(tmp_path, cities=("lindau",), per_city=1)
    label = next((root / "gtFine" / "val" / "lindau").glob("*_gtFine_labelIds.png"))
    arr = np.asarray(Image.open(label)).copy()
    arr[:4, :4] = 40
    Image.fromarray(arr, mode="L").save(label)
    ds = load_dataset("cityscapes", root=str(root))
    with pytest.raises(DataError, match=r"stored in the file as \[40\]") as info:
        ds.load(0)
    assert info.value.path == str(label)


def test_cityscapes_real_sample_classes_and_palette():
    root = SHARED / "cityscapes"
    if not root.is_dir():
        pytest.skip(f"real Cityscapes sample not present at {root}")
    ds = load_dataset("cityscapes", root=str(root), split="val")
    s = ds.load(0)
    ref = np.asarray(Image.open(root / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelTrainIds.png"))
    assert set(np.unique(s.label)) <= set(np.unique(ref)) | {255}
    assert ds.class_names[0] == "road" and ds.palette[0].tolist() == [128, 64, 128]


def test_reduce_zero_label_table_equals_the_arithmetic():
    raw = np.arange(256, dtype=np.uint8).reshape(16, 16)
    expected = raw.astype(np.int64) - 1
    expected[raw == 0] = 255
    for stored in (raw, raw.astype(np.int32)):  # uint8 takes the table, other types the arithmetic
        out = reduce_zero_label(stored)
        assert out.dtype == np.int64 and np.array_equal(out, expected)
