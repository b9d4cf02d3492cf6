"""The evaluation loader: decoding and preprocessing in worker processes, order, and the
error/skip policy for broken samples seen from the main process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from layouts import write_ade20k
from PIL import Image

from harness.data import load_dataset
from harness.data.loader import Batch, make_loader
from harness.errors import ConfigError, DataError


class Resize16:
    """A picklable preprocess: RGB images -> float32 (N, 3, 16, 16) in 0..1."""

    def __call__(self, images: list[Image.Image]) -> torch.Tensor:
        arr = np.stack([np.asarray(im.resize((16, 16), Image.BILINEAR), dtype=np.float32) / 255.0 for im in images])
        return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def _truncate(root: Path, index: int) -> str:
    victim = sorted((root / "images" / "validation").glob("*.jpg"))[index]
    victim.write_bytes(victim.read_bytes()[:300])
    return victim.stem


def test_workers_preprocess_skip_and_order(tmp_path):
    root = write_ade20k(tmp_path, n=6)
    bad = _truncate(root, 3)
    ds = load_dataset("ade20k", root=str(root))
    batches = list(make_loader(ds, batch_size=2, num_workers=2, preprocess=Resize16(), on_bad_sample="skip"))
    assert all(isinstance(b, Batch) for b in batches)
    ids = [i for b in batches for i in b.ids]
    assert ids == [ds.sample_id(i) for i in range(6) if ds.sample_id(i) != bad]
    skipped = [s for b in batches for s in b.skipped]
    assert [s["id"] for s in skipped] == [bad] and skipped[0]["path"].endswith(f"{bad}.jpg")
    assert "truncated" in skipped[0]["reason"]
    # the batch holding the bad sample carries one image; labels and sizes stay aligned with ids
    assert [len(b.ids) for b in batches] == [2, 1, 2]
    for b in batches:
        assert b.images is None and b.pixel_values.shape == (len(b.ids), 3, 16, 16)
        assert b.pixel_values.dtype == torch.float32
        assert [lab.shape for lab in b.labels] == b.sizes
    ref = Resize16()([ds.load(0).image])
    assert torch.equal(batches[0].pixel_values[:1], ref)
    # label maps crossed in shared memory and arrive as the dataset's numpy arrays
    for b in batches:
        for sid, lab in zip(b.ids, b.labels, strict=True):
            expected = ds.load([ds.sample_id(i) for i in range(6)].index(sid)).label
            assert isinstance(lab, np.ndarray) and lab.dtype == expected.dtype and np.array_equal(lab, expected)


def test_worker_error_reaches_the_caller_with_file_and_sample(tmp_path):
    root = write_ade20k(tmp_path, n=4)
    bad = _truncate(root, 1)
    ds = load_dataset("ade20k", root=str(root))
    with pytest.raises(DataError) as info:
        list(make_loader(ds, batch_size=1, num_workers=2, preprocess=Resize16(), on_bad_sample="error"))
    assert info.value.sample_id == bad and info.value.path.endswith(f"{bad}.jpg")
    assert str(info.value).startswith(info.value.path) and "Traceback" not in str(info.value)


def test_without_preprocess_images_are_kept(tmp_path):
    root = write_ade20k(tmp_path, n=3)
    ds = load_dataset("ade20k", root=str(root))
    (batch,) = list(make_loader(ds, batch_size=3))
    assert batch.pixel_values is None and len(batch.images) == 3
    assert [(im.height, im.width) for im in batch.images] == batch.sizes
    assert np.array_equal(batch.labels[1], ds.load(1).label)


def test_batch_of_only_broken_samples_is_empty_but_reported(tmp_path):
    root = write_ade20k(tmp_path, n=2)
    for i in range(2):
        _truncate(root, i)
    ds = load_dataset("ade20k", root=str(root))
    (batch,) = list(make_loader(ds, batch_size=2, preprocess=Resize16(), on_bad_sample="skip"))
    assert batch.ids == [] and batch.pixel_values is None and len(batch.skipped) == 2


def test_unknown_policy_is_a_config_error():
    ds = load_dataset("synthetic", num_samples=1, image_size=[16, 16])
    with pytest.raises(ConfigError, match="on_bad_sample 'ignore' is not one of error, skip"):
        list(make_loader(ds, on_bad_sample="ignore"))
