"""Postprocessing gives exactly the reference label map ``F.interpolate(...).argmax(0)``:
resizing channel chunks with a running argmax, and the CPU bilinear shortcut that resizes only
class boundaries and only the classes that can win there (ties included: first class wins)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.models import postprocess
from harness.models.postprocess import upsample_argmax


def reference(x: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    return F.interpolate(x[None].float(), size=size, mode=mode, align_corners=False)[0].argmax(0)


def trained_like(c: int, h: int, w: int, cells: int, seed: int = 0, scale: float = 4.0) -> torch.Tensor:
    """Logits like a trained network's: a few classes dominate smooth regions, the rest far below."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((1, c, cells, cells), generator=g) * scale - 6
    x[:, torch.randperm(c, generator=g)[: max(2, c // 16)]] += 10
    return F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)[0].contiguous()


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("max_bytes", [1, 5 * 300 * 411 * 4, 10**10])
def test_chunked_equals_whole(mode, max_bytes):
    g = torch.Generator().manual_seed(0)
    x = torch.randn((150, 64, 86), generator=g)
    x[:, :6, :6] = 0.25  # an area where every class ties
    x[3, 40:50, 40:50] = x[7, 40:50, 40:50]  # two classes tied elsewhere
    assert torch.equal(upsample_argmax(x, (300, 411), mode, max_bytes=max_bytes, shortcut=False),
                       reference(x, (300, 411), mode))


def test_ties_go_to_the_first_class():
    x = torch.zeros((5, 4, 4))
    assert upsample_argmax(x, (8, 8), "bilinear", max_bytes=1).eq(0).all()
    assert upsample_argmax(x, (8, 8), "bilinear", shortcut=True).eq(0).all()


@pytest.fixture
def resized_classes(monkeypatch):
    """Records how many classes each full-resolution resize handled."""
    seen: list[int] = []
    original = postprocess._resize_argmax

    def spy(logits, size, mode, max_bytes):
        seen.append(logits.shape[0])
        return original(logits, size, mode, max_bytes)

    monkeypatch.setattr(postprocess, "_resize_argmax", spy)
    return seen


@pytest.mark.parametrize(("c", "h", "w", "size", "cells"), [
    (150, 128, 128, (512, 683), 4),   # SegFormer-like 1/4 resolution, ADE20K image
    (150, 128, 128, (480, 640), 8),
    (150, 128, 128, (128, 128), 6),   # same size
    (150, 128, 171, (97, 130), 6),    # downscaling
    (19, 64, 128, (1024, 2048), 5),   # Cityscapes-like
    (21, 65, 65, (500, 375), 4),      # odd sizes, VOC-like
    (4, 33, 47, (301, 173), 3),
])
def test_shortcut_equals_reference(c, h, w, size, cells, resized_classes):
    x = trained_like(c, h, w, cells)
    assert torch.equal(upsample_argmax(x, size, "bilinear", shortcut=True), reference(x, size))
    if c >= 19:  # the shortcut really skipped work: no resize of every class
        assert all(n < c for n in resized_classes), resized_classes


@pytest.mark.parametrize("seed", range(6))
def test_shortcut_equals_reference_with_ties_and_plateaus(seed):
    g = torch.Generator().manual_seed(seed)
    x = trained_like(40, 48, 64, 4, seed=seed)
    a, b = torch.randint(0, 40, (2,), generator=g).tolist()
    x[b, 10:30, 5:40] = x[a, 10:30, 5:40]  # exact ties between two classes over an area
    x[:, 0:8, 0:8] = 1.5  # every class tied
    x[a, 40:, 50:] = x[:, 40:, 50:].amax(0) + 1e-6  # a winner by a hair (below the certified margin)
    x = x * (10.0 ** float(torch.randint(-3, 4, (1,), generator=g)))  # any logit scale
    size = (int(torch.randint(40, 400, (1,), generator=g)), int(torch.randint(40, 400, (1,), generator=g)))
    assert torch.equal(upsample_argmax(x, size, "bilinear", shortcut=True), reference(x, size))


def test_shortcut_on_noisy_logits_falls_back_to_the_reference(resized_classes):
    x = torch.randn((150, 64, 64), generator=torch.Generator().manual_seed(3))  # a random network's
    assert torch.equal(upsample_argmax(x, (256, 300), "bilinear", shortcut=True), reference(x, (256, 300)))
    assert resized_classes == [150]


def test_shortcut_handles_one_class_half_precision_and_nan():
    assert upsample_argmax(torch.randn((1, 5, 7)), (11, 13), "bilinear").eq(0).all()
    x = trained_like(30, 32, 32, 4).half()
    assert torch.equal(upsample_argmax(x, (100, 90), "bilinear", shortcut=True), reference(x, (100, 90)))
    x = trained_like(30, 32, 32, 4)
    x[:, 5, 5] = float("nan")
    assert torch.equal(upsample_argmax(x, (100, 90), "bilinear", shortcut=True), reference(x, (100, 90)))


def test_shortcut_is_the_cpu_bilinear_default(resized_classes):
    x = trained_like(150, 64, 64, 4)
    upsample_argmax(x, (256, 256), "bilinear")
    assert max(resized_classes, default=0) < 150
    resized_classes.clear()
    upsample_argmax(x, (256, 256), "bicubic")
    assert resized_classes == [150]


@pytest.mark.parametrize("seed", range(25))
def test_shortcut_equals_reference_on_random_shapes(seed):
    g = torch.Generator().manual_seed(100 + seed)
    c = int(torch.randint(2, 160, (1,), generator=g))
    h, w = (int(v) for v in torch.randint(8, 96, (2,), generator=g))
    size = tuple(int(v) for v in torch.randint(8, 420, (2,), generator=g))
    x = trained_like(c, h, w, int(torch.randint(2, 12, (1,), generator=g)), seed=seed,
                     scale=float(torch.rand((1,), generator=g)) * 8)
    assert torch.equal(upsample_argmax(x, size, "bilinear", shortcut=True), reference(x, size))
