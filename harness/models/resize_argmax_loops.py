"""numba loops of :mod:`harness.models.resize_argmax`: bilinear resize + argmax in one sweep.

The arithmetic is PyTorch's CPU bilinear kernel (``align_corners=False``), operation by operation,
so every resized value is bit-identical to ``F.interpolate``'s and the argmax is exact: per output
index the source coordinate ``s = scale * (i + 0.5) - 0.5`` clamped at 0 (``scale`` = in / out in
float32), taps ``i0 = int(s)``, ``i1 = min(i0 + 1, n - 1)``, weights ``l1 = clamp(s - i0, 0, 1)``,
``l0 = 1 - l1``; along the width first, ``t = v[i0] * l0 + v[i1] * l1``, then along the height
``t_top * l0 + t_bottom * l1``. Where ATen was compiled with fused multiply-adds (x86-64 builds
with AVX2), each ``a * b + c * d`` is ``fma(a, b, c * d)`` and ``s`` is ``fma(scale, i + 0.5, -0.5)``;
``use_fma`` chooses, and :func:`harness.models.resize_argmax.arithmetic` finds which one the
installed kernel uses by comparing bits. No ``fastmath``: LLVM must not fuse or reorder anything.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

_jit = njit(nogil=True, cache=True, error_model="numpy")


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c rounded once (LLVM's llvm.fma), float32."""
    if not (a == b == c == types.float32):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return types.float32(types.float32, types.float32, types.float32), codegen


@_jit
def blend(a, wa, b, wb, use_fma):  # pragma: no cover - compiled
    """a * wa + b * wb as the kernel rounds it."""
    if use_fma:
        return fma(a, wa, b * wb)
    return a * wa + b * wb


@_jit
def taps(n_in, n_out, use_fma, i0, i1, l0, l1):  # pragma: no cover - compiled
    """Fill the taps and weights of resizing ``n_in`` samples to ``n_out`` (ATen's
    ``compute_source_index_and_lambda``; equal sizes copy)."""
    half = np.float32(0.5)
    zero = np.float32(0.0)
    one = np.float32(1.0)
    scale = np.float32(n_in) / np.float32(n_out)
    for i in range(n_out):
        if n_in == n_out:
            i0[i] = i
            i1[i] = i
            l0[i] = one
            l1[i] = zero
            continue
        d = np.float32(i) + half
        s = fma(scale, d, -half) if use_fma else scale * d - half
        s = zero if s < zero else s
        k = np.int64(s)
        i0[i] = k
        i1[i] = k + 1 if k < n_in - 1 else k
        lam = s - np.float32(k)
        lam = zero if lam < zero else lam
        lam = one if lam > one else lam
        l1[i] = lam
        l0[i] = one - lam


@_jit
def _row(x, r, c0, c1, x0, x1, l0, l1, use_fma, buf):  # pragma: no cover - compiled
    """Channels c0..c1 of input row ``r`` resized along the width into ``buf`` (C, W)."""
    for c in range(c0, c1):
        src = x[c, r]
        dst = buf[c]
        for j in range(dst.size):
            dst[j] = blend(src[x0[j]], l0[j], src[x1[j]], l1[j], use_fma)


@_jit
def resize_argmax(x, y0, y1, wy0, wy1, x0, x1, wx0, wx1, use_fma, rows, out, first, last,
                  top, bottom, best, label):  # pragma: no cover - compiled
    """Labels of output rows first..last into ``out`` (H, W) int64.

    ``x``: (C, h, w) float32 logits; ``rows``: -1 or the input row held in ``top``/``bottom``
    ((C, W) float32 buffers: two input rows resized along the width, reused by the output rows
    that share them); ``best``/``label``: (W,) buffers. argmax's rule: the first maximal class, a
    NaN above every number (the first NaN).
    """
    C = x.shape[0]
    for Y in range(first, last):
        a, b = y0[Y], y1[Y]
        if rows[0] != a:
            if rows[1] == a:  # the previous bottom row is this top row: swap the buffers
                top, bottom = bottom, top
                rows[0], rows[1] = rows[1], rows[0]
            else:
                _row(x, a, 0, C, x0, x1, wx0, wx1, use_fma, top)
                rows[0] = a
        if rows[1] != b:
            if b == a:
                bottom[:, :] = top
            else:
                _row(x, b, 0, C, x0, x1, wx0, wx1, use_fma, bottom)
            rows[1] = b
        w0, w1 = wy0[Y], wy1[Y]
        t, u = top[0], bottom[0]
        for j in range(best.size):
            best[j] = blend(t[j], w0, u[j], w1, use_fma)
            label[j] = 0
        for c in range(1, C):
            t, u = top[c], bottom[c]
            for j in range(best.size):
                v = blend(t[j], w0, u[j], w1, use_fma)
                m = best[j]
                better = (v > m) | ((v != v) & (m == m))
                best[j] = v if better else m
                label[j] = c if better else label[j]
        for j in range(best.size):
            out[Y, j] = label[j]
    return top, bottom


@_jit
def resize(x, y0, y1, wy0, wy1, x0, x1, wx0, wx1, use_fma, out):  # pragma: no cover - compiled
    """The resized values (C, H, W) themselves: what :func:`harness.models.resize_argmax.arithmetic`
    compares with ``F.interpolate`` bit for bit."""
    C, H, W = out.shape
    top = np.empty((C, W), dtype=np.float32)
    bottom = np.empty((C, W), dtype=np.float32)
    for Y in range(H):
        _row(x, y0[Y], 0, C, x0, x1, wx0, wx1, use_fma, top)
        _row(x, y1[Y], 0, C, x0, x1, wx0, wx1, use_fma, bottom)
        for c in range(C):
            for j in range(W):
                out[c, Y, j] = blend(top[c, j], wy0[Y], bottom[c, j], wy1[Y], use_fma)
