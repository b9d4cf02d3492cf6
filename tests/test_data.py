"""Datasets in their official layouts (written by the tests), the real samples in ../shared/data,
label conventions, deterministic subsets, and every kind of broken input."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from layouts import write_ade20k, write_cityscapes, write_folder, write_voc
from PIL import Image

from harness.data import dataset_infos, load_dataset
from harness.data.loader import make_loader
from harness.errors import ConfigError, DataError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def need_shared(sub: str) -> Path:
    p = SHARED / sub
    if not p.exists():
        pytest.skip(f"real samples not present at {p} (the ../shared/data folder beside the repository)")
    return p


# -- synthetic --------------------------------------------------------------------------
def test_synthetic_is_deterministic_structured_and_never_zero():
    a = load_dataset("synthetic", num_samples=3, image_size=[40, 60], num_classes=10, seed=3)
    b = load_dataset("synthetic", num_samples=3, image_size=[40, 60], num_classes=10, seed=3)
    c = load_dataset("synthetic", num_samples=3, image_size=[40, 60], num_classes=10, seed=4)
    for i in range(3):
        sa, sb = a.load(i), b.load(i)
        assert np.array_equal(np.asarray(sa.image), np.asarray(sb.image)) and np.array_equal(sa.label, sb.label)
        img = np.asarray(sa.image)
        assert img.min() >= 1 and img.shape == (40, 60, 3)
        labels = set(np.unique(sa.label)) - {255}
        assert len(labels) >= 2 and labels <= set(range(10))
        # structured: most pixels share their right neighbour's label (regions, not noise)
        assert np.mean(sa.label[:, 1:] == sa.label[:, :-1]) > 0.8
    assert a.digest() == b.digest() and a.digest() != c.digest()
    assert not np.array_equal(np.asarray(a.load(0).image), np.asarray(c.load(0).image))


def test_synthetic_sizes_cycle_and_options_are_checked():
    ds = load_dataset("synthetic", num_samples=3, image_size=[[16, 20], [24, 32]], num_classes=5)
    assert [ds.load(i).label.shape for i in range(3)] == [(16, 20), (24, 32), (16, 20)]
    with pytest.raises(ConfigError, match="unknown option 'num_sample'.*did you mean: num_samples"):
        load_dataset("synthetic", num_sample=3)
    with pytest.raises(ConfigError, match="image_size"):
        load_dataset("synthetic", image_size=[4, 4])
    with pytest.raises(ConfigError, match="num_classes 0 must be an integer in 1..1000"):
        load_dataset("synthetic", num_classes=0)


def test_unknown_dataset_suggests():
    with pytest.raises(ConfigError, match=r"unknown dataset 'ade20' \(did you mean: ade20k"):
        load_dataset("ade20")


# -- ADE20K ----------------------------------------------------------------------------
def test_ade20k_layout_and_reduce_zero_label(tmp_path):
    root = write_ade20k(tmp_path, n=4)
    ds = load_dataset("ade20k", root=str(root))
    assert len(ds) == 4 and ds.num_classes == 150 and ds.label_set == "ade20k"
    s = ds.load(0)
    raw = np.asarray(Image.open(root / "annotations" / "validation" / f"{s.id}.png")).astype(np.int64)
    assert np.array_equal(s.label, np.where(raw == 0, 255, raw - 1))
    assert s.label.dtype == np.int64 and s.label.shape == (s.image.height, s.image.width)
    assert ds.files()[:2] == [f"images/validation/{s.id}.jpg", f"annotations/validation/{s.id}.png"]
    assert ds.class_names[0] == "wall" and len(ds.class_names) == 150


def test_limit_and_shard_are_deterministic(tmp_path):
    root = write_ade20k(tmp_path, n=7)
    ids = [load_dataset("ade20k", root=str(root)).sample_id(i) for i in range(7)]
    lim = load_dataset("ade20k", root=str(root), limit=5)
    assert [lim.sample_id(i) for i in range(len(lim))] == ids[:5]
    shards = [load_dataset("ade20k", root=str(root), limit=5, shard=(k, 2)) for k in range(2)]
    got = [s.sample_id(i) for s in shards for i in range(len(s))]
    assert sorted(got) == ids[:5] and len(shards[0]) == 3 and len(shards[1]) == 2
    assert lim.digest() == load_dataset("ade20k", root=str(root), limit=5).digest()
    assert lim.digest() != load_dataset("ade20k", root=str(root), limit=4).digest()


def test_ade20k_real_samples():
    root = need_shared("ade20k/ADEChallengeData2016")
    ds = load_dataset("ade20k", root=str(root))
    assert [ds.sample_id(i) for i in range(len(ds))] == ["ADE_val_00000001", "ADE_val_00000002"]
    for i in range(2):
        s = ds.load(i)
        raw = np.asarray(Image.open(root / "annotations" / "validation" / f"{s.id}.png"))
        assert np.array_equal(s.label == 255, raw == 0)
        assert s.label[raw > 0].max() <= 149
    assert ds.class_names[:3] == ["wall", "building", "sky"]  # read from the shipped objectInfo150.txt


# -- Cityscapes ------------------------------------------------------------------------
def test_cityscapes_layout_maps_label_ids_to_train_ids(tmp_path):
    root = write_cityscapes(tmp_path)
    ds = load_dataset("cityscapes", root=str(root), split="val")
    assert len(ds) == 4 and ds.num_classes == 19
    s = ds.load(0)
    city = s.id.split("_")[0]
    raw = np.asarray(Image.open(root / "gtFine" / "val" / city / f"{s.id}_gtFine_labelIds.png"))
    table = {7: 0, 8: 1, 11: 2, 21: 8, 23: 10, 24: 11, 26: 13, 33: 18}
    for label_id in np.unique(raw):
        assert np.all(s.label[raw == label_id] == table.get(int(label_id), 255))
    assert load_dataset("cityscapes", root=str(root), split="validation").digest() == ds.digest()


def test_cityscapes_real_sample_agrees_with_train_ids_file():
    root = need_shared("cityscapes")
    ds = load_dataset("cityscapes", root=str(root))
    s = ds.load(0)
    ref = np.asarray(Image.open(root / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelTrainIds.png"))
    agreement = np.mean(s.label == ref)
    assert agreement >= 0.99, agreement  # the shipped sample is downscaled (nearest), so not 100%


# -- VOC -------------------------------------------------------------------------------
def test_voc_palette_labels_and_boundary(tmp_path):
    root = write_voc(tmp_path)
    ds = load_dataset("voc", root=str(root), split="val")
    s = ds.load(0)
    assert Image.open(root / "SegmentationClass" / f"{s.id}.png").mode == "P"
    assert set(np.unique(s.label)) <= set(range(21)) | {255} and (s.label == 255).any()
    assert ds.class_names[15] == "person" and tuple(ds.palette[1]) == (128, 0, 0)


def test_voc_missing_split_file_names_it(tmp_path):
    root = write_voc(tmp_path)
    (root / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.raises(DataError, match=r"ImageSets/Segmentation/val.txt: split file not found"):
        load_dataset("voc", root=str(root))


def test_voc_real_sample(tmp_path):
    real = need_shared("voc2012/VOCdevkit/VOC2012")
    root = tmp_path / "VOC2012"
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for d in ("JPEGImages", "SegmentationClass"):
        (root / d).symlink_to(real / d)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000063\n")
    s = load_dataset("voc", root=str(root)).load(0)
    assert set(np.unique(s.label)) == {0, 9, 12, 255}  # background, chair, dog, boundary


# -- generic folder -------------------------------------------------------------------
def test_folder_dataset(tmp_path):
    root = write_folder(tmp_path, mask_suffix="_mask")
    ds = load_dataset("folder", root=str(root), mask_suffix="_mask")
    assert len(ds) == 3 and ds.class_names == ["sky", "road", "car"] and ds.num_classes == 3


def test_folder_real_camvid():
    root = need_shared("camvid")
    ds = load_dataset("folder", root=str(root), masks_dir="labels", mask_suffix="_P")
    assert len(ds) == 2 and ds.num_classes == 32 and ds.class_names[0] == "Animal"
    s = ds.load(0)
    assert s.label.shape == (720, 960) and s.label.max() < 32


def test_folder_without_class_list(tmp_path):
    root = write_folder(tmp_path)
    (root / "classes.txt").unlink()
    with pytest.raises(DataError, match="no class list"):
        load_dataset("folder", root=str(root))
    assert load_dataset("folder", root=str(root), num_classes=3).num_classes == 3


# -- broken data ---------------------------------------------------------------------
def test_missing_root_shows_the_expected_layout(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("ade20k", root=str(tmp_path / "nowhere"))
    assert "Expected layout" in str(info.value) and "annotations/{split}/*.png" in str(info.value)
    root = write_ade20k(tmp_path)
    with pytest.raises(DataError, match="ADE20K images for split 'training' not found"):
        load_dataset("ade20k", root=str(root), split="training")


def _ade_with(tmp_path, breakage):
    root = write_ade20k(tmp_path, n=4)
    victim = sorted((root / "images" / "validation").glob("*.jpg"))[1]
    label = root / "annotations" / "validation" / f"{victim.stem}.png"
    breakage(victim, label)
    return root, victim.stem


BREAKAGES = {
    "truncated image": (lambda img, lab: img.write_bytes(img.read_bytes()[:200]), "unreadable or truncated image"),
    "not an image": (lambda img, lab: img.write_text("hello"), "unreadable or truncated image"),
    "label size differs": (lambda img, lab: Image.new("L", (5, 5)).save(lab), "label is 5x5 but its image is"),
    "label value out of range": (lambda img, lab: Image.fromarray(np.full((56, 64), 200, np.uint8), "L").save(lab),
                                 "label values [199] are outside 0..149"),
    "RGB label": (lambda img, lab: Image.new("RGB", (64, 56)).save(lab), "expected a single-channel"),
    "label without image": (lambda img, lab: img.unlink(), "label without image"),
    "image without label": (lambda img, lab: lab.unlink(), "image without label"),
}


@pytest.mark.parametrize("kind", list(BREAKAGES))
def test_broken_sample_error_or_recorded_skip(tmp_path, kind):
    breakage, message = BREAKAGES[kind]
    root, stem = _ade_with(tmp_path, breakage)
    ds = load_dataset("ade20k", root=str(root))
    with pytest.raises(DataError, match=re.escape(message)) as info:
        list(make_loader(ds, batch_size=2, on_bad_sample="error"))
    assert stem in str(info.value)
    batches = list(make_loader(ds, batch_size=2, on_bad_sample="skip"))
    skipped = [s for b in batches for s in b.skipped]
    kept = [i for b in batches for i in b.ids]
    assert len(skipped) == 1 and skipped[0]["id"] == stem and message in skipped[0]["reason"]
    assert len(kept) == 3 and stem not in kept


def test_loader_workers_and_preprocess_keep_order(tmp_path):
    root = write_ade20k(tmp_path, n=5)
    ds = load_dataset("ade20k", root=str(root))

    def pre(images):
        import torch

        return torch.stack([torch.from_numpy(np.asarray(im.resize((16, 16)), dtype=np.float32)).permute(2, 0, 1)
                            for im in images])

    batches = list(make_loader(ds, batch_size=2, num_workers=2, preprocess=pre))
    assert [i for b in batches for i in b.ids] == [ds.sample_id(i) for i in range(5)]
    assert batches[0].pixel_values.shape == (2, 3, 16, 16) and batches[0].images is None
    assert batches[0].sizes[0] == (ds.load(0).image.height, ds.load(0).image.width)


def test_dataset_listing():
    rows = {r["name"]: r for r in dataset_infos()}
    assert {"synthetic", "ade20k", "cityscapes", "voc", "folder", "ade20k-hf"} <= set(rows)
    assert rows["synthetic"]["found"] is True and rows["ade20k"]["num_classes"] == 150


def test_hf_datasets_local_copy(tmp_path):
    datasets = pytest.importorskip("datasets", reason="the `datasets` package is not installed")
    root = write_ade20k(tmp_path, n=3)
    images = sorted((root / "images" / "validation").glob("*.jpg"))
    rows = {"image": [str(p) for p in images],
            "annotation": [str(root / "annotations" / "validation" / f"{p.stem}.png") for p in images]}
    features = datasets.Features({"image": datasets.Image(), "annotation": datasets.Image()})
    ds = datasets.Dataset.from_dict(rows, features=features)
    saved = tmp_path / "ade-hf"
    datasets.DatasetDict({"validation": ds}).save_to_disk(str(saved))
    parquet = tmp_path / "ade-parquet"
    (parquet / "data").mkdir(parents=True)
    ds.to_parquet(str(parquet / "data" / "validation-00000-of-00001.parquet"))
    official = load_dataset("ade20k", root=str(root))
    for r in (saved, parquet):
        hf = load_dataset("ade20k-hf", root=str(r))
        assert len(hf) == 3
        for i in range(3):
            assert np.array_equal(hf.load(i).label, official.load(i).label)
    shutil.rmtree(saved)
    with pytest.raises(DataError, match="not found"):
        load_dataset("ade20k-hf", root=str(saved))


def test_pascal_context_59_layout(tmp_path):
    from layouts import write_pascal_context

    root = write_pascal_context(tmp_path)
    ds = load_dataset("pascal-context-59", root=str(root))
    assert len(ds) == 3 and ds.num_classes == 59 and ds.class_names[0] == "aeroplane"
    s = ds.load(0)
    raw = np.asarray(Image.open(root / "SegmentationClassContext" / f"{s.id}.png")).astype(np.int64)
    assert np.array_equal(s.label, np.where(raw == 0, 255, raw - 1))
    (root / "ImageSets" / "SegmentationContext" / "val.txt").unlink()
    with pytest.raises(DataError, match="SegmentationContext/val.txt: split file not found"):
        load_dataset("pascal-context-59", root=str(root))


def test_coco_stuff_164k_layout(tmp_path):
    from layouts import write_coco_stuff

    root = write_coco_stuff(tmp_path)
    ds = load_dataset("coco-stuff-164k", root=str(root))
    assert len(ds) == 3 and ds.num_classes == 171 and len(set(ds.class_names)) == 171
    s = ds.load(0)
    raw = np.asarray(Image.open(root / "annotations" / "val2017" / f"{s.id}_labelTrainIds.png")).astype(np.int64)
    assert np.array_equal(s.label, raw) and (s.label == 255).any()
    assert ds.class_names[0] == "person" and ds.class_names[80] == "banner"
    with pytest.raises(DataError, match="split 'train2017' not found"):
        load_dataset("coco-stuff-164k", root=str(root), split="train2017")
