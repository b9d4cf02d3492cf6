"""Subsets (limit, shard) and determinism: checked arguments, broken samples counted once across
shards, and synthetic data identical in another process."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from layouts import write_ade20k, write_voc

from harness.data import load_dataset
from harness.data.loader import make_loader
from harness.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("limit", [0, -1, "3", True, 2.5])
def test_bad_limit_is_a_config_error(limit):
    with pytest.raises(ConfigError, match="limit"):
        load_dataset("synthetic", num_samples=4, image_size=[16, 16], limit=limit)


@pytest.mark.parametrize("shard", [(2, 2), (0, 0), (-1, 2), (1,), "0/2", (0.0, 2)])
def test_bad_shard_is_a_config_error(shard):
    with pytest.raises(ConfigError, match="shard"):
        load_dataset("synthetic", num_samples=4, image_size=[16, 16], shard=shard)


def _ade_with_orphan(tmp_path: Path) -> tuple[Path, str]:
    root = write_ade20k(tmp_path, n=5)
    orphan = sorted((root / "images" / "validation").glob("*.jpg"))[2]
    (root / "annotations" / "validation" / f"{orphan.stem}.png").unlink()
    return root, orphan.stem


def test_image_without_label_keeps_its_place_in_the_order(tmp_path):
    root, stem = _ade_with_orphan(tmp_path)
    ds = load_dataset("ade20k", root=str(root))
    ids = [ds.sample_id(i) for i in range(len(ds))]
    assert len(ds) == 5 and ids == sorted(ids) and ids[2] == stem
    assert f"images/validation/{stem}.jpg" in ds.files()
    assert f"annotations/validation/{stem}.png" not in ds.files()
    # a limit that stops before the broken sample evaluates cleanly, even under "error"
    limited = load_dataset("ade20k", root=str(root), limit=2)
    assert [i for b in make_loader(limited, on_bad_sample="error") for i in b.ids] == ids[:2]
    with pytest.raises(DataError, match="image without label") as info:
        list(make_loader(ds, on_bad_sample="error"))
    assert info.value.sample_id == stem and info.value.path.endswith(f"{stem}.jpg")


def test_shards_partition_samples_and_report_a_broken_one_once(tmp_path):
    root, stem = _ade_with_orphan(tmp_path)
    seen, skipped = [], []
    for k in range(3):
        shard = load_dataset("ade20k", root=str(root), shard=(k, 3))
        for batch in make_loader(shard, batch_size=2, on_bad_sample="skip"):
            seen.extend(batch.ids)
            skipped.extend(batch.skipped)
    assert [s["id"] for s in skipped] == [stem]
    full = load_dataset("ade20k", root=str(root))
    assert sorted(seen + [stem]) == [full.sample_id(i) for i in range(len(full))]


def test_voc_listed_sample_with_a_missing_image_is_skipped_and_named(tmp_path):
    root = write_voc(tmp_path, n=3)
    (root / "JPEGImages" / "2007_000001.jpg").unlink()
    ds = load_dataset("voc", root=str(root), split="val")
    assert len(ds) == 3 and "JPEGImages/2007_000001.jpg" in ds.files()
    batches = list(make_loader(ds, batch_size=3, on_bad_sample="skip"))
    assert [s["id"] for b in batches for s in b.skipped] == ["2007_000001"]
    assert "image file is missing" in batches[0].skipped[0]["reason"]
    assert [i for b in batches for i in b.ids] == ["2007_000000", "2007_000002"]


def test_limit_then_shard_follow_the_sorted_order(tmp_path):
    root = write_ade20k(tmp_path, n=6)
    ids = [f"ADE_val_{i:08d}" for i in range(1, 7)]
    ds = load_dataset("ade20k", root=str(root), limit=5, shard=(1, 2))
    assert [ds.sample_id(i) for i in range(len(ds))] == [ids[1], ids[3]]
    assert ds.files() == [p for i in (1, 3) for p in (f"images/validation/{ids[i]}.jpg",
                                                      f"annotations/validation/{ids[i]}.png")]


_FINGERPRINT = """
import hashlib, json, sys
import numpy as np
from harness.data import load_dataset
ds = load_dataset("synthetic", num_samples=3, image_size=[[24, 40], [32, 20]], num_classes=7, seed=11)
h = hashlib.sha256()
for i in range(len(ds)):
    s = ds.load(i)
    h.update(np.asarray(s.image).tobytes()); h.update(s.label.astype(np.int64).tobytes()); h.update(s.id.encode())
print(json.dumps({"sha": h.hexdigest(), "digest": ds.digest()}))
"""


def _fingerprint_here() -> dict:
    ds = load_dataset("synthetic", num_samples=3, image_size=[[24, 40], [32, 20]], num_classes=7, seed=11)
    h = hashlib.sha256()
    for i in range(len(ds)):
        s = ds.load(i)
        h.update(np.asarray(s.image).tobytes())
        h.update(s.label.astype(np.int64).tobytes())
        h.update(s.id.encode())
    return {"sha": h.hexdigest(), "digest": ds.digest()}


def test_synthetic_is_identical_in_another_process():
    out = subprocess.run([sys.executable, "-c", _FINGERPRINT], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env={"PYTHONPATH": str(REPO), "PYTHONHASHSEED": "123", "PATH": ""})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == _fingerprint_here()


def test_synthetic_ignore_fraction_and_ignored_pixels_look_like_their_region():
    ds = load_dataset("synthetic", num_samples=2, image_size=[96, 128], num_classes=6, seed=2, ignore_fraction=0.05)
    none = load_dataset("synthetic", num_samples=2, image_size=[96, 128], num_classes=6, seed=2, ignore_fraction=0.0)
    for i in range(2):
        s, t = ds.load(i), none.load(i)
        ignored = s.label == 255
        assert 0 < ignored.mean() < 0.3 and not (t.label == 255).any()
        # same regions and the same picture whether or not some pixels are ignored
        assert np.array_equal(s.label[~ignored], t.label[~ignored])
        assert np.array_equal(np.asarray(s.image), np.asarray(t.image))
