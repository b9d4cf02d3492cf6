"""The depth dataset contract and the decoding every depth layout needs.

A depth dataset yields :class:`DepthSample` objects (see :mod:`harness.depth` for the contract):
an RGB image, float32 depth in metres with invalid pixels 0 (or NaN), a stable id, an optional
segmentation label map and optional camera intrinsics. Each dataset states the evaluated
range of its protocol (``min_depth``, ``max_depth``, metres), its ``default_crop`` and how its
depth is stored (``depth_scale_note``). ``excluded`` lists the entries of a split that are not
evaluated, each ``{id, path, reason}`` (KITTI Eigen frames without ground truth): they are not
samples, so they neither fail a run nor count as broken; the cell records how many there were.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from harness.data.base import SegmentationDataset
from harness.data.files import read_image
from harness.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
ENCODINGS = ("linear", "sun_rgbd", "kinect_disparity")
# NYU-Depth-v2 RGB camera (NYU toolbox camera_params.m), pixels
NYU_INTRINSICS = {"fx": 518.8579, "fy": 519.4696, "cx": 325.5824, "cy": 253.7362}


@dataclass
class DepthSample:
    """One depth evaluation sample.

    image: RGB ``PIL.Image``.
    depth: float32 (H, W) metres, the image's H and W; invalid pixels 0 or NaN.
    id: stable identifier, unique within the dataset.
    label: optional int64 (H, W) segmentation map (``ignore_index`` for unlabeled pixels).
    intrinsics: optional ``{fx, fy, cx, cy}`` in pixels of this image.
    """

    image: Image.Image
    depth: np.ndarray
    id: str
    label: np.ndarray | None = None
    intrinsics: dict | None = None


class DepthDataset:
    """Base class: a map-style dataset of :class:`DepthSample` (usable by a torch DataLoader)."""

    name: str = "depth"
    task: str = "depth"
    min_depth: float = 1e-3
    max_depth: float = 10.0
    default_crop: str | None = None
    depth_scale_note: str = ""
    # segmentation labels, for datasets that have them (num_classes 0: none)
    num_classes: int = 0
    class_names: list[str] = []
    ignore_index: int = 255
    palette: np.ndarray | None = None
    label_set: str | None = None

    excluded: list[dict]

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> DepthSample:
        """Decode sample ``index``; raise :class:`harness.errors.DataError` on a broken sample."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> DepthSample:
        return self.load(index)

    def sample_id(self, index: int) -> str:
        raise NotImplementedError

    def files(self) -> list[str]:
        """Paths (relative to the root) of every file this dataset reads, in order."""
        raise NotImplementedError

    digest = SegmentationDataset.digest
    check_options = SegmentationDataset.check_options

    def protocol(self) -> dict:
        """The dataset's evaluation protocol as data: range (metres), default crop, depth storage."""
        return {"min_depth": self.min_depth, "max_depth": self.max_depth, "default_crop": self.default_crop,
                "depth_scale_note": self.depth_scale_note, "excluded": len(getattr(self, "excluded", []))}


def read_depth_raw(path: Path, sample_id: str) -> np.ndarray:
    """The stored values of a single-channel depth image (PNG, TIFF, PGM) as an (H, W) array.

    16-bit files come back as uint16 (PIL reads 16-bit PGM as int32: narrowed back), 8-bit as uint8,
    float TIFF as float32. A missing, unreadable or multi-channel file is a DataError naming it.
    """
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{path}: depth file is missing", path=str(path), sample_id=sample_id) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: unreadable or truncated depth image ({e})", path=str(path), sample_id=sample_id) from e
    if arr.ndim != 2 or mode not in ("I;16", "I;16B", "I;16L", "I", "L", "F"):
        raise DataError(f"{path}: depth image has mode {mode} and shape {arr.shape}; expected a single-channel "
                        "16-bit, 8-bit or float image", path=str(path), sample_id=sample_id)
    if mode == "I":  # 16-bit PGM (or 32-bit PNG): keep uint16 when the values fit
        if arr.min() < 0 or arr.max() > 65535:
            raise DataError(f"{path}: 32-bit depth values outside 0..65535", path=str(path), sample_id=sample_id)
        arr = arr.astype(np.uint16)
    return arr


