"""Postprocessing gives exactly the reference label map ``F.interpolate(...).argmax(0)``:
resizing channel chunks with a running argmax, and the CPU bilinear shortcut that resizes only
class boundaries and only the classes that can win there (ties included: first class wins)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness import jit
from harness.models import postprocess, resize_argmax
from harness.models.postprocess import upsample_argmax

needs_numba = pytest.mark.skipif(not jit.available(), reason="the one-sweep kernel needs numba (pip install 'segbench[kernels]')")


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


def test_shortcut_is_the_cpu_bilinear_default(resized_classes, monkeypatch):
    x = trained_like(150, 64, 64, 4)
    monkeypatch.setattr(resize_argmax, "arithmetic", lambda: None)  # as without numba
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


def _int(g: torch.Generator, lo: int, hi: int) -> int:
    return int(torch.randint(lo, hi + 1, (1,), generator=g))


def tie_case(g: torch.Generator):
    """Random logits built around ties: exact copies, one-ulp neighbours and copies of the winner.

    Outputs are either small (height + width <= 128, where the CPU kernel vectorises over channels)
    or thin (height + width just above 128, the generic kernel), so both kernel paths are covered
    while each case stays around 10^5 resized values.
    """
    c, h, w = _int(g, 2, 100), _int(g, 1, 12), _int(g, 1, 12)
    if _int(g, 0, 1):
        size = (_int(g, 1, 32), _int(g, 1, 32))
    else:
        short = _int(g, 1, 12)
        long = _int(g, 129, 134) - short
        size = (short, long) if _int(g, 0, 1) else (long, short)
    if _int(g, 0, 2) == 0:  # half-integers: exact ties everywhere
        x = torch.randint(-3, 4, (c, h, w), generator=g).float() * 0.5
    else:
        x = torch.randn((c, h, w), generator=g) * 3
    inf = torch.tensor(float("inf"))
    for _ in range(_int(g, 1, 3)):
        a, b = _int(g, 0, c - 1), _int(g, 0, c - 1)
        rows, cols = slice(_int(g, 0, h - 1), h), slice(_int(g, 0, w - 1), w)
        op = _int(g, 0, 3)
        if op == 0:
            x[b, rows, cols] = x[a, rows, cols]
        elif op == 1:
            x[b, rows, cols] = torch.nextafter(x[a, rows, cols], inf)
        elif op == 2:
            x[b, rows, cols] = torch.nextafter(x[a, rows, cols], -inf)
        else:
            x[b, rows, cols] = x[:, rows, cols].amax(0)  # tie with the winner
    mode = "bicubic" if _int(g, 0, 4) == 0 else "bilinear"
    max_bytes = _int(g, 1, 4 * size[0] * size[1] * c)
    shortcut = [None, True, False][_int(g, 0, 2)]
    return x, size, mode, max_bytes, shortcut


def test_fuzz_exact_ties_and_one_ulp_near_ties_are_bit_identical():
    """5,000 random cases (4,500 on one thread, 500 on two): the label map equals the one-piece reference.

    Before chunks were aligned to CHANNEL_ALIGN, 616 of 5,000 such cases differed. Every fourth
    case is also checked for ties in the reference's resized values, so the cases stay tie-heavy.
    """
    g = torch.Generator().manual_seed(2024)
    threads = torch.get_num_threads()
    mismatches, checked, exact_ties, near_ties = [], 0, 0, 0
    try:
        for i in range(5000):
            if i in (0, 4500):
                torch.set_num_threads(1 if i == 0 else 2)
            x, size, mode, max_bytes, shortcut = tie_case(g)
            up = F.interpolate(x[None], size=size, mode=mode, align_corners=False)[0]
            if i % 4 == 0:
                best = up.amax(0)
                checked += 1
                exact_ties += bool(((up == best).sum(0) > 1).any())
                near_ties += bool((up == torch.nextafter(best, best.new_tensor(float("-inf")))).any())
            got = upsample_argmax(x, size, mode, max_bytes=max_bytes, shortcut=shortcut)
            if not torch.equal(got, up.argmax(0)):
                mismatches.append((i, tuple(x.shape), size, mode, max_bytes, shortcut))
    finally:
        torch.set_num_threads(threads)
    assert exact_ties > checked // 4 and near_ties > checked // 8, (checked, exact_ties, near_ties)
    assert not mismatches, mismatches[:10]


@pytest.mark.parametrize("c", [3, 4, 5, 63, 64, 65, 67, 68, 130, 131])
@pytest.mark.parametrize("threads", [1, 2])
def test_chunks_equal_the_one_piece_resize_bitwise(c, threads):
    """Values, not only labels: every chunk equals the same channels of the one-piece resize, on
    the generic kernel (any chunks of >= 4 channels) and the channels-last one (aligned chunks)."""
    g = torch.Generator().manual_seed(c)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for h, w, size in [(7, 26, (17, 45)), (5, 9, (87, 60)), (1, 1, (30, 200)), (12, 3, (3, 140)),
                           (9, 11, (100, 141))]:
            x = torch.randn((1, c, h, w), generator=g)
            full = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            align = 1 if postprocess.per_channel_kernel(x[0], size, "bilinear") else postprocess.CHANNEL_ALIGN
            for step in (1, 3, 5, 64, 100):
                parts = postprocess.channel_parts(c, step, align)
                assert parts[0][0] == 0 and parts[-1][1] == c
                assert all(a % align == 0 and (b - a >= 4 or len(parts) == 1) for a, b in parts)
                pieces = [F.interpolate(x[:, a:b], size=size, mode="bilinear", align_corners=False)
                          for a, b in parts]
                assert torch.equal(torch.cat(pieces, 1), full), (h, w, size, step, parts)
    finally:
        torch.set_num_threads(old)


def test_unaligned_chunks_differ_on_the_vectorised_kernel():
    """Why alignment matters: a chunk boundary inside a vector changes values by an ulp there."""
    x = torch.randn((1, 141, 7, 26), generator=torch.Generator().manual_seed(0))
    full = F.interpolate(x, size=(17, 45), mode="bilinear", align_corners=False)
    pieces = torch.cat([F.interpolate(x[:, a:a + 47], size=(17, 45), mode="bilinear", align_corners=False)
                        for a in range(0, 141, 47)], 1)
    assert not postprocess.per_channel_kernel(x[0], (17, 45), "bilinear")
    assert torch.allclose(pieces, full, rtol=1e-6, atol=1e-6)
    if torch.equal(pieces, full):
        pytest.skip("this CPU's kernel rounds the scalar tail like the vector body")


def test_a_nan_in_a_later_chunk_wins_as_argmax_says():
    x = torch.zeros((130, 4, 4))
    x[100, 1, 1] = float("nan")
    assert torch.equal(upsample_argmax(x, (9, 9), "bilinear", max_bytes=1, shortcut=False), reference(x, (9, 9)))


@needs_numba
def test_one_sweep_kernel_reproduces_the_installed_arithmetic():
    """The probe finds this PyTorch's bilinear arithmetic, and the kernel's resized values then equal
    F.interpolate's bit for bit on other shapes too: up- and downscaling, equal sizes, one-pixel sides."""
    from harness.models import resize_argmax_loops as loops

    use_fma = resize_argmax.arithmetic()
    assert use_fma is not None, "neither arithmetic reproduces this PyTorch's bilinear kernel"
    g = torch.Generator().manual_seed(5)
    for c, h, w, size in [(5, 128, 128, (512, 683)), (4, 171, 128, (97, 130)), (7, 40, 50, (40, 150)),
                          (4, 1, 9, (30, 140)), (6, 33, 1, (200, 17))]:
        x = torch.randn((c, h, w), generator=g) * 5
        ref = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
        out = torch.empty((c, *size))
        loops.resize(x.numpy(), *resize_argmax._taps(h, size[0], use_fma), *resize_argmax._taps(w, size[1], use_fma),
                     use_fma, out.numpy())
        assert torch.equal(out.view(torch.int32), ref.view(torch.int32)), (c, h, w, size)
    assert upsample_argmax(x, (200, 17), "bilinear").shape == (200, 17)


