"""ADE20K from a local Hugging Face ``datasets`` copy: file list, digest, palette, broken rows, and
that the measuring path does not import ``datasets``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from layouts import write_ade20k
from PIL import Image

from harness.data import load_dataset
from harness.data.loader import make_loader
from harness.data.palettes import ADE20K_PALETTE
from harness.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def _hf_copy(tmp_path: Path, n: int = 3, bad_label_row: int | None = None):
    datasets = pytest.importorskip("datasets", reason="the `datasets` package is not installed")
    root = write_ade20k(tmp_path, n=n)
    images = sorted((root / "images" / "validation").glob("*.jpg"))
    labels = [root / "annotations" / "validation" / f"{p.stem}.png" for p in images]
    if bad_label_row is not None:
        arr = np.asarray(Image.open(labels[bad_label_row])).copy()
        arr[0, 0] = 200
        Image.fromarray(arr, mode="L").save(labels[bad_label_row])
    features = datasets.Features({"image": datasets.Image(), "annotation": datasets.Image()})
    ds = datasets.Dataset.from_dict({"image": [str(p) for p in images], "annotation": [str(p) for p in labels]},
                                    features=features)
    parquet = tmp_path / "ade-parquet"
    (parquet / "data").mkdir(parents=True)
    ds.to_parquet(str(parquet / "data" / "validation-00000-of-00001.parquet"))
    saved = tmp_path / "ade-saved"
    datasets.DatasetDict({"validation": ds}).save_to_disk(str(saved))
    return root, parquet, saved


def test_files_name_the_data_files_and_rows(tmp_path):
    _, parquet, saved = _hf_copy(tmp_path)
    p = load_dataset("ade20k-hf", root=str(parquet), limit=2)
    assert p.files() == ["data/validation-00000-of-00001.parquet", "row0000000", "row0000001"]
    s = load_dataset("ade20k-hf", root=str(saved), split="val", shard=(1, 2))
    assert s.files()[0].startswith("validation/") and s.files()[0].endswith(".arrow")
    assert s.files()[1:] == ["row0000001"]
    assert p.digest() != load_dataset("ade20k-hf", root=str(parquet), limit=3).digest()
    assert p.label_set == "ade20k" and np.array_equal(p.palette, ADE20K_PALETTE)


def test_out_of_range_row_is_reported_or_skipped(tmp_path):
    _, parquet, _ = _hf_copy(tmp_path, bad_label_row=1)
    ds = load_dataset("ade20k-hf", root=str(parquet))
    with pytest.raises(DataError, match=r"\[row 1\].*label values \[199\]"):
        ds.load(1)
    batches = list(make_loader(ds, batch_size=3, on_bad_sample="skip"))
    assert [s["id"] for s in batches[0].skipped] == ["row0000001"]
    assert batches[0].ids == ["row0000000", "row0000002"]


def test_missing_split_names_what_was_looked_for(tmp_path):
    _, parquet, _ = _hf_copy(tmp_path)
    with pytest.raises(DataError, match=r"parquet files for split 'training'"):
        load_dataset("ade20k-hf", root=str(parquet), split="training")


def test_loading_the_official_layout_does_not_import_datasets(tmp_path):
    root = write_ade20k(tmp_path, n=1)
    code = ("import sys; from harness.data import load_dataset, dataset_infos; "
            f"ds = load_dataset('ade20k', root={str(root)!r}); ds.load(0); dataset_infos(); "
            "print('datasets' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
