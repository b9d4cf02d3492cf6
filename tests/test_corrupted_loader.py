"""The loader applies a cell's corruption to the input images only, in the DataLoader worker before
the model's preprocessing, seeded per sample: the same bytes in the main process and in a worker."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import harness
from harness.data.loader import corrupted_view, image_digest, make_loader
from harness.errors import ConfigError
from harness.robustness.corruptions import corrupt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from layouts import write_ade20k  # noqa: E402

NOISE = {"name": "gaussian_noise", "severity": 4, "seed": 3}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return harness.load_dataset("ade20k", root=str(write_ade20k(tmp_path_factory.mktemp("ade"), n=3)))


def test_images_are_corrupted_labels_untouched(dataset):
    batches = list(make_loader(dataset, batch_size=2, corruption=NOISE))
    ids = [i for b in batches for i in b.ids]
    images = [im for b in batches for im in b.images]
    labels = [lab for b in batches for lab in b.labels]
    digests = [d for b in batches for d in b.input_digests]
    for k, sid in enumerate(ids):
        clean = dataset.load(k)
        want = corrupt(clean.image, "gaussian_noise", 4, seed=3, sample_id=sid)
        assert np.array_equal(np.asarray(images[k]), np.asarray(want))
        assert not np.array_equal(np.asarray(images[k]), np.asarray(clean.image))
        assert np.array_equal(labels[k], clean.label)
        assert digests[k] == image_digest(want)
    assert next(iter(make_loader(dataset))).input_digests is None


def test_a_worker_preprocesses_the_same_corrupted_bytes(dataset, tmp_path):
    def preprocess(images):
        return torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1)[:, :32, :32]
                            for im in images])

    here = list(make_loader(dataset, preprocess=preprocess, corruption=NOISE))
    worker = list(make_loader(dataset, preprocess=preprocess, num_workers=1, corruption=NOISE))
    for a, b in zip(here, worker, strict=True):
        assert torch.equal(a.pixel_values, b.pixel_values) and a.input_digests == b.input_digests
    clean = list(make_loader(dataset, preprocess=preprocess))
    assert not torch.equal(here[0].pixel_values, clean[0].pixel_values)


def test_the_view_checks_the_point_and_keeps_the_dataset(dataset):
    view = corrupted_view(dataset, NOISE)
    assert len(view) == len(dataset) and view.sample_id(1) == dataset.sample_id(1) and view.name == dataset.name
    assert corrupted_view(dataset, None) is dataset
    with pytest.raises(ConfigError, match="unknown corruption 'haze'"):
        corrupted_view(dataset, {"name": "haze", "severity": 1, "seed": 0})
