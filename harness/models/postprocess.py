"""Logits -> label maps at the label's resolution: resize (bilinear or bicubic) then argmax.

The reference is ``F.interpolate(logits, size, mode, align_corners=False).argmax(0)`` in float32;
everything here returns exactly that label map, ties included (the first class wins, as
``argmax`` does), only cheaper:

- :func:`upsample_argmax` resizes channels in chunks of at most ``UPSAMPLE_CHUNK_BYTES`` with a
  running argmax, so memory stays bounded for large images and many classes. A chunk's resized
  values are bit-identical to the same channels of the one-piece resize only if the kernel
  computes them the same way. PyTorch's generic CPU kernel does, for any chunk of at least 4
  channels; its channels-last kernel (small outputs, 1x1 inputs, 3 channels on one thread)
  vectorises over channels with a scalar tail that rounds differently, so there chunks start
  at multiples of ``CHANNEL_ALIGN`` channels (:func:`channel_parts`, :func:`per_channel_kernel`);
- on the CPU, bilinear resizing runs in one compiled sweep where numba is installed and its
  arithmetic reproduces the installed kernel's bit for bit (:mod:`harness.models.resize_argmax`);
  otherwise it takes a shortcut (:func:`_bilinear_shortcut`). A bilinear output
  pixel is a convex combination (non-negative weights summing to 1) of at most 2x2 input pixels.
  If one class beats every other class by a clear margin at each of those input pixels, it
  beats them in the combination too, so the output label is known without resizing anything.
  Only the remaining pixels (class boundaries) need resized logits, and only for the classes
  that can still win there. The margin is far above float32 rounding of the resize; pixels
  closer than it to a tie are settled with values bit-identical to the reference resize
  (:func:`_reference_subset_argmax`), so ties break as the reference breaks them.

``tests/test_postprocess.py`` checks this on more than 5,000 random cases built around exact
ties and one-ulp near-ties, on one and two threads (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from harness.models import resize_argmax

# Largest block of full-resolution logits resized at once (bytes): channels are resized in chunks
# of at most this size with a running argmax. Besides bounding memory, 16 MiB chunks are faster
# than one piece on the CPU (2.0x for 150 classes, docs/PERFORMANCE.md): the
# resized chunk is still in cache when the running argmax reads it.
UPSAMPLE_CHUNK_BYTES = 16 * 1024 * 1024

# Below this many classes the reference resize is as cheap as finding the settled pixels (CPU,
# tests/benchmarks/test_postprocess_speed.py): the shortcut is not tried.
SHORTCUT_MIN_CLASSES = 32

# Resolving one unsettled output pixel with k candidate classes costs about as much on the CPU as
# resizing RESOLVE_BASE + RESOLVE_PER_CANDIDATE * k classes at one pixel (measured for 19 to 150
# classes, 1 to 26 candidates). The shortcut resizes every class instead whenever that is cheaper.
RESOLVE_BASE = 100
RESOLVE_PER_CANDIDATE = 20
# Unsettled pixels probed for a first estimate of their candidates before all are examined.
PROBE_PIXELS = 512
# Where the CPU kernel vectorises over channels, channel chunks start at multiples of this many
# channels: a multiple of every float32 vector width (8 with AVX2, 16 with AVX-512, up to 64 lanes
# of 2048-bit SVE), so a channel sits in the same lane in a chunk as in the one-piece resize.
CHANNEL_ALIGN = 64
# The CPU bilinear kernel takes its channels-last (vectorised) path when the output's height plus
# width is at most this (ATen's UpSampleKernel.cpp, _use_vectorized_kernel_cond_2d).
VECTORIZED_OUTPUT_EXTENT = 128


def upsample_argmax(logits: torch.Tensor, size: tuple[int, int], mode: str,
                    max_bytes: int = UPSAMPLE_CHUNK_BYTES, shortcut: bool | None = None) -> torch.Tensor:
    """int64 argmax over channels of ``logits`` (C, h, w) resized to ``size`` = (H, W) pixels.

    Equals ``F.interpolate(logits[None].float(), size, mode, align_corners=False)[0].argmax(0)``.
    By default, bilinear on the CPU takes the compiled one-sweep kernel of
    :mod:`harness.models.resize_argmax` where it reproduces the installed kernel's arithmetic,
    else the shortcut (with at least ``SHORTCUT_MIN_CLASSES`` classes). ``shortcut=True`` takes the
    shortcut, which skips resizing where the label is already decided; ``False`` the chunked
    reference. On a GPU the full resize is memory-bound and cheap, and the shortcut would add host
    synchronisations.
    """
    logits = logits.float()
    if shortcut is None and _fused_applies(logits, size, mode):
        return resize_argmax.resize_argmax(logits, size)
    if shortcut is None:
        shortcut = mode == "bilinear" and logits.device.type == "cpu" and logits.shape[0] >= SHORTCUT_MIN_CLASSES
    if shortcut and mode == "bilinear":
        return _bilinear_shortcut(logits, size, max_bytes)
    return _resize_argmax(logits, size, mode, max_bytes)


def _fused_applies(logits: torch.Tensor, size: tuple[int, int], mode: str) -> bool:
    """Whether :func:`harness.models.resize_argmax.resize_argmax` gives the reference labels here:
    bilinear, float32 on the CPU, PyTorch's generic kernel, and an arithmetic the probe matched."""
    return (mode == "bilinear" and logits.device.type == "cpu" and logits.dtype == torch.float32
            and per_channel_kernel(logits, size, mode) and resize_argmax.arithmetic() is not None)


