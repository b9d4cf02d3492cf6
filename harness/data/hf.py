"""ADE20K from a local Hugging Face ``datasets`` copy (``save_to_disk`` folder or parquet files).

Columns ``image`` (PIL image) and ``annotation`` (mode L, 0 = other, 1..150); the same
``reduce_zero_label`` convention as the official layout. ``datasets`` is imported only
here, so the measuring path runs without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.data.ade20k import ADE20K_CLASSES, reduce_zero_label
from harness.data.base import Sample, SegmentationDataset
from harness.data.files import check_sample, select
from harness.data.palettes import ADE20K_PALETTE
from harness.errors import ConfigError, DataError

SPLIT_NAMES = {"validation": ("validation", "val"), "val": ("validation", "val"), "training": ("train", "training"),
               "train": ("train", "training")}


def _arrow_files(ds, root: Path) -> list[str]:
    """The Arrow files behind a ``save_to_disk`` dataset, relative to ``root`` where possible."""
    out = []
    for f in getattr(ds, "cache_files", None) or []:
        p = Path(f.get("filename", ""))
        try:
            out.append(p.resolve().relative_to(root.resolve()).as_posix())
        except ValueError:
            out.append(p.name)
    return out


def _load_local(root: Path, split: str):
    """(dataset, data files relative to ``root``) for ``split`` of a local copy."""
    try:
        import datasets
    except ImportError:
        raise ConfigError("dataset 'ade20k-hf' needs the `datasets` package: pip install 'segbench[hfdatasets]'") from None
    names = SPLIT_NAMES.get(split, (split,))
    if (root / "dataset_info.json").is_file() or (root / "state.json").is_file() or (root / "dataset_dict.json").is_file():
        ds = datasets.load_from_disk(str(root))
        if isinstance(ds, datasets.DatasetDict):
            for n in names:
                if n in ds:
                    return ds[n], _arrow_files(ds[n], root)
            raise DataError(f"{root}: no split {split!r} (has {', '.join(ds.keys())})", path=str(root))
        return ds, _arrow_files(ds, root)
    for n in names:
        files = sorted((root / "data").glob(f"{n}-*.parquet")) or sorted(root.glob(f"{n}*.parquet")) \
            or sorted((root / n).glob("*.parquet"))
        if files:
            ds = datasets.load_dataset("parquet", data_files={n: [str(f) for f in files]}, split=n)
            return ds, [f.relative_to(root).as_posix() for f in files]
    raise DataError(f"{root}: neither a save_to_disk folder nor parquet files for split {split!r} "
                    f"(looked for data/{names[0]}-*.parquet, {names[0]}*.parquet, {names[0]}/*.parquet)", path=str(root))


class ADE20KHFDataset(SegmentationDataset):
    name = "ade20k-hf"
    label_set = "ade20k"
    num_classes = 150
    ignore_index = 255
    class_names = ADE20K_CLASSES

    def __init__(self, root: str | Path, split: str = "validation", limit: int | None = None,
                 shard: tuple[int, int] | None = None, image_column: str = "image",
                 label_column: str = "annotation"):
        root = Path(root)
        if not root.exists():
            raise DataError(f"{root}: local datasets copy not found (a save_to_disk folder or parquet files)",
                            path=str(root))
        self.root = root
        self.ds, self.sources = _load_local(root, split)
        for col in (image_column, label_column):
            if col not in self.ds.column_names:
                raise DataError(f"{root}: column {col!r} missing (columns: {', '.join(self.ds.column_names)})",
                                path=str(root))
        self.image_column, self.label_column = image_column, label_column
        self.rows = select(list(range(len(self.ds))), limit, shard)
        self.palette = ADE20K_PALETTE

    def __len__(self) -> int:
        return len(self.rows)

    def sample_id(self, index: int) -> str:
        return f"row{self.rows[index]:07d}"

    def files(self) -> list[str]:
        """The data files read (relative to the root), then one ``row<N>`` entry per sample."""
        return [*self.sources, *(self.sample_id(i) for i in range(len(self)))]

    def load(self, index: int) -> Sample:
        row = self.ds[self.rows[index]]
        sid = self.sample_id(index)
        try:
            image = row[self.image_column].convert("RGB")
            raw = np.asarray(row[self.label_column]).astype(np.int64)
        except Exception as e:
            raise DataError(f"{self.root}: row {self.rows[index]} cannot be decoded ({e})", path=str(self.root),
                            sample_id=sid) from e
        label = reduce_zero_label(raw, self.ignore_index)
        check_sample(image, label, self.num_classes, self.ignore_index, f"{self.root}[row {self.rows[index]}]", sid,
                     raw=raw)
        return Sample(image=image, label=label, id=sid)
