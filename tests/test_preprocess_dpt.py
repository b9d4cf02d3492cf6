"""The original DPT inference transform (isl-org/DPT run_segmentation.py) against references written
here from its description: the output size rule (``Resize(..., keep_aspect_ratio=True,
ensure_multiple_of=32, resize_method="minimal")`` with numpy rounding), a float64 numpy bicubic
resize (Keys cubic, a = -0.75, half-pixel centres, edges clamped), OpenCV's ``INTER_CUBIC`` when
OpenCV is installed, and the ``dpt-original`` preprocessing choice of the DPT adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import save_tiny_dpt, save_tiny_segformer

from harness.errors import ConfigError
from harness.models.hf import load_hf_model, preprocessor_from_dict
from harness.models.preprocess import OriginalDPTTransform, keep_aspect_size

SIZES = [(375, 500), (512, 683), (683, 512), (300, 200), (480, 640), (720, 1280), (97, 40), (481, 479)]


def original_size(h: int, w: int, net: int = 480, multiple: int = 32) -> tuple[int, int]:
    """isl-org/DPT Resize.get_size for keep_aspect_ratio=True, resize_method="minimal" (numpy rounding)."""
    sh, sw = net / h, net / w
    if abs(1 - sw) < abs(1 - sh):
        sh = sw
    else:
        sw = sh
    return int(np.round(sh * h / multiple) * multiple), int(np.round(sw * w / multiple) * multiple)


def keys_cubic(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    t = np.abs(t)
    return np.where(t <= 1, (a + 2) * t**3 - (a + 3) * t**2 + 1,
                    np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0))


def cubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of a 1-D bicubic resize, half-pixel centres, taps clamped at the edges."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = (i + 0.5) * n_in / n_out - 0.5
        base = int(np.floor(src))
        for k in range(-1, 3):
            m[i, min(max(base + k, 0), n_in - 1)] += keys_cubic(src - (base + k))
    return m


def reference_transform(image: Image.Image) -> np.ndarray:
    arr = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    th, tw = original_size(*arr.shape[:2])
    rows = np.tensordot(cubic_matrix(arr.shape[0], th), arr, axes=(1, 0))  # (th, w, 3)
    out = np.tensordot(cubic_matrix(arr.shape[1], tw), rows, axes=(1, 1)).transpose(2, 1, 0)  # (3, th, tw)
    return ((out - 0.5) / 0.5).astype(np.float32)


def photo(h: int, w: int, seed: int = 0) -> Image.Image:
    """A smooth image with some texture (a photo's statistics more than noise's)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 127 + 60 * np.sin(x / 17.0)[..., None] * np.cos(y / 23.0)[..., None] + rng.normal(0, 20, (h, w, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("h,w", SIZES + [(20, 20), (17, 500), (1000, 40)])
def test_output_size_is_the_originals(h, w):
    assert keep_aspect_size(h, w, (480, 480), 32) == original_size(h, w)


def test_a_side_the_original_would_make_empty_keeps_one_multiple():
    assert original_size(16, 500) == (0, 480) and keep_aspect_size(16, 500, (480, 480), 32) == (32, 480)


@pytest.mark.parametrize("h,w", SIZES[:5])
def test_transform_equals_the_float64_bicubic_reference(h, w):
    im = photo(h, w)
    got = OriginalDPTTransform()([im]).numpy()[0]
    want = reference_transform(im)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() <= 2e-6  # float32 rounding of values in [-1, 1]


@pytest.mark.parametrize("h,w", SIZES)
def test_transform_equals_opencv_inter_cubic(h, w):
    cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed; the float64 numpy reference above still runs")
    im = photo(h, w, seed=1)
    arr = np.asarray(im, dtype=np.float64) / 255.0
    th, tw = original_size(h, w)
    ref = ((cv2.resize(arr, (tw, th), interpolation=cv2.INTER_CUBIC) - 0.5) / 0.5).astype(np.float32)
    got = OriginalDPTTransform()([im]).numpy()[0].transpose(1, 2, 0)
    enlarging = th >= h and tw >= w
    print(f"{h}x{w} -> {th}x{tw}: max |ours - OpenCV| = {np.abs(got - ref).max():.2e}")
    assert np.abs(got - ref).max() <= (1e-5 if enlarging else 3e-4), np.abs(got - ref).max()


def test_processor_json_type_and_dpt_adapter_choice(tmp_path):
    t = preprocessor_from_dict({"image_processor_type": "DPTOriginalTransform", "size": 384}, "x")
    assert isinstance(t, OriginalDPTTransform) and t.output_size == (384, 384) and not t.fixed_size
    model = load_hf_model(str(save_tiny_dpt(tmp_path / "dpt")), preprocessing="dpt-original")
    assert isinstance(model.preprocessor, OriginalDPTTransform) and model.preprocessor.size == 480
    im = photo(300, 200)
    x = model.preprocess([im])
    assert tuple(x.shape) == (1, 3, 480, 320)
    assert model.predict([im])[0].shape == (300, 200)
    with pytest.raises(ConfigError, match="applies to DPT models only"):
        load_hf_model(str(save_tiny_segformer(tmp_path / "seg")), preprocessing="dpt-original")
    with pytest.raises(ConfigError, match="preprocessing 'squash' is not one of"):
        load_hf_model(str(tmp_path / "dpt"), preprocessing="squash")
    assert torch.equal(model.preprocessor([im]), OriginalDPTTransform()([im]))