def read_depth_npy(path: Path, sample_id: str) -> np.ndarray:
    """An (H, W) or (H, W, 1) float array from a ``.npy`` file, squeezed to (H, W)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: depth file is missing", path=str(path), sample_id=sample_id) from None
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: unreadable .npy file ({e})", path=str(path), sample_id=sample_id) from e
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.dtype.kind not in "fiu":
        raise DataError(f"{path}: array of shape {arr.shape} and dtype {arr.dtype}; expected numbers of shape "
                        "(H, W) or (H, W, 1)", path=str(path), sample_id=sample_id)
    return arr


def decode_depth(raw: np.ndarray, scale: float, encoding: str = "linear", invalid_value: float | None = 0) -> np.ndarray:
    """Stored values -> float32 metres, invalid pixels 0.

    ``linear``: metres = value / scale (NYU PNG: 1000, KITTI: 256). ``sun_rgbd``: the SUN RGB-D
    toolbox's bit rotation, millimetres = (v >> 3) | (v << 13) as uint16, then / scale.
    ``kinect_disparity``: raw 11-bit Kinect disparity d (NYU raw dumps; 2047 = no return),
    metres = 351.3 / (1092.5 - d) as the NYU toolbox's ``depth_rel2depth_abs``. ``invalid_value``
    (a stored value, compared before decoding) also becomes 0; non-finite values become 0.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown depth encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    invalid = np.zeros(raw.shape, dtype=bool) if invalid_value is None else (raw == invalid_value)
    if encoding == "sun_rgbd":
        v = raw.astype(np.uint16)
        raw = ((v >> 3) | (v << 13)).astype(np.uint16)
    if encoding == "kinect_disparity":
        d = raw.astype(np.float64)
        invalid |= d >= 2047
        with np.errstate(divide="ignore", invalid="ignore"):
            metres = 351.3 / (1092.5 - d)
        invalid |= metres <= 0
    else:
        metres = raw.astype(np.float64) / float(scale)
    out = metres.astype(np.float32)
    out[invalid | ~np.isfinite(out)] = 0.0
    return out


def list_lines(list_file: Path, layout: str):
    """(line number, tokens, line) of each non-blank line of a split list file (DataError if absent)."""
    if not list_file.is_file():
        raise DataError(f"{list_file}: list file not found. Expected layout:\n{layout}", path=str(list_file))
    for n, line in enumerate(list_file.read_text().splitlines(), 1):
        parts = line.split()
        if parts:
            yield n, parts, line


def parse_focal(token: str, list_file: Path, n: int) -> float:
    """A list file's focal length column (pixels)."""
    try:
        return float(token)
    except ValueError:
        raise DataError(f"{list_file}:{n}: focal length {token!r} is not a number", path=str(list_file)) from None


def check_depth(image: Image.Image, depth: np.ndarray, path, sample_id: str, label: np.ndarray | None = None) -> None:
    """Depth (and label) must have the image's size."""
    for what, arr in (("depth", depth), ("label", label)):
        if arr is not None and arr.shape != (image.height, image.width):
            raise DataError(f"{path}: {what} is {arr.shape[1]}x{arr.shape[0]} but its image is "
                            f"{image.width}x{image.height} (width x height)", path=str(path), sample_id=sample_id)


def rel(path: Path | str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


class PairedDepthDataset(DepthDataset):
    """A depth dataset listed as ``(image path, depth path, id, intrinsics or None)`` items under ``root``.

    Subclasses implement ``read_depth(path, sample_id) -> float32 metres`` (and may override
    ``transform`` to crop image and depth together). A listed file that is missing fails when
    its sample is loaded, with a DataError naming it.
    """

    def __init__(self, root: Path, items: list[tuple[Path, Path, str, dict | None]], excluded: list[dict] | None = None):
        self.root = Path(root)
        self.items = items
        self.excluded = excluded or []

    def __len__(self) -> int:
        return len(self.items)

    def sample_id(self, index: int) -> str:
        return self.items[index][2]

    def read_depth(self, path: Path, sample_id: str) -> np.ndarray:
        raise NotImplementedError

    def transform(self, image: Image.Image, depth: np.ndarray, intrinsics: dict | None, path: Path, sample_id: str):
        """Crop or otherwise change image, depth and intrinsics together (identity here)."""
        return image, depth, intrinsics

    def load(self, index: int) -> DepthSample:
        image_path, depth_path, sid, intrinsics = self.items[index]
        image = read_image(image_path, sid)
        depth = self.read_depth(depth_path, sid)
        check_depth(image, depth, depth_path, sid)
        image, depth, intrinsics = self.transform(image, depth, dict(intrinsics) if intrinsics else None, depth_path, sid)
        return DepthSample(image=image, depth=np.ascontiguousarray(depth, dtype=np.float32), id=sid,
                           intrinsics=intrinsics)

    def files(self) -> list[str]:
        out = []
        for image_path, depth_path, _, _ in self.items:
            out.extend((rel(image_path, self.root), rel(depth_path, self.root)))
        return out

    def select(self, indices) -> PairedDepthDataset:
        """A copy holding the samples at ``indices``, in that order."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.items = [self.items[i] for i in indices]
        return new
