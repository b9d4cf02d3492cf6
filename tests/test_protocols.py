"""Inference protocols checked against direct implementations on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from harness.models.base import SegmentationModel
from harness.protocols import (
    base_size,
    image_to_tensor01,
    predict_with_protocol,
    protocol_logits,
    window_starts,
)


class ConvModel(SegmentationModel):
    """A fully convolutional toy model: logits at 1/2 resolution, like real segmentation heads."""

    family = "cnn"
    num_labels = 5
    input_size = (40, 56)
    weights = {"source": "test"}

    def __init__(self, kernel: int = 3, symmetric: bool = False, **kw):
        super().__init__(**kw)
        torch.manual_seed(0)
        self.module = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, kernel, padding=kernel // 2), torch.nn.ReLU(),
            torch.nn.AvgPool2d(2), torch.nn.Conv2d(8, 5, 1)).eval()
        if symmetric:  # kernels mirrored left-right -> the model commutes with horizontal flips
            with torch.no_grad():
                w = self.module[0].weight
                w.copy_((w + torch.flip(w, dims=[3])) / 2)

    def _run(self, x):
        return self.module(x)


def image(h: int = 37, w: int = 53, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def whole_reference(model, img, size):
    x = image_to_tensor01(img)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False) if size != (img.height, img.width) else x
    logits = model.module(model.normalize(x))
    return F.interpolate(logits, size=(img.height, img.width), mode="bilinear", align_corners=False)


def test_window_starts_cover_and_align_to_the_border():
    assert window_starts(100, 100, 60) == [0]
    assert window_starts(80, 100, 60) == [0]
    assert window_starts(1000, 512, 341) == [0, 341, 488]
    for length, crop, stride in [(513, 512, 341), (2049, 512, 341), (700, 200, 150)]:
        starts = window_starts(length, crop, stride)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s:s + crop] = True
        assert covered.all() and starts[-1] + crop == length


def test_base_size():
    assert base_size(300, 400, None, (480, 480)) == (480, 480)
    assert base_size(300, 400, 150, (480, 480)) == (150, 200)
    assert base_size(300, 400, [64, 32], (480, 480)) == (64, 32)


def test_slide_with_one_window_equals_whole():
    model = ConvModel()
    img = image(64, 64)
    proto = {"mode": "slide", "crop_size": [64, 64], "stride": [32, 32], "resize": [64, 64]}
    got = protocol_logits(model, img, proto)
    ref = whole_reference(model, img, (img.height, img.width))
    assert torch.allclose(got, ref, atol=1e-5)


def test_overlapping_windows_of_a_pointwise_model_equal_whole():
    model = ConvModel(kernel=1)
    model.module[2] = torch.nn.Identity()  # no pooling: every output pixel depends on its input pixel only
    img = image(48, 64)
    proto = {"mode": "slide", "crop_size": [32, 32], "stride": [20, 20], "resize": [48, 64]}
    got = protocol_logits(model, img, proto)
    ref = whole_reference(model, img, (48, 64))
    assert torch.allclose(got, ref, atol=1e-5)


def test_flip_of_a_flip_equivariant_model_changes_nothing():
    model = ConvModel(symmetric=True)
    img = image()
    flip = protocol_logits(model, img, {"mode": "multiscale", "scales": [1.0], "flip": True})
    noflip = protocol_logits(model, img, {"mode": "multiscale", "scales": [1.0], "flip": False})
    assert torch.allclose(flip, noflip, atol=1e-5)


def test_flip_matters_for_an_asymmetric_model():
    model = ConvModel()
    img = image()
    flip = protocol_logits(model, img, {"mode": "multiscale", "scales": [1.0], "flip": True})
    noflip = protocol_logits(model, img, {"mode": "multiscale", "scales": [1.0], "flip": False})
    assert not torch.allclose(flip, noflip, atol=1e-4)


def test_multiscale_is_the_mean_over_scales():
    model = ConvModel()
    img = image()
    scales = [0.5, 1.0, 1.5]
    got = protocol_logits(model, img, {"mode": "multiscale", "scales": scales, "flip": False})
    refs = [whole_reference(model, img, (round(40 * s), round(56 * s))) for s in scales]
    assert torch.allclose(got, sum(refs) / 3, atol=1e-5)


def test_single_scale_multiscale_equals_whole_at_the_model_size():
    model = ConvModel()
    img = image()
    got = predict_with_protocol(model, img, {"mode": "multiscale", "scales": [1.0], "flip": False})
    ref = whole_reference(model, img, model.input_size)[0].argmax(0)
    assert torch.equal(got, ref)


def test_label_map_models_are_refused():
    from harness.errors import ConfigError

    model = ConvModel()
    model.output_kind = "labels"
    with pytest.raises(ConfigError, match="outputs label maps"):
        protocol_logits(model, image(), {"mode": "multiscale", "scales": [1.0]})
