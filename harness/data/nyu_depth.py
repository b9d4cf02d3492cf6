"""NYU-Depth-v2: the BTS ``official_splits`` folders and the official labeled ``.mat``.

BTS layout (``nyu-depth-v2``), as BTS, ZoeDepth and the DPT evaluation read it::

    official_splits/test/<scene type>/rgb_XXXXX.jpg         640x480 RGB (black 7 px border)
    official_splits/test/<scene type>/sync_depth_XXXXX.png  uint16 millimetres, 0 = invalid
    nyudepthv2_test_files_with_gt.txt                        654 lines "<scene>/rgb_X.jpg <scene>/sync_depth_X.png 518.8579"

The list file comes with BTS (``train_test_inputs/nyudepthv2_test_files_with_gt.txt``); without
one, every ``*/rgb_*.jpg`` under the folder with its ``sync_depth`` partner is used, sorted.
BTS writes ``official_splits`` from the labeled ``.mat`` (``utils/extract_official_train_test_set_from_mat.py``):
depth from ``rawDepths`` x 1000, images with everything outside rows 7:474, columns 7:632
blacked out, file number = the 0-based index in the ``.mat``, folder = the image's scene type.

Labeled ``.mat`` (``nyu-depth-v2-labeled``): ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3, HDF5, read
with h5py) with the official split file ``splits.mat`` (``testNdxs``: 654 1-based indices,
``trainNdxs``: 795; from the NYU-Depth-v2 site, also shipped as ``utils/splits.mat`` by BTS and
by ankurhanda/nyuv2-meta-data, byte-identical) or a text file of 1-based indices, one a line.
Depth from ``rawDepths`` (what BTS, ZoeDepth and Marigold evaluate) or ``depths`` (the
in-painted maps). With ``class_mapping`` (``classMapping40.mat`` from ankurhanda/nyuv2-meta-data:
Gupta et al.'s map of the 894 labels to 40 classes, field ``mapClass``, names in ``className``)
each sample also carries its 40-class label map: class k (1..40) -> k-1, unlabeled (0) -> 255.
Ids are ``<scene type>/<index>`` in both datasets, so their results compare image by image.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

from harness.data.depth_base import (
    NYU_INTRINSICS,
    DepthDataset,
    DepthSample,
    PairedDepthDataset,
    decode_depth,
    list_lines,
    parse_focal,
    read_depth_raw,
    rel,
)
from harness.data.files import generated_palette, require_dir, select
from harness.errors import DataError

BTS_LAYOUT = """  ROOT/ (official_splits/test, or a folder holding it)
    <scene>/rgb_XXXXX.jpg + <scene>/sync_depth_XXXXX.png (uint16, millimetres)
    list_file: nyudepthv2_test_files_with_gt.txt (654 lines, from BTS train_test_inputs/)"""
MAT_LAYOUT = """  ROOT/
    nyu_depth_v2_labeled.mat (official, MATLAB v7.3)
    splits.mat (official split: testNdxs, trainNdxs) or a text file of 1-based indices
    classMapping40.mat (optional, for 40-class labels: ankurhanda/nyuv2-meta-data)"""
NOTE = "uint16 PNG, millimetres (value / 1000 = m), 0 = invalid"
_NUMBER = re.compile(r"(\d+)$")


class _NYUProtocol:
    name = "nyu"
    min_depth, max_depth, default_crop = 1e-3, 10.0, "eigen"


def _test_folder(root: Path) -> Path:
    for candidate in (root, root / "official_splits" / "test", root / "test"):
        if candidate.is_dir() and any(candidate.glob("*/rgb_*.jpg")):
            return candidate
    raise DataError(f"{root}: no <scene>/rgb_*.jpg found (looked in it, official_splits/test and test). "
                    f"Expected layout:\n{BTS_LAYOUT}", path=str(root))


def _number(stem: str, path) -> str:
    m = _NUMBER.search(stem)
    if not m:
        raise DataError(f"{path}: file name has no frame number (expected rgb_XXXXX.jpg)", path=str(path))
    return m.group(1)


def read_bts_list(list_file: Path, layout: str) -> list[tuple[str, str, float | None]]:
    """(image, depth, focal) relative paths from a BTS-style list file; a malformed line is a DataError."""
    out = []
    for n, parts, line in list_lines(list_file, layout):
        if len(parts) not in (2, 3):
            raise DataError(f"{list_file}:{n}: expected '<image> <depth> [focal]', got {line!r}", path=str(list_file))
        focal = parse_focal(parts[2], list_file, n) if len(parts) == 3 else None
        out.append((parts[0].lstrip("/"), parts[1].lstrip("/"), focal))
    return out


class NYUDepthV2Dataset(_NYUProtocol, PairedDepthDataset):
    """BTS ``official_splits/test`` folders (654 test frames with the BTS list). Options: list_file."""

    name = "nyu-depth-v2"
    depth_scale_note = NOTE

    def __init__(self, root: str | Path, split: str = "test", limit: int | None = None,
                 shard: tuple[int, int] | None = None, list_file: str | None = None):
        if split not in ("test", "validation"):
            raise DataError(f"nyu-depth-v2: split {split!r} is not 'test' (the official 654-image test split; "
                            "'validation' is accepted as its alias)")
        root = require_dir(Path(root), "NYU-Depth-v2 folder", BTS_LAYOUT)
        if list_file is not None:
            lf = Path(list_file) if Path(list_file).is_absolute() else root / list_file
            base = _test_folder(root)
            entries = read_bts_list(lf, BTS_LAYOUT)
            items = []
            for image, depth, focal in entries:
                intr = dict(NYU_INTRINSICS, **({"fx": focal} if focal else {}))
                scene = Path(image).parent.as_posix()
                items.append((base / image, base / depth, f"{scene}/{_number(Path(image).stem, lf)}", intr))
            items.sort(key=lambda it: it[2])
        else:
            base = _test_folder(root)
            items = []
            for img in sorted(base.glob("*/rgb_*.jpg")):
                num = _number(img.stem, img)
                items.append((img, img.parent / f"sync_depth_{num}.png", f"{img.parent.name}/{num}", dict(NYU_INTRINSICS)))
        super().__init__(root, select(items, limit, shard))

    def read_depth(self, path: Path, sample_id: str) -> np.ndarray:
        return decode_depth(read_depth_raw(path, sample_id), 1000.0)


def _read_split(path: Path, split: str, total: int) -> list[int]:
    """0-based indices of ``split`` ("test", "train") from splits.mat or a text file of 1-based indices."""
    if not path.is_file():
        raise DataError(f"{path}: split file not found (the official splits.mat from the NYU-Depth-v2 site, "
                        f"also in BTS utils/). Expected layout:\n{MAT_LAYOUT}", path=str(path))
    if path.suffix == ".mat":
        try:
            from scipy.io import loadmat
        except ImportError:
            raise DataError(f"{path}: reading splits.mat needs scipy (pip install 'segbench[depth]'), or give "
                            "a text file of 1-based indices", path=str(path)) from None
        key = {"test": "testNdxs", "train": "trainNdxs"}[split]
        try:
            values = np.asarray(loadmat(str(path))[key]).ravel()
        except KeyError:
            raise DataError(f"{path}: no {key} in the split file", path=str(path)) from None
        except (ValueError, OSError) as e:
            raise DataError(f"{path}: unreadable split file ({e})", path=str(path)) from e
    else:
        try:
            values = np.array([int(x) for x in path.read_text().split()])
        except ValueError as e:
            raise DataError(f"{path}: expected 1-based image indices, one a line ({e})", path=str(path)) from e
    values = values.astype(np.int64)
    if values.size == 0 or values.min() < 1 or values.max() > total:
        raise DataError(f"{path}: split indices must lie in 1..{total} (1-based, as in splits.mat)", path=str(path))
    return sorted(int(v) - 1 for v in values)


def _read_class_mapping(path: Path) -> tuple[np.ndarray, list[str]]:
    """(lookup table 0..894 -> 0..39 or 255, 40 class names) from classMapping40.mat."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError(f"{path}: reading the class mapping needs scipy (pip install 'segbench[depth]')",
                        path=str(path)) from None
    if not path.is_file():
        raise DataError(f"{path}: class mapping file not found (classMapping40.mat from ankurhanda/nyuv2-meta-data)",
                        path=str(path))
    try:
        m = loadmat(str(path))
        mapping = np.asarray(m["mapClass"]).ravel().astype(np.int64)
        names = [str(np.asarray(x).ravel()[0]) for x in np.asarray(m["className"]).ravel()]
    except (KeyError, ValueError, OSError, IndexError) as e:
        raise DataError(f"{path}: expected mapClass (1 x 894) and className (1 x 40) ({e})", path=str(path)) from e
    if mapping.min() < 1 or mapping.max() > len(names):
        raise DataError(f"{path}: mapClass values must lie in 1..{len(names)}", path=str(path))
    lut = np.full(mapping.size + 1, 255, dtype=np.int64)
    lut[1:] = mapping - 1
    return lut, names


