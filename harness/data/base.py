"""The dataset contract every dataset adapter follows.

A dataset yields :class:`Sample` objects: an RGB PIL image, its label map already in the
dataset's *evaluation* label space (train ids 0..num_classes-1, ``ignore_index`` for pixels
that do not count), and a stable id. Label conventions (ADE20K ``reduce_zero_label``,
Cityscapes labelIds -> trainIds, VOC palette indices) are applied inside the adapter, so the
runner and the metrics never see raw label files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image


@dataclass
class Sample:
    """One evaluation sample.

    image: RGB ``PIL.Image`` at its original resolution.
    label: ``np.ndarray`` of shape (H, W), dtype int64, same H and W as the image; values in
        ``0..num_classes-1`` or ``ignore_index``.
    id: stable identifier (e.g. the file stem), unique within the dataset.
    """

    image: Image.Image
    label: np.ndarray
    id: str


@dataclass
class DatasetInfo:
    """What ``segbench datasets`` shows about a registered dataset."""

    name: str
    description: str
    num_classes: int
    ignore_index: int
    default_root: str | None
    layout: str  # human-readable expected on-disk layout
    splits: tuple[str, ...] = ("validation",)
    extra: dict = field(default_factory=dict)


class SegmentationDataset:
    """Base class: map-style dataset of :class:`Sample` (usable by ``torch.utils.data.DataLoader``).

    Subclasses set ``name``, ``num_classes``, ``class_names``, ``ignore_index``, ``palette``
    and implement ``__len__``, ``load(index)`` and ``files()``.
    """

    name: str = "dataset"
    num_classes: int = 0
    class_names: list[str] = []
    ignore_index: int = 255
    palette: np.ndarray | None = None  # (num_classes, 3) uint8
    # Name of the label space ("ade20k", "cityscapes", "voc", "pascal_context_59", "coco_stuff_171"),
    # or None for ad-hoc label spaces (folder, synthetic); compared with a model's ``label_set``.
    label_set: str | None = None

    @staticmethod
    def check_options(**options) -> None:
        """ConfigError for a bad option value, before anything is read (the suite validator calls it).

        The base class accepts any value; datasets whose options can be checked without their
        files (e.g. synthetic) override it.
        """

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> Sample:
        """Decode sample ``index``; raise :class:`harness.errors.DataError` on a broken sample."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        return self.load(index)

    def sample_id(self, index: int) -> str:
        """Id of sample ``index`` without decoding it."""
        raise NotImplementedError

    def files(self) -> list[str]:
        """Paths (relative to the dataset root) of every file this dataset reads, in order."""
        raise NotImplementedError

    def digest(self) -> str:
        """sha256 over the ordered file list: two runs with equal digests saw the same files."""
        h = hashlib.sha256()
        for f in self.files():
            h.update(f.encode("utf-8"))
            h.update(b"\n")
        return h.hexdigest()
