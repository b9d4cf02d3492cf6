"""Write small depth datasets in their official on-disk layouts (real sample files where they exist)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "depth"
KITTI_DRIVE = ("2011_09_26", "2011_09_26_drive_0002_sync")


def need_shared(sub: str) -> Path:
    path = SHARED / sub
    if not path.exists():
        pytest.skip(f"{path} is not present (real depth samples live in ../shared beside the repository)")
    return path


def write_bts_nyu(root: Path, scene: str = "basement") -> tuple[Path, list[str]]:
    """official_splits/test/<scene>/rgb_X.jpg + sync_depth_X.png from the real NYU frames, and a BTS list file."""
    src = need_shared("nyu_depth_v2")
    test = Path(root) / "official_splits" / "test" / scene
    test.mkdir(parents=True)
    numbers = []
    for rgb in sorted((src / "rgb").glob("rgb_*.jpg")):
        num = rgb.stem.split("_")[1]
        shutil.copy(rgb, test / rgb.name)
        shutil.copy(src / "depth" / f"sync_depth_{num}.png", test / f"sync_depth_{num}.png")
        numbers.append(num)
    lines = [f"{scene}/rgb_{n}.jpg {scene}/sync_depth_{n}.png 518.8579" for n in numbers]
    (Path(root) / "nyudepthv2_test_files_with_gt.txt").write_text("\n".join(lines))  # no final newline, as BTS's
    return Path(root), numbers


def write_nyu_mat(root: Path, n: int = 4, h: int = 48, w: int = 64, seed: int = 0) -> dict:
    """nyu_depth_v2_labeled.mat (HDF5 as MATLAB v7.3 writes it: arrays transposed, strings as references),
    splits.mat and classMapping40.mat (MATLAB v5, scipy)."""
    import h5py
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rgb = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    raw = rng.uniform(0.5, 9.0, (n, h, w)).astype(np.float32)
    raw[rng.random((n, h, w)) < 0.2] = 0
    filled = np.where(raw > 0, raw, 5.0).astype(np.float32)
    labels = rng.integers(0, 895, (n, h, w)).astype(np.uint16)
    scenes = ["bathroom", "bedroom", "kitchen", "office"][:n] + ["office"] * max(0, n - 4)
    with h5py.File(root / "nyu_depth_v2_labeled.mat", "w") as f:
        f.create_dataset("images", data=rgb.transpose(0, 3, 2, 1))  # (n, 3, W, H)
        f.create_dataset("rawDepths", data=raw.transpose(0, 2, 1))
        f.create_dataset("depths", data=filled.transpose(0, 2, 1))
        f.create_dataset("labels", data=labels.transpose(0, 2, 1))
        refs = f.create_group("#refs#")
        st = f.create_dataset("sceneTypes", (1, n), dtype=h5py.ref_dtype)
        for i, s in enumerate(scenes):
            d = refs.create_dataset(f"s{i}", data=np.array([[ord(c)] for c in s], dtype=np.uint16))
            st[0, i] = d.ref
    savemat(root / "splits.mat", {"testNdxs": np.array([[1], [3]], dtype=np.float64),
                                  "trainNdxs": np.array([[2], [4]], dtype=np.float64)})
    mapping = rng.integers(1, 41, (1, 894)).astype(np.uint8)
    names = np.empty((1, 40), dtype=object)
    for k in range(40):
        names[0, k] = f"class{k + 1}"
    savemat(root / "classMapping40.mat", {"mapClass": mapping, "className": names})
    return {"rgb": rgb, "raw": raw, "filled": filled, "labels": labels, "scenes": scenes, "mapping": mapping[0]}


def write_kitti(root: Path) -> tuple[Path, Path]:
    """Raw <date>/<drive>/image_02/data + calib, annotated train/<drive>/proj_depth/groundtruth/image_02 (real
    frames), and a 4-line BTS list: two frames with ground truth, one 'None', one whose GT file is absent."""
    src = need_shared("kitti")
    date, drive = KITTI_DRIVE
    raw = Path(root) / "raw"
    gt = Path(root) / "annotated"
    data = raw / date / drive / "image_02" / "data"
    gtd = gt / "train" / drive / "proj_depth" / "groundtruth" / "image_02"
    data.mkdir(parents=True)
    gtd.mkdir(parents=True)
    frames = ["0000000005", "0000000050"]
    for fr in frames:
        shutil.copy(src / "rgb" / f"{fr}.png", data / f"{fr}.png")
        shutil.copy(src / "depth" / f"{fr}.png", gtd / f"{fr}.png")
    for fr in ("0000000069", "0000000077"):  # listed frames without ground truth
        shutil.copy(src / "rgb" / "0000000005.png", data / f"{fr}.png")
    (raw / date / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\n"
        "P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 "
        "1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03\n")
    lines = [f"{date}/{drive}/image_02/data/{fr}.png {drive}/proj_depth/groundtruth/image_02/{fr}.png 721.5377"
             for fr in frames]
    lines.append(f"{date}/{drive}/image_02/data/0000000069.png None 721.5377")
    lines.append(f"{date}/{drive}/image_02/data/0000000077.png {drive}/proj_depth/groundtruth/image_02/0000000077.png 721.5377")
    (raw / "eigen_test_files_with_gt.txt").write_text("\n".join(lines) + "\n")
    return raw, gt


def write_diode(root: Path, seed: int = 0, h: int = 24, w: int = 32) -> dict:
    """val/{indoors,outdoor}/scene_*/scan_*/NAME.png + NAME_depth.npy (H, W, 1) + NAME_depth_mask.npy."""
    rng = np.random.default_rng(seed)
    out = {}
    for kind, scene, scan in (("indoors", "scene_00019", "scan_00183"), ("outdoor", "scene_00022", "scan_00193")):
        folder = Path(root) / "val" / kind / scene / scan
        folder.mkdir(parents=True)
        for k in range(2):
            name = f"{scene[-5:]}_{scan[-5:]}_{kind}_{k:03d}_010"
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{name}.png")
            depth = rng.uniform(0.6, 60.0, (h, w, 1)).astype(np.float32)
            mask = (rng.random((h, w)) < 0.8).astype(np.float32)
            np.save(folder / f"{name}_depth.npy", depth)
            np.save(folder / f"{name}_depth_mask.npy", mask)
            out[f"{kind}/{scene}/{scan}/{name}"] = (depth[..., 0], mask)
    return out