@needs_numba
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_one_sweep_kernel_equals_reference_on_noise_ties_nan_and_inf(threads):
    g = torch.Generator().manual_seed(threads)
    cases = [torch.randn((150, 64, 64), generator=g),  # a random network's logits
             trained_like(19, 48, 96, 5, seed=threads),
             torch.randint(-2, 3, (40, 30, 30), generator=g).float() * 0.5]  # exact ties everywhere
    x = torch.randn((30, 32, 32), generator=g)
    x[:, 5, 5] = float("nan")
    x[3, 20, 7] = float("nan")
    x[:, 10, 10] = float("inf")  # inf * 0 weights: NaN in the resize, as F.interpolate computes it
    x[4, 25:, 25:] = float("-inf")
    cases.append(x)
    for x in cases:
        for size in [(256, 300), (97, 40), (32, 200)]:
            got = resize_argmax.resize_argmax(x, size, threads=threads)
            assert torch.equal(got, reference(x, size)), (tuple(x.shape), size, threads)
            assert torch.equal(upsample_argmax(x, size, "bilinear"), got)


@needs_numba
def test_segmentation_engine_prepares_the_one_sweep_kernel(monkeypatch):
    from types import SimpleNamespace

    from harness.tasks.segmentation import SegmentationEngine

    calls = []
    monkeypatch.setattr(resize_argmax, "arithmetic", lambda: calls.append(1))
    engine = SegmentationEngine(3, 255, "cpu")
    engine.prepare(SimpleNamespace(device=torch.device("cpu")))
    engine.prepare(SimpleNamespace(device=torch.device("meta")))  # not a CPU cell: nothing to load
    assert calls == [1]
