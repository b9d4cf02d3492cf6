"""LiteRT adapter pieces that need no model file: letterbox geometry, quantization, label maps, errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from harness.errors import ConfigError, WeightsError
from harness.models.litert import MISS, LetterboxQuantize, label_lut, load_litert_model, valid_region


def test_valid_region_keeps_aspect():
    assert valid_region(512, 683, 512) == (384, 512)
    assert valid_region(683, 512, 512) == (512, 384)
    assert valid_region(100, 100, 513) == (513, 513)


def test_letterbox_quantizes_raw_pixels_and_pads_with_zero_point():
    pre = LetterboxQuantize(size=64, dtype="uint8", scale=1 / 128, zero_point=128)
    img = Image.fromarray(np.arange(32 * 64 * 3, dtype=np.uint32).reshape(32, 64, 3).astype(np.uint8))
    x = pre([img]).numpy()[0]
    assert x.dtype == np.uint8 and x.shape == (64, 64, 3)
    assert np.array_equal(x[:32], np.asarray(img))  # real = (p - 128) / 128 quantized back to p
    assert (x[32:] == 128).all()  # padding dequantizes to 0


def test_label_maps():
    lut = label_lut("ade20k_reduce_zero", 151)
    assert lut[0] == MISS and lut[1] == 0 and lut[150] == 149
    assert label_lut(None, 10) is None
    custom = label_lut({0: None, 1: 5}, 3)
    assert list(custom) == [MISS, 5, MISS]
    with pytest.raises(ConfigError):
        label_lut("nonsense", 3)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(WeightsError, match="no such .tflite file"):
        load_litert_model(str(tmp_path / "nope.tflite"))
    with pytest.raises(ConfigError, match="precision 'bf16' does not apply"):
        load_litert_model("deeplabv3-mnv2-ade20k-litert", precision="bf16")
    with pytest.raises(ConfigError, match="CPU"):
        load_litert_model("deeplabv3-mnv2-ade20k-litert", device="cuda")
