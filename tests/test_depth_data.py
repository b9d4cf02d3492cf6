"""Depth datasets on their official layouts (written here, real sample files where they exist),
the real encodings of ../shared/data/depth, and broken inputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import harness
from harness.data.depth_base import DepthSample, decode_depth
from harness.errors import ConfigError, DataError
from tests.depth_layouts import (
    KITTI_DRIVE,
    SHARED,
    need_shared,
    write_bts_nyu,
    write_diode,
    write_kitti,
    write_nyu_mat,
)


def check_contract(ds, n: int):
    assert len(ds) == n and ds.task == "depth"
    assert len(ds.digest()) == 64 and len(ds.files()) >= n
    for i in range(n):
        s = ds.load(i)
        assert isinstance(s, DepthSample) and s.id == ds.sample_id(i)
        assert s.image.mode == "RGB" and s.depth.dtype == np.float32
        assert s.depth.shape == (s.image.height, s.image.width)
        assert np.all(np.isfinite(s.depth)) and s.depth.min() >= 0
    return [ds.load(i) for i in range(n)]


# -- NYU-Depth-v2 -------------------------------------------------------------------------
def test_nyu_bts_layout_with_its_list_file(tmp_path):
    root, numbers = write_bts_nyu(tmp_path)
    ds = harness.load_dataset("nyu-depth-v2", root=str(root), list_file="nyudepthv2_test_files_with_gt.txt")
    samples = check_contract(ds, 3)
    assert [s.id for s in samples] == [f"basement/{n}" for n in sorted(numbers)]
    assert (ds.min_depth, ds.max_depth, ds.default_crop) == (1e-3, 10.0, "eigen")
    for s, n in zip(samples, sorted(numbers), strict=True):
        stored = np.asarray(Image.open(SHARED / "nyu_depth_v2" / "depth" / f"sync_depth_{n}.png"))
        np.testing.assert_array_equal(s.depth, (stored.astype(np.float64) / 1000.0).astype(np.float32))
        assert s.image.size == (640, 480) and s.intrinsics["fx"] == pytest.approx(518.8579)
        valid = s.depth > 0
        assert 0.6 < valid.mean() < 0.8 and 0.5 < s.depth[valid].min() and s.depth.max() < 8.5  # MANIFEST ranges
    # without a list file: every rgb_*.jpg of the folder, the same samples
    ds2 = harness.load_dataset("nyu-depth-v2", root=str(root / "official_splits" / "test"))
    assert [ds2.sample_id(i) for i in range(3)] == [s.id for s in samples]
    assert harness.load_dataset("nyu-depth-v2", root=str(root), limit=2).sample_id(1) == samples[1].id


def test_nyu_bts_broken_inputs(tmp_path):
    root, numbers = write_bts_nyu(tmp_path)
    folder = root / "official_splits" / "test" / "basement"
    (folder / f"sync_depth_{numbers[0]}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    Image.new("RGB", (640, 480)).save(folder / f"sync_depth_{numbers[1]}.png")  # colour, not depth
    (folder / f"sync_depth_{numbers[2]}.png").unlink()
    ds = harness.load_dataset("nyu-depth-v2", root=str(root), list_file="nyudepthv2_test_files_with_gt.txt")
    ids = {ds.sample_id(i): i for i in range(3)}
    for n, text in ((numbers[0], "unreadable or truncated"), (numbers[1], "mode RGB"), (numbers[2], "missing")):
        with pytest.raises(DataError, match=text) as e:
            ds.load(ids[f"basement/{n}"])
        assert f"sync_depth_{n}.png" in str(e.value) and e.value.sample_id == f"basement/{n}"
    (root / "bad.txt").write_text("basement/rgb_00000.jpg\n")
    with pytest.raises(DataError, match=r"bad.txt:1: expected"):
        harness.load_dataset("nyu-depth-v2", root=str(root), list_file="bad.txt")
    with pytest.raises(DataError, match="list file not found"):
        harness.load_dataset("nyu-depth-v2", root=str(root), list_file="nope.txt")
    with pytest.raises(DataError, match="no <scene>/rgb_"):
        harness.load_dataset("nyu-depth-v2", root=str(tmp_path / "official_splits" / "test" / "basement"))


def test_nyu_labeled_mat_with_the_official_split_and_40_classes(tmp_path):
    pytest.importorskip("h5py", reason="h5py reads the labeled .mat (pip install 'segbench[depth]')")
    pytest.importorskip("scipy", reason="scipy reads splits.mat")
    truth = write_nyu_mat(tmp_path)
    ds = harness.load_dataset("nyu-depth-v2-labeled", root=str(tmp_path), class_mapping="classMapping40.mat")
    samples = check_contract(ds, 2)  # testNdxs = [1, 3] (1-based) -> images 0 and 2
    assert [s.id for s in samples] == ["bathroom/00000", "kitchen/00002"]
    for s, i in zip(samples, (0, 2), strict=True):
        np.testing.assert_array_equal(np.asarray(s.image), truth["rgb"][i])
        np.testing.assert_array_equal(s.depth, truth["raw"][i])
        lab = truth["labels"][i].astype(np.int64)
        expected = np.where(lab == 0, 255, truth["mapping"][np.maximum(lab, 1) - 1].astype(np.int64) - 1)
        np.testing.assert_array_equal(s.label, expected)
    assert ds.num_classes == 40 and ds.class_names[0] == "class1" and ds.label_set == "nyu40"
    train = harness.load_dataset("nyu-depth-v2-labeled", root=str(tmp_path), split="train", depth_field="depths")
    s = train.load(0)
    assert s.id == "bedroom/00001" and s.label is None
    np.testing.assert_array_equal(s.depth, truth["filled"][1])
    (tmp_path / "idx.txt").write_text("4\n")
    assert harness.load_dataset("nyu-depth-v2-labeled", root=str(tmp_path), splits_file="idx.txt").sample_id(0) == "office/00003"
    blank = harness.load_dataset("nyu-depth-v2-labeled", root=str(tmp_path), blank_border=True).load(0)
    img = np.asarray(blank.image)
    assert img[:7].max() == 0 and img[:, :7].max() == 0 and np.array_equal(img[7:, 7:], truth["rgb"][0][7:, 7:])


def test_nyu_labeled_broken_inputs(tmp_path):
    pytest.importorskip("h5py", reason="h5py reads the labeled .mat")
    pytest.importorskip("scipy", reason="scipy reads splits.mat")
    write_nyu_mat(tmp_path)
    (tmp_path / "bad_idx.txt").write_text("0\n")
    with pytest.raises(DataError, match=r"1\.\.4 \(1-based"):
        harness.load_dataset("nyu-depth-v2-labeled", root=str(tmp_path), splits_file="bad_idx.txt")
    with pytest.raises(DataError, match="split file not found"):
        harness.load_dataset("nyu-depth-v2-labeled", root=str(tmp_path), splits_file="none.mat")
    with pytest.raises(DataError, match="depth_field"):
        harness.load_dataset("nyu-depth-v2-labeled", root=str(tmp_path), depth_field="depth")
    (tmp_path / "fake.mat").write_bytes(b"MATLAB 5.0 not hdf5")
    with pytest.raises(DataError, match="not an HDF5"):
        harness.load_dataset("nyu-depth-v2-labeled", root=str(tmp_path), mat_file="fake.mat")
    with pytest.raises(DataError, match="class mapping file not found"):
        harness.load_dataset("nyu-depth-v2-labeled", root=str(tmp_path), class_mapping="missing.mat")


# -- KITTI Eigen ---------------------------------------------------------------------------
def test_kitti_eigen_skips_and_counts_frames_without_ground_truth(tmp_path):
    raw, gt = write_kitti(tmp_path)
    ds = harness.load_dataset("kitti-eigen", root=str(raw), list_file="eigen_test_files_with_gt.txt", gt_root=str(gt))
    samples = check_contract(ds, 2)
    drive = KITTI_DRIVE[1]
    assert [s.id for s in samples] == [f"{drive}/image_02/0000000005", f"{drive}/image_02/0000000050"]
    assert ds.num_listed == 4 and len(ds.excluded) == 2
    reasons = {e["id"].rsplit("/", 1)[1]: e["reason"] for e in ds.excluded}
    assert "None" in reasons["0000000069"] and "not found" in reasons["0000000077"]
    assert ds.protocol()["excluded"] == 2 and (ds.max_depth, ds.default_crop) == (80.0, "garg")
    stored = np.asarray(Image.open(SHARED / "kitti" / "depth" / "0000000005.png")).astype(np.float64) / 256.0
    s = samples[0]
    assert s.image.size == (1216, 352)  # kb crop: rows 23:375, columns 13:1229 of 1242x375
    np.testing.assert_array_equal(s.depth, stored[23:375, 13:1229].astype(np.float32))
    np.testing.assert_array_equal(np.asarray(s.image), np.asarray(Image.open(SHARED / "kitti/rgb/0000000005.png"))[23:, 13:1229])
    assert s.intrinsics == pytest.approx({"fx": 721.5377, "fy": 721.5377, "cx": 609.5593 - 13, "cy": 172.854 - 23})
    valid = s.depth > 0
    assert 0.1 < valid.mean() < 0.35 and s.depth[valid].max() < 86  # semi-dense, ~20% valid, 5-85 m
    full = harness.load_dataset("kitti-eigen", root=str(raw), list_file="eigen_test_files_with_gt.txt",
                                gt_root=str(gt), kb_crop=False).load(0)
    assert full.depth.shape == (375, 1242) and full.intrinsics["cx"] == pytest.approx(609.5593)


def test_kitti_monodepth2_list_and_broken_inputs(tmp_path):
    raw, gt = write_kitti(tmp_path)
    date, drive = KITTI_DRIVE
    (raw / "test_files.txt").write_text(f"{date}/{drive} 5 l\n{date}/{drive} 69 l\n")
    ds = harness.load_dataset("kitti-eigen", root=str(raw), list_file="test_files.txt", gt_root=str(gt))
    assert len(ds) == 1 and len(ds.excluded) == 1 and ds.sample_id(0).endswith("0000000005")
    (raw / date / drive / "image_02" / "data" / "0000000005.png").unlink()
    with pytest.raises(DataError, match="0000000005.png: image file is missing"):
        ds.load(0)
    (raw / "bad.txt").write_text("only-one-token\n")
    with pytest.raises(DataError, match=r"bad.txt:1: expected"):
        harness.load_dataset("kitti-eigen", root=str(raw), list_file="bad.txt")
    with pytest.raises(DataError, match="no list_file"):
        harness.load_dataset("kitti-eigen", root=str(raw))


# -- DIODE ---------------------------------------------------------------------------------
def test_diode_val_with_masks(tmp_path):
    truth = write_diode(tmp_path)
    indoor = harness.load_dataset("diode", root=str(tmp_path))
    samples = check_contract(indoor, 2)
    assert (indoor.max_depth, indoor.default_crop) == (10.0, "eigen")
    for s in samples:
        depth, mask = truth[s.id]
        np.testing.assert_array_equal(s.depth, np.where(mask > 0, depth, 0))
    outdoor = harness.load_dataset("diode", root=str(tmp_path), scene_type="outdoor")
    assert (outdoor.max_depth, outdoor.default_crop) == (80.0, "garg") and len(outdoor) == 2
    both = harness.load_dataset("diode", root=str(tmp_path), scene_type="all")
    assert len(both) == 4 and (both.min_depth, both.max_depth) == (0.6, 350.0) and len(both.files()) == 12
    name = next(iter(truth)).split("/", 1)[1]
    np.save(tmp_path / "val" / "indoors" / f"{name}_depth_mask.npy", np.ones((3, 3)))
    with pytest.raises(DataError, match="does not match depth"):
        harness.load_dataset("diode", root=str(tmp_path)).load(0)
    with pytest.raises(DataError, match="scene_type"):
        harness.load_dataset("diode", root=str(tmp_path), scene_type="indoor")


# -- generic RGB-D folder on the real encodings --------------------------------------------
def test_rgbd_folder_on_the_real_nyu_and_kitti_samples():
    nyu = harness.load_dataset("rgbd-folder", root=str(need_shared("nyu_depth_v2")), images_dir="rgb",
                               depth_dir="depth", image_prefix="rgb_", depth_prefix="sync_depth_")
    samples = check_contract(nyu, 3)
    stored = np.asarray(Image.open(SHARED / "nyu_depth_v2/depth/sync_depth_00000.png"))
    np.testing.assert_array_equal(samples[0].depth, (stored / 1000.0).astype(np.float32))
    kitti = harness.load_dataset("rgbd-folder", root=str(need_shared("kitti")), images_dir="rgb", depth_dir="depth",
                                 depth_scale=256, max_depth=80.0, default_crop="garg")
    s = check_contract(kitti, 2)[0]
    stored = np.asarray(Image.open(SHARED / "kitti/depth/0000000005.png")).astype(np.float64)
    np.testing.assert_allclose(s.depth, stored / 256.0, rtol=1e-7)
    assert kitti.default_crop == "garg"
    pseudo = harness.load_dataset("rgbd-folder", root=str(need_shared("nyu_pseudo")), depth_dir="annotations")
    assert check_contract(pseudo, 1)[0].depth.shape == (120, 160)


def test_rgbd_folder_sun_rgbd_bit_rotation():
    root = need_shared("sun_rgbd")
    ds = harness.load_dataset("rgbd-folder", root=str(root), images_dir=".", depth_dir=".", image_suffix="_color",
                              depth_suffix="_depth", encoding="sun_rgbd")
    s = check_contract(ds, 1)[0]
    v = np.asarray(Image.open(root / "SUN_depth.png")).astype(np.uint32)
    mm = ((v >> 3) | (v << 13)) & 0xFFFF  # the toolbox's rotation, by hand in 32 bits
    np.testing.assert_allclose(s.depth, np.where(v == 0, 0, mm / 1000.0), rtol=1e-6)
    valid = s.depth > 0
    assert 1.0 < s.depth[valid].min() and s.depth.max() < 10.0  # MANIFEST: 1.1-9.9 m


def test_rgbd_folder_raw_kinect_pgm_little_endian():
    root = need_shared("nyu_raw_kinect")
    ds = harness.load_dataset("rgbd-folder", root=str(root), images_dir=".", depth_dir=".", image_suffix="_color",
                              depth_suffix="_depth", encoding="kinect_disparity", byte_order="little")
    s = check_contract(ds, 1)[0]
    data = (root / "NYU_depth.pgm").read_bytes()
    header_end = data.index(b"65535") + len(b"65535") + 1  # "P5 640 480 65535\n"
    d = np.frombuffer(data[header_end:header_end + 640 * 480 * 2], dtype="<u2").reshape(480, 640).astype(np.float64)
    expected = np.where(d >= 2047, 0.0, 351.3 / (1092.5 - d))
    np.testing.assert_allclose(s.depth, expected.astype(np.float32), rtol=1e-6)
    assert (s.depth == 0).any() and s.depth.max() < 12


def test_rgbd_folder_broken_inputs(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "depth").mkdir()
    Image.new("RGB", (8, 6)).save(tmp_path / "images" / "a.png")
    Image.new("RGB", (8, 6)).save(tmp_path / "images" / "b.png")
    Image.fromarray(np.full((5, 8), 1000, np.uint16)).save(tmp_path / "depth" / "a.png")
    ds = harness.load_dataset("rgbd-folder", root=str(tmp_path))
    with pytest.raises(DataError, match="depth is 8x5 but its image is 8x6"):
        ds.load(0)
    assert ds.unpaired and "image without depth" in ds.unpaired[0]["reason"]
    for kwargs, text in (({"encoding": "mm"}, "encoding"), ({"depth_scale": 0}, "depth_scale"),
                         ({"byte_order": "middle"}, "byte_order"), ({"default_crop": "nyu"}, "unknown crop"),
                         ({"intrinsics": [1, 2]}, "intrinsics"), ({"depth_dir": "missing"}, "depth folder not found")):
        with pytest.raises(DataError, match=text):
            harness.load_dataset("rgbd-folder", root=str(tmp_path), **kwargs)
    with pytest.raises(ConfigError, match="unknown option"):
        harness.load_dataset("rgbd-folder", root=str(tmp_path), scale=1000)


# -- synthetic depth and the registry -------------------------------------------------------
def test_synthetic_depth_is_seeded_structured_and_labelled():
    ds = harness.load_dataset("synthetic-depth", num_samples=3, image_size=[48, 64], num_classes=8)
    a = check_contract(ds, 3)
    b = [harness.load_dataset("synthetic-depth", num_samples=3, image_size=[48, 64], num_classes=8).load(i) for i in range(3)]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.depth, y.depth)
        assert x.label.shape == x.depth.shape and x.label.max() < 8
        valid = x.depth > 0
        assert 0.02 < 1 - valid.mean() < 0.5 and np.unique(x.depth[valid]).size > 100
        assert x.depth.max() < ds.max_depth
    assert not np.array_equal(a[0].depth, a[1].depth)
    with pytest.raises(DataError, match="num_classes"):
        harness.load_dataset("synthetic-depth", num_classes=2)


def test_registry_lists_the_depth_task():
    from harness.data import DATASETS, dataset_infos

    rows = {r["name"]: r for r in dataset_infos()}
    for name in ("nyu-depth-v2", "nyu-depth-v2-labeled", "kitti-eigen", "diode", "rgbd-folder", "synthetic-depth",
                 "sintel", "eth3d", "cityscapes-depth"):
        assert DATASETS[name].extra["task"] == "depth" and rows[name]["task"] == "depth"
    assert rows["ade20k"]["task"] == "segmentation" and rows["synthetic-depth"]["found"]


def test_decode_depth_encodings():
    raw = np.array([[0, 1000, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(decode_depth(raw, 1000.0), np.array([[0, 1.0, 65.535]], np.float32))
    np.testing.assert_array_equal(decode_depth(raw, 1000.0, invalid_value=65535), np.array([[0, 1.0, 0]], np.float32))
    with pytest.raises(ValueError, match="encoding"):
        decode_depth(raw, 1.0, "log")


# -- Sintel and ETH3D ----------------------------------------------------------------------
def _write_dpt(path, depth: np.ndarray) -> None:
    h, w = depth.shape
    path.write_bytes(np.float32(202021.25).tobytes() + np.array([w, h], "<i4").tobytes() + depth.astype("<f4").tobytes())


def test_sintel_dpt_layout(tmp_path):
    rng = np.random.default_rng(0)
    for scene in ("alley_1", "market_2"):
        (tmp_path / "training" / "final" / scene).mkdir(parents=True)
        (tmp_path / "training" / "depth" / scene).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)).save(
            tmp_path / "training" / "final" / scene / "frame_0001.png")
        _write_dpt(tmp_path / "training" / "depth" / scene / "frame_0001.dpt", rng.uniform(1, 50, (6, 10)))
    ds = harness.load_dataset("sintel", root=str(tmp_path), split="training")
    s = check_contract(ds, 2)[0]
    raw = (tmp_path / "training/depth/alley_1/frame_0001.dpt").read_bytes()
    np.testing.assert_array_equal(s.depth, np.frombuffer(raw[12:], "<f4").reshape(6, 10))
    assert s.id == "alley_1/frame_0001"
    (tmp_path / "training/depth/market_2/frame_0001.dpt").write_bytes(raw[:40])
    with pytest.raises(DataError, match="header says 10x6"):
        ds.load(1)


def test_eth3d_raw_float_depth(tmp_path):
    img_dir = tmp_path / "courtyard" / "images" / "dslr_images"
    dep_dir = tmp_path / "courtyard" / "ground_truth_depth" / "dslr_images"
    img_dir.mkdir(parents=True)
    dep_dir.mkdir(parents=True)
    Image.new("RGB", (12, 8), (9, 9, 9)).save(img_dir / "DSC_0286.JPG", format="JPEG")
    depth = np.random.default_rng(1).uniform(0.5, 30, (8, 12)).astype("<f4")
    depth[0, :3] = np.inf  # no measurement
    (dep_dir / "DSC_0286.JPG").write_bytes(depth.tobytes())
    ds = harness.load_dataset("eth3d", root=str(tmp_path), split="training")
    s = check_contract(ds, 1)[0]
    np.testing.assert_array_equal(s.depth, np.where(np.isfinite(depth), depth, 0))
    assert ds.max_depth == float("inf") and s.id == "courtyard/DSC_0286"
    (dep_dir / "DSC_0286.JPG").write_bytes(depth.tobytes()[:-4])
    with pytest.raises(DataError, match="expected 384"):
        ds.load(0)


# -- Cityscapes: depth from disparity, labels of the same images ---------------------------
def test_cityscapes_depth_and_labels_on_the_same_images(tmp_path):
    import json

    from tests.layouts import write_cityscapes

    root = write_cityscapes(tmp_path, per_city=1)
    rng = np.random.default_rng(0)
    stored = {}
    for img in sorted((root / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png")):
        city, stem = img.parent.name, img.name[: -len("_leftImg8bit.png")]
        (root / "disparity" / "val" / city).mkdir(parents=True, exist_ok=True)
        (root / "camera" / "val" / city).mkdir(parents=True, exist_ok=True)
        p = rng.integers(0, 30000, (32, 64)).astype(np.uint16)
        p[0, :4] = 0
        Image.fromarray(p).save(root / "disparity" / "val" / city / f"{stem}_disparity.png")
        cam = {"extrinsic": {"baseline": 0.209313}, "intrinsic": {"fx": 2262.52, "fy": 2265.3, "u0": 1096.98, "v0": 513.137}}
        (root / "camera" / "val" / city / f"{stem}_camera.json").write_text(json.dumps(cam))
        stored[stem] = p
    ds = harness.load_dataset("cityscapes-depth", root=str(root), split="val")
    samples = check_contract(ds, 2)
    for s in samples:
        p = stored[s.id].astype(np.float64)
        d = (p - 1) / 256
        expected = np.where((p > 0) & (d > 0), 0.209313 * 2262.52 / np.where(d > 0, d, 1), 0)
        np.testing.assert_allclose(s.depth, expected.astype(np.float32), rtol=1e-6)
        raw = np.asarray(Image.open(next(root.glob(f"gtFine/val/*/{s.id}_gtFine_labelIds.png"))))
        assert np.all(s.label[raw == 7] == 0) and np.all(s.label[raw == 26] == 13) and np.all(s.label[raw == 4] == 255)
    assert ds.num_classes == 19 and ds.label_set == "cityscapes" and len(ds.files()) == 8
    next(root.glob("camera/val/*/*_camera.json")).write_text("{}")
    with pytest.raises(DataError, match="extrinsic.baseline"):
        ds.load(0)


def test_loader_batches_carry_depth_and_intrinsics():
    from harness.data.loader import make_loader

    ds = harness.load_dataset("synthetic-depth", num_samples=3, image_size=[32, 48], num_classes=4)
    batches = list(make_loader(ds, batch_size=2))
    assert [len(b.ids) for b in batches] == [2, 1]
    b = batches[0]
    np.testing.assert_array_equal(b.depths[1], ds.load(1).depth)
    moved = list(make_loader(ds, batch_size=2, num_workers=1))[0]  # from a worker, in shared memory
    assert isinstance(moved.depths[1], np.ndarray) and moved.depths[1].dtype == np.float32
    np.testing.assert_array_equal(moved.depths[1], ds.load(1).depth)
    np.testing.assert_array_equal(moved.labels[0], ds.load(0).label)
    assert b.labels[0].shape == (32, 48) and b.intrinsics[0]["fx"] == pytest.approx(0.8 * 48)
    seg = list(make_loader(harness.load_dataset("synthetic", num_samples=1, image_size=[16, 16]), batch_size=1))
    assert seg[0].depths is None and seg[0].intrinsics is None
