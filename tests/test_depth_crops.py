"""Evaluation crops on the real sample sizes (NYU 480x640, KITTI 375x1242), from the references' fractions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.depth.crops import crop_box, crop_mask, kb_box, kb_crop, paste

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "depth"


def real_size(path: str) -> tuple[int, int]:
    p = SHARED / path
    if not p.exists():
        pytest.skip(f"{p} is not present (real depth samples live in ../shared beside the repository)")
    with Image.open(p) as im:
        return im.height, im.width


def test_nyu_eigen_crop_on_the_real_frame_size():
    h, w = real_size("nyu_depth_v2/depth/sync_depth_00000.png")
    assert (h, w) == (480, 640)
    assert crop_box("eigen", h, w) == (45, 471, 41, 601)
    assert crop_mask("eigen", h, w).sum() == 426 * 560


def test_kitti_crops_on_the_real_frame_size():
    h, w = real_size("kitti/depth/0000000005.png")
    assert (h, w) == (375, 1242)
    frac = lambda a, b, c, d: (int(a * h), int(b * h), int(c * w), int(d * w))  # noqa: E731
    assert crop_box("garg", h, w) == frac(0.40810811, 0.99189189, 0.03594771, 0.96405229) == (153, 371, 44, 1197)
    assert crop_box("eigen_kitti", h, w) == frac(0.3324324, 0.91351351, 0.0359477, 0.96405229) == (124, 342, 44, 1197)
    assert crop_box("kb", h, w) == kb_box(h, w) == (23, 375, 13, 1229)
    # garg on a kb-cropped map (ZoeDepth, Marigold) selects other pixels than garg on the full map (BTS)
    assert crop_box("garg", 352, 1216) == (143, 349, 43, 1172)
    gt = np.asarray(Image.open(SHARED / "kitti/depth/0000000005.png"))
    assert kb_crop(gt).shape == (352, 1216)
    rgb = np.asarray(Image.open(SHARED / "kitti/rgb/0000000005.png"))
    assert kb_crop(rgb).shape == (352, 1216, 3)
    # every pixel of the Garg and Eigen crops lies inside the kb box: pasting a kb prediction loses none
    top, bottom, left, right = crop_box("kb", h, w)
    for name in ("garg", "eigen_kitti"):
        t, b, lo, hi = crop_box(name, h, w)
        assert top <= t and b <= bottom and left <= lo and hi <= right


def test_paste_and_custom_boxes():
    pred = np.arange(12, dtype=np.float32).reshape(3, 4)
    full = paste(pred, (1, 4, 2, 6), 5, 8)
    assert full.shape == (5, 8) and np.isnan(full[0]).all()
    np.testing.assert_array_equal(full[1:4, 2:6], pred)
    with pytest.raises(ValueError, match="does not fit box"):
        paste(pred, (0, 2, 0, 4), 5, 8)
    assert crop_box([1, 3, 2, 5], 10, 10) == (1, 3, 2, 5)
    assert crop_box(None, 7, 9) == (0, 7, 0, 9)


@pytest.mark.parametrize("crop,size,text", [
    ("eigen", (240, 320), "does not fit"), ("kb", (300, 1242), "at least 352x1216"),
    ("bogus", (10, 10), "unknown crop"), ([0, 20, 0, 5], (10, 10), "does not fit"),
    ([5, 5, 0, 5], (10, 10), "empty"), ([0, 1.5, 0, 2], (10, 10), "four integers")])
def test_bad_crops_are_errors(crop, size, text):
    with pytest.raises(ValueError, match=text):
        crop_box(crop, *size)
