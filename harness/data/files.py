"""Datasets made of (image file, label file) pairs, with the checks every real layout needs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from harness.data.base import Sample, SegmentationDataset
from harness.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def select(items: list, limit: int | None, shard: tuple[int, int] | None) -> list:
    """The first ``limit`` items (sorted order), then every n-th from k for ``shard=(k, n)``."""
    if limit is not None:
        items = items[:limit]
    if shard is not None:
        k, n = shard
        if not (isinstance(n, int) and n >= 1 and isinstance(k, int) and 0 <= k < n):
            raise DataError(f"shard {shard!r}: expected (k, n) with 0 <= k < n")
        items = items[k::n]
    return items


def read_image(path: Path, sample_id: str) -> Image.Image:
    """Decode an image fully as RGB; a missing, unreadable or truncated file is a DataError naming it."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{path}: image file is missing", path=str(path), sample_id=sample_id) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: unreadable or truncated image ({e})", path=str(path), sample_id=sample_id) from e


def read_label(path: Path, sample_id: str) -> np.ndarray:
    """Decode a label PNG to its raw index values (palette indices for mode P), as a 2-D array."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
                raise DataError(f"{path}: label image has mode {im.mode}; expected a single-channel "
                                "index image (L, P or I)", path=str(path), sample_id=sample_id)
            arr = np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{path}: label file is missing", path=str(path), sample_id=sample_id) from None
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: unreadable or truncated label ({e})", path=str(path), sample_id=sample_id) from e
    if arr.ndim != 2:
        raise DataError(f"{path}: label has shape {arr.shape}; expected (H, W)", path=str(path), sample_id=sample_id)
    return arr.astype(np.int64)


class PairedFilesDataset(SegmentationDataset):
    """A dataset listed as (image path, label path, id) triples under ``root``, sorted by id.

    Subclasses implement ``convert_label(raw) -> labels in 0..C-1 or ignore_index``. An image
    found without its label (or a label without its image) stays in the list with ``None`` for
    the missing file, at its place in the sorted order: loading it raises a DataError naming
    the file that is there, so ``limit``/``shard`` treat it like any other sample and a loader
    skipping bad samples reports it exactly once.
    """

    def __init__(self, root: Path, pairs: list[tuple[Path | None, Path | None, str]],
                 unpaired: list[dict] | None = None):
        self.root = Path(root)
        self.pairs = pairs
        self.unpaired = unpaired or []  # listing problems not tied to a sample (none by default)

    def __len__(self) -> int:
        return len(self.pairs)

    def sample_id(self, index: int) -> str:
        return self.pairs[index][2]

    def convert_label(self, raw: np.ndarray) -> np.ndarray:
        return raw

    def load(self, index: int) -> Sample:
        image_path, label_path, sid = self.pairs[index]
        if image_path is None or label_path is None:
            present = image_path or label_path
            what = "image without label" if label_path is None else "label without image"
            raise DataError(f"{present}: {what} (sample {sid!r})", path=str(present), sample_id=sid)
        image = read_image(image_path, sid)
        raw = read_label(label_path, sid)
        label = self.convert_label(raw)
        check_sample(image, label, self.num_classes, self.ignore_index, label_path, sid, raw=raw)
        return Sample(image=image, label=label, id=sid)

    def files(self) -> list[str]:
        """Relative paths of the image and label of every sample (files missing at listing left out)."""
        out = []
        for image_path, label_path, _ in self.pairs:
            out.extend(_rel(p, self.root) for p in (image_path, label_path) if p is not None)
        return out

    def select(self, indices) -> PairedFilesDataset:
        """A copy holding the samples at ``indices``, in that order."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.pairs = [self.pairs[i] for i in indices]
        return new


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def check_sample(image: Image.Image, label: np.ndarray, num_classes: int, ignore_index: int, label_path,
                 sample_id: str, raw: np.ndarray | None = None) -> None:
    """Label size must equal the image's; label values must be classes or the ignore index.

    ``raw`` (the label as stored, before the dataset's conversion) is quoted in the message when given.
    """
    if label.shape != (image.height, image.width):
        raise DataError(f"{label_path}: label is {label.shape[1]}x{label.shape[0]} but its image is "
                        f"{image.width}x{image.height} (width x height)", path=str(label_path), sample_id=sample_id)
    bad = (label != ignore_index) & ((label < 0) | (label >= num_classes))
    if bad.any():
        values = sorted({int(v) for v in np.unique(label[bad])})[:10]
        stored = ""
        if raw is not None and raw.shape == label.shape:
            stored = f"; stored in the file as {sorted({int(v) for v in np.unique(raw[bad])})[:10]}"
        raise DataError(f"{label_path}: label values {values} are outside 0..{num_classes - 1} and not the "
                        f"ignore index {ignore_index} ({int(bad.sum())} pixels{stored})", path=str(label_path),
                        sample_id=sample_id)


