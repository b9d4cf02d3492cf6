"""The numba loops of :mod:`harness.depth.fused` (imported on first use: it imports numba).

Everything is defined at module level with ``cache=True``, so a process loads the compiled
machine code from ``__pycache__`` instead of compiling it (numba keys its cache on the source
file; closures would be compiled again in every process). Constants of the maps' float type
come in as arguments: a Python float would promote the loops to float64.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from harness.depth.fused import LOG_PARAMS

# every fast-math flag but nnan/ninf: the comparisons must keep their NaN semantics
_jit = njit(fastmath={"nsz", "contract", "reassoc"}, nogil=True, error_model="numpy", cache=True)
_LAYOUTS = {types.float32: (ir.FloatType(), 32, *LOG_PARAMS[np.dtype(np.float32)][:2]),
            types.float64: (ir.DoubleType(), 64, *LOG_PARAMS[np.dtype(np.float64)][:2])}


@intrinsic
def split(typingctx, x):
    """x (a positive normal float) -> (m, k) with x = 2^k m, m in [sqrt(1/2), sqrt(2)), k as a float.

    The integer arithmetic is LLVM IR in the float's own width: numba's would widen 32-bit
    integers to 64 bits, which halves the vector lanes of the loop.
    """
    if x not in _LAYOUTS:
        return None
    float_type, width, sqrt_half_bits, mantissa_bits = _LAYOUTS[x]

    def codegen(context, builder, signature, args):
        int_type = ir.IntType(width)
        bits = builder.bitcast(args[0], int_type)
        k = builder.ashr(builder.sub(bits, ir.Constant(int_type, sqrt_half_bits)), ir.Constant(int_type, mantissa_bits))
        m = builder.bitcast(builder.sub(bits, builder.shl(k, ir.Constant(int_type, mantissa_bits))), float_type)
        return context.make_tuple(builder, signature.return_type, [m, builder.sitofp(k, float_type)])

    return types.UniTuple(x, 2)(x), codegen


@_jit
def log(x, one, ln2, coefficients):  # pragma: no cover - compiled
    """ln x of a positive normal float: k ln 2 + f P(f), f = m - 1 (exact for m in [sqrt(1/2), sqrt(2)))."""
    m, k = split(x)
    f = m - one
    last = len(coefficients) - 1
    series = coefficients[last]
    for j in range(last - 1, -1, -1):
        series = series * f + coefficients[j]
    return f * series + k * ln2


@_jit
def linear(pr, gr, mr, lo, hi, one, qr):  # pragma: no cover - compiled
    """The sums of one row that need no logarithm (n, sum |e|, sum d e, sum d^2 with d = p - g,
    e = d / g); q = p / g (1 where not evaluated) into ``qr``."""
    zero = one - one
    n = s_abs = s_sqrel = s_sq = zero
    for x in range(pr.size):
        # "x if x > lo else lo" is one max instruction, and NaN gives lo: ZoeDepth's NaN -> min_depth
        pv = pr[x]
        pv = pv if pv > lo else lo
        pv = pv if pv < hi else hi  # +inf -> max_depth
        gv = gr[x]
        ok = (gv > lo) & (gv < hi)  # False for NaN
        if mr is not None:  # pruned at compile time when there is no mask
            ok = ok & mr[x]
        gc = gv if gv > lo else lo
        gc = gc if gc < hi else hi
        q = pv / gc if ok else one  # 1 outside the evaluated pixels: e = r = 0 there
        e = q - one
        d = e * gc
        n += one if ok else zero
        s_abs += abs(e)
        s_sqrel += d * e
        s_sq += d * d
        qr[x] = q
    return n, s_abs, s_sqrel, s_sq


@_jit
def logarithmic(qr, scalars, coefficients):  # pragma: no cover - compiled
    """The sums of r = ln q over a row of q: sum r, sum r^2, sum |r| and the counts of |r| below
    k ln 1.25 (pixels not evaluated have r = 0 and count too: the caller subtracts them)."""
    one, ln2, c1, c2, c3 = scalars
    zero = one - one
    s_r = s_r2 = s_absr = t1 = t2 = t3 = zero
    for x in range(qr.size):
        r = log(qr[x], one, ln2, coefficients)
        a = abs(r)
        s_r += r
        s_r2 += r * r
        s_absr += a
        t1 += one if a < c1 else zero
        t2 += one if a < c2 else zero
        t3 += one if a < c3 else zero
    return s_r, s_r2, s_absr, t1, t2, t3


@_jit
def blocks(p, g, m, jobs, x0, x1, lo, hi, scalars, coefficients, qr, out):  # pragma: no cover - compiled
    """Add the raw sums of each block of rows (``jobs``: image, first row, end row) to ``out[block]``.

    Each row goes through two loops (fewer live accumulators and constants than one: no register
    spills), q passed in the row buffer ``qr``, which stays in L1. The loops take 1-D row slices,
    which LLVM vectorises (2-D indexing inside them is 8x slower).
    """
    one = scalars[0]
    width = x1 - x0
    for b in range(jobs.shape[0]):
        i, y0, y1 = jobs[b, 0], jobs[b, 1], jobs[b, 2]
        for y in range(y0, y1):
            if m is None:
                head = linear(p[i, y, x0:x1], g[i, y, x0:x1], None, lo, hi, one, qr)
            else:
                head = linear(p[i, y, x0:x1], g[i, y, x0:x1], m[i, y, x0:x1], lo, hi, one, qr)
            tail = logarithmic(qr, scalars, coefficients)
            outside = width - head[0]
            for j in range(4):
                out[b, j] += head[j]
            for j in range(3):
                out[b, 4 + j] += tail[j]
                out[b, 7 + j] += tail[3 + j] - outside