def channel_parts(c: int, step: int, align: int = 1) -> list[tuple[int, int]]:
    """(start, stop) channel ranges covering ``c`` channels in chunks of about ``step`` channels.

    Every range has at least 4 channels (a shorter tail joins the range before it), and with
    ``align > 1`` the starts are multiples of ``align``. Why (PyTorch's CPU bilinear kernel): its
    generic kernel computes every element with the same scalar arithmetic, but 3 channels on one
    thread, 1x1 inputs with more than 3 channels and small outputs go to a channels-last kernel
    that vectorises over channels with a scalar tail rounded differently. Ranges of at least 4
    channels keep a chunk on the kernel the one-piece resize uses; on the vectorised kernel,
    aligned starts keep each channel in the lane (vector body or tail) it has there. Either way
    a chunk's values are bit-identical to the same channels of the one-piece resize.
    """
    step = max(align, step // align * align) if align > 1 else max(4, step)
    bounds = list(range(0, c, step)) + [c]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < 4:
        del bounds[-2]
    return list(zip(bounds[:-1], bounds[1:], strict=False))


def _resize_argmax(logits: torch.Tensor, size: tuple[int, int], mode: str, max_bytes: int) -> torch.Tensor:
    """The reference computation, channels in chunks of about ``max_bytes`` of resized logits.

    Chunking keeps the label map identical: each chunk's values equal the one-piece resize's
    (:func:`channel_parts`, aligned where the kernel vectorises over channels), ``max(0)`` returns
    the first maximal class within a chunk, and the running argmax replaces the best class only on
    a strictly greater value or on a NaN where the best is not one (``argmax`` ranks NaN first).
    """
    c, h_in, w_in = logits.shape
    h, w = size
    step = max(1, min(c, max_bytes // max(h * w * 4, 1)))
    align = 1 if per_channel_kernel(logits, size, mode) else CHANNEL_ALIGN
    best_val = best_idx = None
    for start, stop in channel_parts(c, step, align):
        up = F.interpolate(logits[None, start:stop], size=size, mode=mode, align_corners=False)[0]
        val, idx = up.max(0)
        idx = idx + start
        if best_val is None:
            best_val, best_idx = val, idx
        else:
            better = (val > best_val) | (val.isnan() & ~best_val.isnan())
            best_val = torch.where(better, val, best_val)
            best_idx = torch.where(better, idx, best_idx)
    return best_idx


def per_channel_kernel(logits: torch.Tensor, size: tuple[int, int], mode: str) -> bool:
    """Whether resizing ``logits`` (C, h, w) to ``size`` computes every channel with the same arithmetic.

    True on CUDA (one thread per output pixel loops over channels), for bicubic on the CPU (its
    float kernel is always the generic one) and for CPU bilinear outside the channels-last
    kernel, whose dispatch (``upsample_bilinear2d_kernel_impl_float`` in ATen) this mirrors: 1x1
    inputs with more than 3 channels, outputs with height + width at most
    ``VECTORIZED_OUTPUT_EXTENT``, and 3 channels on one thread. Where it holds, any subset of at
    least 4 channels resizes bit-identically to the same channels of the whole tensor.
    """
    if logits.device.type != "cpu" or mode != "bilinear":
        return True
    c, h, w = logits.shape
    vectorized = ((h * w == 1 and c > 3) or size[0] + size[1] <= VECTORIZED_OUTPUT_EXTENT
                  or (c == 3 and torch.get_num_threads() == 1))
    return not vectorized


def _reference_subset_argmax(logits: torch.Tensor, classes: torch.Tensor, size: tuple[int, int],
                             max_bytes: int) -> torch.Tensor:
    """Index into ``classes`` of the reference bilinear argmax restricted to them, over all of ``size``.

    Only valid where :func:`per_channel_kernel` holds for the full tensor: the subset is padded to at
    least 4 channels (repeating its last class, which cannot change the first maximal index) so
    that it stays on the generic kernel too.
    """
    if len(classes) < 4:
        classes = torch.cat([classes, classes[-1:].expand(4 - len(classes))])
    sub = logits.index_select(0, classes).contiguous()
    return _resize_argmax(sub, size, "bilinear", max_bytes)


def _margin(logits: torch.Tensor) -> float:
    """How far (in logit units) one class must beat another for float32 rounding not to matter.

    Two bilinear values of the same class, one from the reference kernel and one computed here,
    differ by at most ``delta``: the kernel may round a source coordinate one unit in the last place
    differently (a weight off by ``coord_ulp``, moving the value by at most ``2 * coord_ulp`` times
    the largest |logit| per axis), plus arithmetic rounding (far below ``2**-18`` of it). A gap
    above ``4 * delta`` keeps its sign in both computations.
    """
    c, h, w = logits.shape
    coord_ulp = 2.0 ** (math.frexp(max(h, w))[1] - 24)
    return 4 * (4 * coord_ulp + 2.0**-18) * float(logits.abs().max())


def _taps(n_in: int, n_out: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per output index: the two input taps (i0, i1) and the weight of i1, as the CPU resize computes them.

    float32 arithmetic like the kernel's: ``src = n_in / n_out * (i + 0.5) - 0.5`` clamped at 0,
    ``i0 = floor(src)``, ``i1 = i0 + 1`` (clamped to the last index), weight ``src - i0``. A fused
    multiply-add in the kernel may round ``src`` one unit in the last place differently; the
    value this changes is far inside :func:`_margin`.
    """
    scale = torch.tensor(n_in, dtype=torch.float32) / n_out
    src = (scale * (torch.arange(n_out, dtype=torch.float32) + 0.5) - 0.5).clamp(min=0)
    i0 = torch.floor(src).long().clamp(max=n_in - 1)
    lam = (src - i0).clamp(0, 1)
    return i0.to(device), torch.clamp(i0 + 1, max=n_in - 1).to(device), lam.to(device)


def _block_candidates(flat: torch.Tensor, blocks: torch.Tensor, h: int, w: int,
                      eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(can_win, block_max), both (C, blocks), for 2x2 tap blocks given by their top-left flat index.

    A class can win somewhere in a block only if its block maximum reaches the block's floor: the
    largest class minimum over the block, a lower bound of the winner's bilinear value there.
    """
    by, bx = blocks // w, blocks % w
    by1, bx1 = (by + 1).clamp(max=h - 1), (bx + 1).clamp(max=w - 1)
    vals = [flat[:, i] for i in (by * w + bx, by * w + bx1, by1 * w + bx, by1 * w + bx1)]
    block_max = torch.maximum(torch.maximum(vals[0], vals[1]), torch.maximum(vals[2], vals[3]))
    block_min = torch.minimum(torch.minimum(vals[0], vals[1]), torch.minimum(vals[2], vals[3]))
    return block_max >= block_min.amax(0) - eps, block_max


def _resolving_pays(pixels: int, k: int, c: int, out_pixels: int) -> bool:
    """Whether resolving ``pixels`` output pixels over ``k`` candidates each costs less than resizing all ``c`` classes."""
    return pixels * (RESOLVE_BASE + RESOLVE_PER_CANDIDATE * k) <= c * out_pixels


def _resolve(logits: torch.Tensor, size: tuple[int, int], pixels: torch.Tensor, taps: tuple, eps: float,
             max_bytes: int) -> torch.Tensor | None:
    """Labels of the output pixels ``pixels`` (flat indices into ``size``) whose taps disagree.

    ``taps`` holds :func:`_taps` of the rows and of the columns. Per 2x2 block of taps only a few
    classes can win (:func:`_block_candidates`), typically two or three. Their bilinear values are
    computed for each pixel (float32); where the best beats the runner-up by more than ``eps``
    (which covers the rounding of both computations), the label is decided. The rare near-ties
    left are settled by the reference resize of their candidate classes, so ties break as the
    reference breaks them. None when resizing every class is cheaper: too many candidates per
    pixel, or near-ties among more than half of the classes.
    """
    c, h, w = logits.shape
    n, out_pixels = len(pixels), size[0] * size[1]
    flat = logits.reshape(c, h * w)
    (y0, y1, ly), (x0, x1, lx) = taps
    py, px = pixels // size[1], pixels % size[1]
    r0, r1, cx0, cx1 = y0[py] * w, y1[py] * w, x0[px], x1[px]
    block_of = r0 + cx0  # the top-left tap of each pixel's 2x2 block
    if n > 4 * PROBE_PIXELS:  # first a cheap lower bound of k from evenly spaced pixels
        probe = _block_candidates(flat, block_of[:: n // PROBE_PIXELS], h, w, eps)[0]
        if not _resolving_pays(n, int(probe.sum(0).max()), c, out_pixels):
            return None
    blocks, inverse = torch.unique(block_of, return_inverse=True)
    can_win, block_max = _block_candidates(flat, blocks, h, w, eps)
    k = int(can_win.sum(0).max())
    if not _resolving_pays(n, k, c, out_pixels):
        return None
    ranked = torch.where(can_win, block_max, block_max.new_tensor(float("-inf"))).topk(k, dim=0)
    classes = ranked.indices[:, inverse]  # (k, pixels)
    if k == 1:
        return classes[0]
    valid = torch.isfinite(ranked.values)[:, inverse]
    base = classes * (h * w)
    v00, v01 = flat.take(base + block_of), flat.take(base + (r0 + cx1))
    v10, v11 = flat.take(base + (r1 + cx0)), flat.take(base + (r1 + cx1))
    wy, wx = ly[py], lx[px]
    top = v00 + wx * (v01 - v00)
    value = top + wy * (v10 + wx * (v11 - v10) - top)
    value = torch.where(valid, value, value.new_tensor(float("-inf")))
    best, order = value.topk(2, dim=0)
    labels = classes.gather(0, order[:1])[0]
    near_tie = best[0] - best[1] <= eps
    if bool(near_tie.any()):
        tied = near_tie.nonzero().flatten()
        suspects = torch.unique(torch.where(valid[:, tied], classes[:, tied], classes[0, tied]))
        if len(suspects) > c // 2:  # about as dear as resizing everything: let the caller do that
            return None
        sub = _reference_subset_argmax(logits, suspects, size, max_bytes)
        labels[tied] = suspects[sub.flatten()[pixels[tied]]]
    return labels


def _bilinear_shortcut(logits: torch.Tensor, size: tuple[int, int], max_bytes: int) -> torch.Tensor:
    """Bilinear resize + argmax that resizes only boundary pixels and only the classes that can win there."""
    c, h, w = logits.shape
    if c == 1:
        return torch.zeros(size, dtype=torch.long, device=logits.device)
    if not per_channel_kernel(logits, size, "bilinear"):  # small outputs: aligned chunks are cheap and exact
        return _resize_argmax(logits, size, "bilinear", max_bytes)
    eps = _margin(logits)
    top2, idx2 = logits.topk(2, dim=0)
    # the clear winner of each input pixel, -1 where none is clear
    key = torch.where(top2[0] - top2[1] > eps, idx2[0], torch.full_like(idx2[0], -1))
    # the clear winner shared by all four pixels of each 2x2 block of taps (clamped at the border);
    # an output pixel whose taps form a block with one is settled: the convex combination keeps it
    right = torch.cat([key[:, 1:], key[:, -1:]], 1)
    below = torch.cat([key[1:], key[-1:]], 0)
    diagonal = torch.cat([right[1:], right[-1:]], 0)
    block = torch.where((key == right) & (key == below) & (key == diagonal), key, torch.full_like(key, -1))
    taps = _taps(h, size[0], logits.device), _taps(w, size[1], logits.device)
    labels = block.index_select(0, taps[0][0]).index_select(1, taps[1][0])
    unsettled = labels.flatten() < 0
    n = int(unsettled.sum())
    if n == 0:
        return labels
    if not _resolving_pays(n, 1, c, labels.numel()):
        return _resize_argmax(logits, size, "bilinear", max_bytes)
    pixels = unsettled.nonzero().flatten()
    resolved = _resolve(logits, size, pixels, taps, eps, max_bytes)
    if resolved is None:
        return _resize_argmax(logits, size, "bilinear", max_bytes)
    labels.view(-1)[pixels] = resolved
    return labels