def pair_by_stem(images: list[Path], labels: list[Path], image_key: Callable[[Path], str],
                 label_key: Callable[[Path], str]) -> tuple[list[tuple[Path | None, Path | None, str]], list[dict]]:
    """Pair images and labels by key, sorted by key; an unpaired file gets ``None`` as its partner.

    Returns ``(pairs, [])``; the second value is kept for callers that expect listing problems.
    """
    imap = {image_key(p): p for p in images}
    lmap = {label_key(p): p for p in labels}
    pairs = [(imap.get(k), lmap.get(k), k) for k in sorted(imap.keys() | lmap.keys())]
    return pairs, []


def read_id_list(split_file: Path, layout: str) -> list[str]:
    """Sample ids, one per line, from a VOC-style split file (a DataError showing the layout if absent)."""
    if not split_file.is_file():
        raise DataError(f"{split_file}: split file not found. Expected layout:\n{layout}", path=str(split_file))
    return [line.strip() for line in split_file.read_text().splitlines() if line.strip()]


def pair_by_id(root: Path, ids: list[str], label_dir: str, listed_in: str) -> tuple[list, list[dict]]:
    """VOC-style pairing of the ids listed in split file ``listed_in``: JPEGImages/<id>.jpg with
    <label_dir>/<id>.png, sorted by id. A listed file that is missing fails when its sample is
    loaded (a DataError naming it), so it is skipped and reported like any broken sample."""
    pairs = [(root / "JPEGImages" / f"{sid}.jpg", root / label_dir / f"{sid}.png", sid) for sid in sorted(set(ids))]
    return pairs, []


def split_folder_pairs(root: Path, split: str, splits: dict[str, str], dataset: str, layout: str,
                       images: tuple[str, str, str], labels: tuple[str, str, str], subdirs: str = ""):
    """Pairs of a layout with one image folder and one label folder per split.

    ``images`` and ``labels`` are (folder, file-name suffix, what to call them in errors); files are
    found as ``<root>/<folder>/<split folder>/<subdirs><*suffix>`` and paired by name minus suffix.
    Returns (pairs, unpaired) as :func:`pair_by_stem`; an unknown split, a missing folder or an
    empty image folder is a DataError showing ``layout``.
    """
    if split not in splits:
        raise DataError(f"{dataset}: split {split!r} is not one of {', '.join(splits)}")
    sub = splits[split]
    (img_folder, img_suffix, img_what), (lab_folder, lab_suffix, lab_what) = images, labels
    img_dir = require_dir(root / img_folder / sub, f"{img_what} for split {split!r}", layout)
    lab_dir = require_dir(root / lab_folder / sub, f"{lab_what} for split {split!r}", layout)
    pairs, unpaired = pair_by_stem(sorted(img_dir.glob(f"{subdirs}*{img_suffix}")),
                                   sorted(lab_dir.glob(f"{subdirs}*{lab_suffix}")),
                                   lambda p: p.name[: -len(img_suffix)], lambda p: p.name[: -len(lab_suffix)])
    if not pairs and not unpaired:
        raise DataError(f"{img_dir}: no *{img_suffix} images found. Expected layout:\n{layout}", path=str(img_dir))
    return pairs, unpaired


def require_dir(path: Path, what: str, layout: str) -> Path:
    """``path`` must be a directory; otherwise a DataError that shows the expected layout."""
    if not Path(path).is_dir():
        raise DataError(f"{path}: {what} not found. Expected layout:\n{layout}", path=str(path))
    return Path(path)


def voc_palette(n: int = 256) -> np.ndarray:
    """The Pascal VOC colour map (bit-interleaved), (n, 3) uint8."""
    pal = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def generated_palette(n: int, seed: int = 7) -> np.ndarray:
    """A deterministic palette of ``n`` well-spread colours, (n, 3) uint8."""
    rng = np.random.default_rng(seed)
    return rng.integers(30, 256, size=(n, 3), dtype=np.uint8)
