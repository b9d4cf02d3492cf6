"""Fused CPU kernel of the depth metrics' raw sums, compiled with numba (the ``kernels`` extra, also in ``depth``).

The numpy kernel (:class:`harness.depth.metrics._NumpyKernel`) makes about twenty passes over a
block of pixels; this one reads each pixel once. Per crop row (:mod:`harness.depth.fused_loops`,
loops LLVM vectorises): the first loop clips the prediction and the ground truth to [lo, hi],
marks the pixel evaluated if its ground truth is strictly inside (lo, hi) (and the mask allows
it), accumulates n, sum |e|, sum (p-g)^2/g and sum (p-g)^2 with e = (p - g) / g, and writes
q = p / g (1 where not evaluated) to a row buffer that stays in L1; the second accumulates, with
r = ln q, sum r, sum r^2, sum |r| and the three threshold counts (|r| < k ln 1.25). Two loops,
not one, because with every accumulator and constant live at once the loop spilled registers.
Rows are summed in the maps' float type, rows into blocks in float64.

The logarithm is the kernel's own (numba has no vectorised ``log``: LLVM would call the scalar
libm function per pixel): q = 2^k m with m in [sqrt(1/2), sqrt(2)) read from the float's bits,
then ln q = k ln 2 + f P(f) with f = m - 1 (exact) and P the polynomial interpolating
ln(1 + f) / f at the Chebyshev points of that interval (:func:`log1p_over_x`): degree 8 in
float32, within 3 units in the last place (numpy's own float32 ``log`` is within 2.5); degree 19
in float64, within 12 (a higher degree loses more in the conversion to powers of f than it
gains); both tested. The division p / g is the only one per pixel (divisions bound the loop's
speed). The logarithm needs p / g to be a normal float, which holds whenever max_depth /
min_depth fits the float type (:func:`supports`); otherwise (``max_depth=inf``) the caller uses
the numpy kernel.

Non-finite values need no second pass: the clipping is written as ``x if x > lo else lo`` (one max
instruction), which turns a NaN prediction into min_depth as ZoeDepth does, and an infinite or NaN
ground truth fails ``lo < g < hi``, so it is not evaluated.

``fastmath`` is reassociation, contraction and no signed zeros only (no ``nnan``/``ninf``: the
comparisons above must keep their NaN semantics); ``error_model="numpy"`` keeps divisions free of
the Python ``ZeroDivisionError`` branch, which would stop the loops from vectorising.

Compiled on first use per float type and mask (none or bool), 1-2 s each, and cached in
``harness/depth/__pycache__`` where that is writable (``cache=True``); a process that finds the
cache pays numba's import and the load, about 0.5 s. ``tests/test_depth_metrics.py`` checks every
engine against the float64 reference; docs/PERFORMANCE.md has the figures.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

LN_2 = math.log(2.0)
# Per float type: (bits of sqrt(1/2), mantissa bits, degree of the polynomial of ln(1 + f) / f)
LOG_PARAMS = {np.dtype(np.float32): (0x3F3504F3, 23, 8), np.dtype(np.float64): (0x3FE6A09E667F3BCD, 52, 19)}


def log1p_over_x(degree: int) -> np.ndarray:
    """Power-series coefficients (constant first, float64) of the polynomial of ``degree`` that
    interpolates ln(1 + f) / f at the Chebyshev points of [sqrt(1/2) - 1, sqrt(2) - 1]."""
    from numpy.polynomial import Chebyshev, Polynomial

    def target(f):
        safe = np.where(f == 0, 1.0, f)
        return np.where(f == 0, 1.0, np.log1p(safe) / safe)

    fit = Chebyshev.interpolate(target, degree, domain=[math.sqrt(0.5) - 1, math.sqrt(2.0) - 1])
    return fit.convert(kind=Polynomial).coef


@cache
def _constants(dtype: np.dtype) -> tuple[tuple, tuple]:
    """(scalars (1, ln 2, ln 1.25, 2 ln 1.25, 3 ln 1.25), polynomial coefficients) in ``dtype``."""
    from harness.depth.metrics import LN_125

    t = dtype.type
    scalars = (t(1.0), t(LN_2), t(LN_125), t(2 * LN_125), t(3 * LN_125))
    return scalars, tuple(t(c) for c in log1p_over_x(LOG_PARAMS[dtype][2]))


@cache
def supports(lo: float, hi: float, dtype: np.dtype) -> bool:
    """Whether every p / g of an evaluated pixel is a normal float of ``dtype`` (the kernel's logarithm
    needs it): p in [lo, hi] and g in (lo, hi) give p / g in (lo / hi, hi / lo)."""
    info = np.finfo(dtype)
    return math.isfinite(hi) and lo / hi >= float(info.tiny) and hi / lo <= float(info.max)


def block_sums(p: np.ndarray, g: np.ndarray, m: np.ndarray | None, jobs: np.ndarray, cols: tuple[int, int],
               lo: float, hi: float) -> np.ndarray:
    """Raw sums (float64 (len(jobs), len(RAW)), :data:`harness.depth.metrics.RAW`) of blocks of rows.

    ``p``, ``g``: C-contiguous (N, H, W) maps of one float dtype (float32 or float64) for which
    :func:`supports` holds; ``m``: a bool mask of that shape or None; ``jobs``: int64 rows
    (image, first row, end row); ``cols``: the columns summed. Any value is handled: NaN and -inf
    predictions become lo, +inf hi; NaN and infinite ground truth is not evaluated.
    """
    from harness.depth import fused_loops  # numba: imported on first use
    from harness.depth.metrics import RAW

    out = np.zeros((len(jobs), len(RAW)), dtype=np.float64)
    t = p.dtype.type
    row = np.empty(cols[1] - cols[0], dtype=p.dtype)
    scalars, coefficients = _constants(p.dtype)
    fused_loops.blocks(p, g, m, jobs, cols[0], cols[1], t(lo), t(hi), scalars, coefficients, row, out)
    return out


def warm() -> None:
    """Load (or compile) the float32 kernel, with and without a mask, on a tiny map."""
    g = np.full((1, 2, 2), 2.0, dtype=np.float32)
    jobs = np.array([(0, 0, 2)], dtype=np.int64)
    for m in (None, np.ones(g.shape, dtype=bool)):
        block_sums(g, g, m, jobs, (0, 2), 1e-3, 10.0)
