"""Bilinear resize + argmax of CPU logits in one compiled sweep, bit-exact to ``F.interpolate`` + ``argmax``.

``F.interpolate(logits, size, "bilinear", align_corners=False).argmax(0)`` writes C full-size
channels (150 x 512 x 683 float32 is 210 MB for one ADE20K image) and reads them again. The
loops of :mod:`harness.models.resize_argmax_loops` resize each input row along the width once,
blend two such rows per output row and keep a running argmax over the channels, so no full-size
channel exists; the arithmetic is the kernel's own, so the values and hence the labels are
identical (the first maximal class wins, NaN ranks first, as ``argmax``).

Which arithmetic the installed kernel uses (fused multiply-adds or not depends on how ATen was
compiled for this CPU) is found once per process by :func:`arithmetic`: a probe tensor is resized
both ways and compared bit for bit with ``F.interpolate``; without a match (another kernel, another
PyTorch) the caller keeps its torch path. Applies where PyTorch's generic bilinear kernel runs
(:func:`harness.models.postprocess.per_channel_kernel`), float32 on the CPU, with numba installed.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F

from harness import jit

# The probe: channels, input and output sizes that take the generic kernel (output height + width > 128)
# with scales that are not powers of two, so every rounding step is exercised.
PROBE = (6, 13, 17, (61, 97))


def _taps(n_in: int, n_out: int, use_fma: bool) -> tuple[np.ndarray, ...]:
    from harness.models import resize_argmax_loops as loops

    i0, i1 = np.empty(n_out, np.int64), np.empty(n_out, np.int64)
    l0, l1 = np.empty(n_out, np.float32), np.empty(n_out, np.float32)
    loops.taps(n_in, n_out, use_fma, i0, i1, l0, l1)
    return i0, i1, l0, l1


@cache
def arithmetic() -> bool | None:
    """True (fused multiply-adds) or False (separate roundings): how this process's bilinear
    kernel computes, or None where neither reproduces it bit for bit (or numba is missing)."""
    if not jit.available():
        return None
    from harness.models import resize_argmax_loops as loops

    c, h, w, (H, W) = PROBE
    x = torch.randn(c, h, w, generator=torch.Generator().manual_seed(0)) * 7
    ref = F.interpolate(x[None], size=(H, W), mode="bilinear", align_corners=False)[0].numpy()
    for use_fma in (True, False):
        out = np.empty((c, H, W), np.float32)
        loops.resize(x.numpy(), *_taps(h, H, use_fma), *_taps(w, W, use_fma), use_fma, out)
        if np.array_equal(out.view(np.int32), ref.view(np.int32)):
            _run(x.numpy(), (H, W), use_fma, 1)  # loads the argmax loop too: later calls find it compiled
            return use_fma
    return None


@cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="segbench-resize-argmax")


def resize_argmax(logits: torch.Tensor, size: tuple[int, int], threads: int | None = None) -> torch.Tensor:
    """int64 (H, W) labels of float32 CPU ``logits`` (C, h, w) resized bilinearly to ``size``.

    Equals ``F.interpolate(logits[None], size, mode="bilinear", align_corners=False)[0].argmax(0)``
    wherever :func:`arithmetic` is not None (the caller checks) and the generic kernel applies.
    ``threads`` (default: torch's intra-op threads of the calling thread) share the output rows;
    each row is computed the same way on any of them.
    """
    x = np.ascontiguousarray(logits.numpy())
    return torch.from_numpy(_run(x, size, arithmetic(), threads or torch.get_num_threads()))


def _run(x: np.ndarray, size: tuple[int, int], use_fma: bool, threads: int) -> np.ndarray:
    from harness.models import resize_argmax_loops as loops

    c, h, w = x.shape
    H, W = size
    out = np.empty((H, W), np.int64)
    taps = (*_taps(h, H, use_fma), *_taps(w, W, use_fma))
    threads = max(1, min(threads, H // 16 or 1))
    bounds = [H * k // threads for k in range(threads + 1)]

    def part(k: int) -> None:
        buffers = np.empty((c, W), np.float32), np.empty((c, W), np.float32)
        loops.resize_argmax(x, *taps, use_fma, np.full(2, -1, np.int64), out, bounds[k], bounds[k + 1], *buffers,
                            np.empty(W, np.float32), np.empty(W, np.int32))

    if threads == 1:
        part(0)
    else:  # the loops release the GIL
        list(_pool(threads).map(part, range(threads)))
    return out