class NYULabeledDataset(_NYUProtocol, DepthDataset):
    """The official labeled ``.mat`` with the official split. Options: mat_file, splits_file,
    depth_field (rawDepths | depths), class_mapping (classMapping40.mat -> 40-class labels),
    blank_border (black outside rows 7:474, columns 7:632, as BTS's test images)."""

    name = "nyu-depth-v2-labeled"
    depth_scale_note = "HDF5 float32 metres (rawDepths: 0 = invalid; depths: in-painted)"

    def __init__(self, root: str | Path, split: str = "test", limit: int | None = None,
                 shard: tuple[int, int] | None = None, mat_file: str = "nyu_depth_v2_labeled.mat",
                 splits_file: str = "splits.mat", depth_field: str = "rawDepths", class_mapping: str | None = None,
                 blank_border: bool = False):
        self.root = require_dir(Path(root), "NYU-Depth-v2 labeled folder", MAT_LAYOUT)
        self.mat_path = Path(mat_file) if Path(mat_file).is_absolute() else self.root / mat_file
        if depth_field not in ("rawDepths", "depths"):
            raise DataError(f"nyu-depth-v2-labeled: depth_field {depth_field!r} is not rawDepths or depths")
        self.depth_field, self.blank_border = depth_field, bool(blank_border)
        self.excluded: list[dict] = []
        self._file, self._pid = None, None
        f = self._h5()
        total = int(f["images"].shape[0])
        self.scene_types = [self._string(f, ref) for ref in np.asarray(f["sceneTypes"]).ravel()]
        if split in ("test", "validation", "train"):
            sp = Path(splits_file) if Path(splits_file).is_absolute() else self.root / splits_file
            indices = _read_split(sp, "train" if split == "train" else "test", total)
        elif split == "all":
            indices = list(range(total))
        else:
            raise DataError(f"nyu-depth-v2-labeled: split {split!r} is not test, train or all")
        self.indices = select(indices, limit, shard)
        self.lut = None
        if class_mapping is not None:
            cm = Path(class_mapping) if Path(class_mapping).is_absolute() else self.root / class_mapping
            self.lut, self.class_names = _read_class_mapping(cm)
            self.num_classes, self.label_set = len(self.class_names), "nyu40"
            self.palette = generated_palette(self.num_classes)

    def _h5(self):
        """The open HDF5 file of this process (reopened after a fork: DataLoader workers)."""
        if self._file is None or self._pid != os.getpid():
            try:
                import h5py
            except ImportError:
                raise DataError(f"{self.mat_path}: reading the labeled .mat needs h5py (pip install 'segbench[depth]')",
                                path=str(self.mat_path)) from None
            if not self.mat_path.is_file():
                raise DataError(f"{self.mat_path}: not found. Expected layout:\n{MAT_LAYOUT}", path=str(self.mat_path))
            try:
                self._file = h5py.File(self.mat_path, "r")
            except OSError as e:
                raise DataError(f"{self.mat_path}: not an HDF5 (MATLAB v7.3) file ({e})", path=str(self.mat_path)) from e
            for key in ("images", self.depth_field, "sceneTypes"):
                if key not in self._file:
                    raise DataError(f"{self.mat_path}: no {key!r} dataset; expected the official labeled file",
                                    path=str(self.mat_path))
            self._pid = os.getpid()
        return self._file

    @staticmethod
    def _string(f, ref) -> str:
        return "".join(chr(int(c)) for c in np.asarray(f[ref]).ravel())

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, None
        return state

    def __len__(self) -> int:
        return len(self.indices)

    def sample_id(self, index: int) -> str:
        i = self.indices[index]
        return f"{self.scene_types[i]}/{i:05d}"

    def files(self) -> list[str]:
        name = rel(self.mat_path, self.root)
        return [f"{name}#{self.depth_field}:{i:05d}" for i in self.indices]

    def load(self, index: int) -> DepthSample:
        i, sid = self.indices[index], self.sample_id(index)
        f = self._h5()
        try:
            rgb = np.asarray(f["images"][i]).transpose(2, 1, 0)  # stored (3, W, H): MATLAB's column order
            depth = np.asarray(f[self.depth_field][i], dtype=np.float32).T
            raw_label = np.asarray(f["labels"][i]).T if self.lut is not None else None
        except (OSError, KeyError, ValueError) as e:
            raise DataError(f"{self.mat_path}: image {i} unreadable ({e})", path=str(self.mat_path), sample_id=sid) from e
        if rgb.ndim != 3 or rgb.shape[2] != 3 or depth.shape != rgb.shape[:2]:
            raise DataError(f"{self.mat_path}: image {i} has RGB {rgb.shape} and depth {depth.shape}; expected "
                            "(H, W, 3) and (H, W)", path=str(self.mat_path), sample_id=sid)
        if self.blank_border:
            framed = np.zeros_like(rgb)
            framed[7:474, 7:632] = rgb[7:474, 7:632]
            rgb = framed
        depth = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)
        label = None
        if raw_label is not None:
            raw_label = raw_label.astype(np.int64)
            if raw_label.min() < 0 or raw_label.max() >= self.lut.size:
                raise DataError(f"{self.mat_path}: image {i} has label values outside 0..{self.lut.size - 1}",
                                path=str(self.mat_path), sample_id=sid)
            label = self.lut[raw_label]
        return DepthSample(image=Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB"), depth=depth,
                           id=sid, label=label, intrinsics=dict(NYU_INTRINSICS))
