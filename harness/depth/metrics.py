"""Monocular depth metrics: AbsRel, SqRel, RMSE, RMSE-log, log10, SILog and the delta accuracies.

Protocol (ZoeDepth ``compute_metrics`` / ``compute_errors``, BTS ``eval_with_pngs.py``, Marigold
``script/depth/eval.py``, checked against their source):

1. The prediction is resized to the ground truth's size when they differ (``F.interpolate``,
   bilinear with ``align_corners=True`` by default, as ZoeDepth and Depth Anything V2 do).
2. Evaluated pixels: ground truth strictly inside (min_depth, max_depth) and finite, inside the
   crop (:mod:`harness.depth.crops`), and inside the optional ``mask`` given to ``update``.
3. Optional per-image alignment on those pixels (:mod:`harness.depth.align`).
4. The prediction is clipped to [min_depth, max_depth]; NaN becomes min_depth, +inf max_depth,
   -inf min_depth (ZoeDepth's order of ``pred[pred < min] = min; pred[pred > max] = max;
   pred[isinf] = max; pred[isnan] = min``). A min_depth of 0 clips at 1e-6 instead (Marigold's floor).
5. Per image, over its evaluated pixels, with q = pred / gt and r = ln q:
   abs_rel = mean |pred - gt| / gt; sq_rel = mean (pred - gt)^2 / gt; rmse = sqrt mean (pred - gt)^2;
   rmse_log = sqrt mean r^2; log10 = mean |log10 pred - log10 gt| = mean |r| / ln 10;
   d_k = share of pixels with max(q, 1/q) < 1.25^k, i.e. |r| < k ln 1.25;
   silog = 100 sqrt(mean r^2 - (mean r)^2) (BTS, ZoeDepth, Marigold: the variance form, x100);
   silog_half = sqrt(mean r^2 - 0.5 (mean r)^2) (Depth Anything V2 ``metric_depth/util/metric.py``:
   Eigen's lambda = 0.5 form, not scaled).
6. ``reduction="image"``: each metric is averaged over images (the references' convention);
   ``"pixel"``: the sums are pooled over all evaluated pixels of all images first.
   Images with fewer than ``min_valid_pixels`` evaluated pixels are left out and counted
   (Depth Anything V2 skips images with fewer than 10; ZoeDepth and BTS have no such rule and
   would average a NaN).

State. Per image the kernel produces ten sums (pixel count, sum |e|, sum (p-g)^2/g, sum (p-g)^2,
sum r, sum r^2, sum |r|, three threshold counts) from which both reductions follow. The state is a
float64 vector of :data:`STATE_FIELDS`: sums over images of the per-image metrics, the pooled
sums, and counters. It is a plain sum, so ranks combine by ``all_reduce`` of ``state_tensor()``
and ``load_state_tensor()``, or ``merge()``, as :class:`harness.metrics.SegmentationMetrics`.

Speed. On CUDA (any non-CPU device) the batch is processed by whole-tensor torch kernels on the
prediction's device and the state stays there. On the CPU the ``engine`` chooses: ``fused``
(the default where numba is installed: :mod:`harness.depth.fused`, one vectorised sweep per crop
row computing all ten sums), ``numpy`` (:class:`_NumpyKernel`: each image's crop in blocks of
rows, invalid pixels zeroed by one multiplication, a block with at most :data:`SPARSE_SHARE` of
its pixels evaluated, e.g. KITTI's semi-dense ground truth, compacted first, one logarithm per
pixel, sums as BLAS dot products) or ``torch`` (the device kernels on the CPU).
docs/PERFORMANCE.md has the figures.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from harness import jit
from harness.depth import fused
from harness.depth.align import align, check_alignment
from harness.depth.crops import check_crop, crop_box

METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "silog_half", "d1", "d2", "d3")
# Per-image raw sums produced by the kernels, in this order.
RAW = ("n", "abs_e", "sq_rel", "sq_err", "r", "r2", "abs_r", "t1", "t2", "t3")
STATE_FIELDS = (("images",) + tuple(f"image_{m}" for m in METRICS) + tuple(f"pooled_{s}" for s in RAW)
                + ("images_seen", "images_empty", "alignment_degenerate"))
REDUCTIONS = ("image", "pixel")
ENGINES = ("auto", "fused", "numpy", "torch")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "nearest-exact", "area")
LN_125 = math.log(1.25)
# CPU updates folded into the state at once (their per-image metrics computed in one numpy call).
_PENDING = 64
# Pixels per CPU block: a few float32 buffers of this size stay in a core's L2 cache.
_BLOCK = 1 << 16
# A block with at most this share of evaluated pixels is compacted first (fewer passes over fewer pixels).
SPARSE_SHARE = 0.5

_I_IMAGES = 0
_I_IMAGE = slice(1, 1 + len(METRICS))
_I_POOLED = slice(1 + len(METRICS), 1 + len(METRICS) + len(RAW))
_I_SEEN, _I_EMPTY, _I_DEGENERATE = len(STATE_FIELDS) - 3, len(STATE_FIELDS) - 2, len(STATE_FIELDS) - 1


def metrics_from_sums(sums: np.ndarray) -> np.ndarray:
    """Metrics (..., len(METRICS)) from raw sums (..., len(RAW)), float64; NaN where n == 0."""
    s = np.asarray(sums, dtype=np.float64)
    n = s[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.where(n > 0, 1.0 / n, np.nan)
        mean_r, mean_r2 = s[..., 4] * inv, s[..., 5] * inv
        out = np.stack([
            s[..., 1] * inv,
            s[..., 2] * inv,
            np.sqrt(s[..., 3] * inv),
            np.sqrt(mean_r2),
            s[..., 6] * inv / math.log(10.0),
            100.0 * np.sqrt(np.maximum(mean_r2 - mean_r**2, 0.0)),
            np.sqrt(np.maximum(mean_r2 - 0.5 * mean_r**2, 0.0)),
            s[..., 7] * inv, s[..., 8] * inv, s[..., 9] * inv,
        ], axis=-1)
    return out


def _metrics_torch(s: torch.Tensor) -> torch.Tensor:
    """:func:`metrics_from_sums` on a float64 tensor, on its device (no host synchronisation)."""
    n = s[:, 0]
    inv = torch.where(n > 0, 1.0 / n.clamp(min=1), torch.nan)
    mean_r, mean_r2 = s[:, 4] * inv, s[:, 5] * inv
    return torch.stack([
        s[:, 1] * inv, s[:, 2] * inv, torch.sqrt(s[:, 3] * inv), torch.sqrt(mean_r2),
        s[:, 6] * inv / math.log(10.0),
        100.0 * torch.sqrt(torch.clamp(mean_r2 - mean_r**2, min=0.0)),
        torch.sqrt(torch.clamp(mean_r2 - 0.5 * mean_r**2, min=0.0)),
        s[:, 7] * inv, s[:, 8] * inv, s[:, 9] * inv], dim=-1)


def block_rows(width: int) -> int:
    """Rows of a crop ``width`` pixels wide in one CPU block."""
    return max(1, _BLOCK // width)


_LOCAL = threading.local()


def _thread_kernel() -> _NumpyKernel:
    """This thread's kernel (each thread has its own buffers)."""
    if not hasattr(_LOCAL, "kernel"):
        _LOCAL.kernel = _NumpyKernel()
    return _LOCAL.kernel


class _NumpyKernel:
    """CPU kernel: raw sums of one image's crop, in blocks of rows, numpy in the calling thread."""

    def __init__(self):
        self.dtype = None

    def _buffers(self, dtype) -> None:
        if self.dtype is None or self.dtype != dtype:  # (np.dtype(None) is float64: test None first)
            self.dtype = dtype
            self.f = [np.empty(_BLOCK, dtype=dtype) for _ in range(5)]
            self.b = [np.empty(_BLOCK, dtype=bool) for _ in range(2)]
            self.ones = np.ones(_BLOCK, dtype=dtype)

    def image(self, p: np.ndarray, g: np.ndarray, m: np.ndarray | None, lo: float, hi: float) -> np.ndarray:
        """Raw sums (float64, len(RAW)) of a (h, w) crop of prediction ``p`` and ground truth ``g``."""
        rows = block_rows(g.shape[1])
        total = np.zeros(len(RAW), dtype=np.float64)
        for a in range(0, g.shape[0], rows):
            total += self.block_sums(p[a:a + rows], g[a:a + rows], None if m is None else m[a:a + rows], lo, hi)
        return total

    def block_sums(self, p: np.ndarray, g: np.ndarray, m: np.ndarray | None, lo: float, hi: float) -> np.ndarray:
        """Raw sums of a block of at most :data:`_BLOCK` pixels (whole rows of a crop)."""
        self._buffers(p.dtype)
        sums = self._block(p, g, m, lo, hi)
        if not np.all(np.isfinite(sums)):  # NaN in the prediction or the ground truth: the slow, exact path
            # non-finite ground truth is invalid (0); a prediction NaN -> lo, +-inf -> the bounds (ZoeDepth)
            p = np.nan_to_num(p, nan=lo, posinf=min(hi, np.finfo(p.dtype).max), neginf=lo)
            sums = self._block(p, np.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0), m, lo, hi)
        return sums

    def _block(self, p, g, m, lo: float, hi: float) -> np.ndarray:
        k = p.size
        shape = p.shape
        pc, gc, d, e, r = (buf[:k] for buf in self.f)
        v, t = (buf[:k] for buf in self.b)
        dt = self.dtype.type
        np.clip(p, dt(lo), dt(hi), out=pc.reshape(shape))  # +-inf -> the bounds; NaN stays (checked after)
        np.clip(g, dt(lo), dt(hi), out=gc.reshape(shape))  # keeps every later value finite
        np.greater(gc, dt(lo), out=v)
        np.less(gc, dt(hi), out=t)
        np.logical_and(v, t, out=v)
        if m is not None:
            np.logical_and(v, m.reshape(-1), out=v)
        n = int(np.count_nonzero(v))
        if n <= SPARSE_SHARE * k:  # sparse ground truth (KITTI: ~20% valid): compact, then n-long passes
            idx = np.flatnonzero(v)
            pn = np.take(pc, idx, out=self.f[2][:n])
            gn = np.take(gc, idx, out=self.f[3][:n])
            dn, en, rn = self.f[0][:n], self.f[1][:n], self.f[4][:n]
            np.subtract(pn, gn, out=dn)
            np.divide(dn, gn, out=en)
            np.log1p(en, out=rn)
            return self._sums(dn, en, rn, n, 0, t[:n], pn)
        np.subtract(pc, gc, out=d)
        np.multiply(d, v, out=d)  # 0 outside the evaluated pixels, so e = r = 0 there
        np.divide(d, gc, out=e)
        np.log1p(e, out=r)  # r = ln(p / g)
        return self._sums(d, e, r, n, k - n, t, pc)

    def _sums(self, d, e, r, n: int, outside: int, t, scratch) -> np.ndarray:
        """The raw sums from the differences ``d``, relative errors ``e`` and log ratios ``r`` (zero at the
        ``outside`` pixels that are not evaluated); ``t`` and ``scratch`` are free buffers of their length."""
        dt = self.dtype.type
        ones = self.ones[:d.size]
        out = np.empty(len(RAW), dtype=np.float64)
        out[0] = n
        out[2] = np.dot(d, e)
        out[3] = np.dot(d, d)
        out[4] = np.dot(r, ones)
        out[5] = np.dot(r, r)
        out[1] = np.dot(np.abs(e, out=scratch), ones)
        ar = np.abs(r, out=r)
        out[6] = np.dot(ar, ones)
        for j, c in enumerate((LN_125, 2 * LN_125, 3 * LN_125)):  # outside pixels have r = 0: below every one
            out[7 + j] = np.count_nonzero(np.less(ar, dt(c), out=t)) - outside
        return out


def _torch_sums(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor | None, lo: float, hi: float) -> torch.Tensor:
    """Raw sums (N, len(RAW)) float64 of (N, h, w) crops, whole-tensor torch kernels on their device."""
    pc = torch.nan_to_num(p, nan=lo, posinf=hi, neginf=lo).clamp_(lo, hi)
    gc = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0).clamp(lo, hi)  # non-finite ground truth: invalid
    v = (gc > lo) & (gc < hi)
    if m is not None:
        v &= m
    d = (pc - gc) * v
    e = d / gc
    r = torch.log1p(e)
    ar = r.abs()
    dims = (-2, -1)
    f64 = torch.float64
    cols = [v.sum(dims, dtype=f64), e.abs().sum(dims, dtype=f64), (d * e).sum(dims, dtype=f64),
            (d * d).sum(dims, dtype=f64), r.sum(dims, dtype=f64), (r * r).sum(dims, dtype=f64),
            ar.sum(dims, dtype=f64)]
    cols += [((ar < c) & v).sum(dims, dtype=f64) for c in (LN_125, 2 * LN_125, 3 * LN_125)]
    return torch.stack(cols, dim=-1)


def _as_depth_tensor(x, name: str, device: torch.device | None) -> torch.Tensor:
    """``x`` (tensor or numpy array, metres) as a floating tensor of at least 2 dimensions."""
    if not isinstance(x, torch.Tensor):
        a = np.asarray(x)
        if a.dtype.kind != "f":
            raise ValueError(f"{name}: expected depth in metres as a floating-point array, got dtype {a.dtype} "
                             "(divide stored depth by its scale first)")
        if not a.dtype.isnative or not a.flags.writeable or any(s < 0 for s in a.strides):
            a = np.array(a, dtype=a.dtype.newbyteorder("="))
        x = torch.from_numpy(a)
    if not x.dtype.is_floating_point:
        raise ValueError(f"{name}: expected depth in metres as a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"{name}: expected a depth map (..., H, W), got shape {tuple(x.shape)}")
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    if device is not None and x.device != device:
        x = x.to(device)
    return x


class DepthMetrics:
    """Accumulates depth metrics over ``update`` calls; ``compute`` gives them (see the module docstring).

    Args:
        min_depth, max_depth: evaluated ground-truth range in metres (exclusive bounds) and the
            range predictions are clipped to (NYU 1e-3..10, KITTI 1e-3..80; ETH3D in Marigold: 1e-5..inf).
        crop: None, a name of :data:`harness.depth.crops.CROPS` or [top, bottom, left, right].
        alignment: ``none``, ``median``, ``lstsq`` or ``lstsq_disparity`` (per image).
        reduction: ``image`` (per-image metrics averaged over images) or ``pixel`` (pooled).
        interpolation, align_corners: how a prediction of another size is resized to the ground truth's.
        min_valid_pixels: images with fewer evaluated pixels are left out and counted.
        device: where the state lives; default: the device of the first prediction.
        threads: CPU threads for the CPU kernel (1: the calling thread only). Python threads
            wait without spinning, so a busy core slows them but never stalls them.
        engine: the kernel of CPU updates: ``fused`` (numba, :mod:`harness.depth.fused`), ``numpy``
            (:class:`_NumpyKernel`), ``torch`` (the whole-tensor kernels other devices use) or
            ``auto`` (``fused`` where numba is installed, else ``numpy``). Updates on another device
            always use ``torch``. All give the same metrics to float32 rounding.
    """

    def __init__(self, min_depth: float = 1e-3, max_depth: float = 10.0, crop=None, alignment: str = "none",
                 reduction: str = "image", interpolation: str = "bilinear", align_corners: bool | None = True,
                 min_valid_pixels: int = 1, device: str | torch.device | None = None, threads: int = 1,
                 engine: str = "auto"):
        if not (math.isfinite(min_depth) and not math.isnan(max_depth) and 0 <= min_depth < max_depth):
            raise ValueError(f"depth range ({min_depth!r}, {max_depth!r}): expected 0 <= min_depth < max_depth "
                             "(metres; min finite, max may be inf)")
        check_crop(crop)
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; expected one of {', '.join(REDUCTIONS)}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {interpolation!r}; expected one of {', '.join(INTERPOLATIONS)}")
        if int(min_valid_pixels) < 1:
            raise ValueError(f"min_valid_pixels must be at least 1, got {min_valid_pixels!r}")
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.crop = list(crop) if crop is not None and not isinstance(crop, str) else crop
        self.alignment = check_alignment(alignment)
        self.reduction = reduction
        self.interpolation = interpolation
        self.align_corners = align_corners if interpolation in ("bilinear", "bicubic") else None
        self.min_valid_pixels = int(min_valid_pixels)
        self.device = torch.device(device) if device is not None else None
        if int(threads) < 1:
            raise ValueError(f"threads must be at least 1, got {threads!r}")
        self.threads = int(threads)
        self._pool: ThreadPoolExecutor | None = None
        if engine not in ENGINES:
            raise ValueError(f"unknown depth metric engine {engine!r}; expected one of {', '.join(ENGINES)}")
        if engine == "fused" and not jit.available():
            raise ValueError("depth metric engine 'fused' needs numba: pip install 'segbench[depth]'")
        self.engine = engine
        self.reset()

    def settings(self) -> dict:
        """The protocol as data (for the cell result): range, crop, alignment, reduction, resize, SILog forms."""
        return {"min_depth": self.min_depth, "max_depth": self.max_depth, "crop": self.crop,
                "alignment": self.alignment, "reduction": self.reduction, "interpolation": self.interpolation,
                "align_corners": self.align_corners, "min_valid_pixels": self.min_valid_pixels,
                "silog": "100*sqrt(mean(d^2)-mean(d)^2), d=ln(pred)-ln(gt)",
                "silog_half": "sqrt(mean(d^2)-0.5*mean(d)^2)"}

    def reset(self) -> None:
        """Forget every image."""
        self._state: torch.Tensor | None = None
        # CPU updates wait here as raw per-image sums and are folded into the state in batches
        self._pending: list[np.ndarray] = []
        self._pending_counts = np.zeros(2, dtype=np.int64)  # images, degenerate alignments

    # -- update ----------------------------------------------------------------------------
    def _inputs(self, pred, target, mask):
        pred = _as_depth_tensor(pred, "pred", self.device)
        target = _as_depth_tensor(target, "target", pred.device)
        H, W = target.shape[-2:]
        n = math.prod(target.shape[:-2])
        if math.prod(pred.shape[:-2]) != n:
            raise ValueError(f"pred shape {tuple(pred.shape)} and target shape {tuple(target.shape)} hold "
                             "different numbers of images; expected (..., h, w) and (..., H, W) with the same leading size")
        pred, target = pred.reshape(n, *pred.shape[-2:]), target.reshape(n, H, W)
        if pred.dtype != target.dtype:
            dtype = torch.promote_types(pred.dtype, target.dtype)
            pred, target = pred.to(dtype), target.to(dtype)
        if tuple(pred.shape[-2:]) != (H, W):
            pred = F.interpolate(pred[:, None], size=(H, W), mode=self.interpolation,
                                 align_corners=self.align_corners)[:, 0]
        if mask is not None:
            mask = mask if isinstance(mask, torch.Tensor) else torch.from_numpy(np.asarray(mask))
            if mask.dtype != torch.bool or math.prod(mask.shape) != n * H * W or tuple(mask.shape[-2:]) != (H, W):
                raise ValueError(f"mask of shape {tuple(mask.shape)} and dtype {mask.dtype}: expected a bool mask "
                                 f"of the target's shape {tuple(target.shape)}")
            mask = mask.reshape(n, H, W).to(pred.device)
        return pred, target, mask

    def update(self, pred, target, mask=None) -> None:
        """Add predictions and their ground truth (depth maps in metres).

        ``pred``: (..., h, w) tensor or numpy array; ``target``: (..., H, W) with the same number of
        images; invalid ground truth is 0, NaN, or outside (min_depth, max_depth). ``mask``: optional
        bool (..., H, W), False for pixels not to evaluate. Computed on pred's device (or ``device``).
        """
        pred, target, mask = self._inputs(pred, target, mask)
        n, H, W = target.shape
        top, bottom, left, right = crop_box(self.crop, H, W)
        lo, hi = (self.min_depth if self.min_depth > 0 else 1e-6), self.max_depth
        p, g = pred[:, top:bottom, left:right], target[:, top:bottom, left:right]
        m = None if mask is None else mask[:, top:bottom, left:right]
        degenerate = 0
        if self.alignment != "none":
            fit = (g > self.min_depth) & (g < self.max_depth)
            if m is not None:
                fit &= m
            p, degenerate = align(p, g, fit, self.alignment, self.max_depth)
        engine = self.engine_for(p.device)
        if engine == "torch":
            raw = _torch_sums(p, g, m, lo, hi)
        elif self.alignment != "none":  # the aligned prediction covers the crop only
            box = (0, bottom - top, 0, right - left)
            raw = self._cpu_sums(p.numpy(), g.numpy(), None if m is None else m.numpy(), box, lo, hi, engine)
        else:
            box = (top, bottom, left, right)
            raw = self._cpu_sums(pred.numpy(), target.numpy(), None if mask is None else mask.numpy(), box, lo, hi,
                                 engine)
        self._accumulate(raw, n, degenerate, p.device)

    def engine_for(self, device: torch.device) -> str:
        """The kernel that computes updates on ``device``: ``torch`` off the CPU, else the chosen CPU engine."""
        if device.type != "cpu" or self.engine == "torch":
            return "torch"
        if self.engine == "auto":
            return "fused" if jit.available() else "numpy"
        return self.engine

    def _flush(self) -> None:
        """Fold the raw sums of pending CPU updates into the state (per-image metrics computed in one go)."""
        if not self._pending:
            return
        raw_np = np.concatenate(self._pending)
        n, degenerate = (int(v) for v in self._pending_counts)
        self._pending, self._pending_counts = [], np.zeros(2, dtype=np.int64)
        kept = raw_np[:, 0] >= self.min_valid_pixels
        s = self._state.numpy()  # a view: the additions land in the state tensor
        s[_I_IMAGES] += kept.sum()
        s[_I_IMAGE] += metrics_from_sums(raw_np[kept]).sum(axis=0)
        s[_I_POOLED] += raw_np[kept].sum(axis=0)
        s[_I_SEEN] += n
        s[_I_EMPTY] += n - kept.sum()
        s[_I_DEGENERATE] += degenerate

    def _cpu_sums(self, p: np.ndarray, g: np.ndarray, m: np.ndarray | None, box: tuple[int, int, int, int],
                  lo: float, hi: float, engine: str) -> np.ndarray:
        """(N, len(RAW)) raw sums of the ``box`` (top, bottom, left, right) of (N, H, W) maps: blocks of
        rows, on ``threads`` CPU threads, by the ``fused`` or ``numpy`` kernel.

        Blocks are summed per image in a fixed order, so the result does not depend on the threads.
        """
        top, bottom, left, right = box
        if engine == "fused" and not fused.supports(lo, hi, p.dtype):
            engine = "numpy"  # e.g. max_depth=inf: p / g may leave the normal floats the fused logarithm needs
        if engine == "fused":  # the compiled loops index whole rows: C-contiguous maps
            p, g = np.ascontiguousarray(p), np.ascontiguousarray(g)
            m = None if m is None else np.ascontiguousarray(m)
        n = g.shape[0]
        rows = block_rows(right - left)
        # (image, first row, end row) per block; the same blocks for any number of threads
        jobs = [(i, a, min(a + rows, bottom)) for i in range(n) for a in range(top, bottom, rows)]
        parts = [jobs]
        if self.threads > 1 and n > 1:  # one image's blocks gain less than handing them to threads costs
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="depth-metrics")
            size = -(-len(jobs) // self.threads) if engine == "fused" else 1
            parts = [jobs[k:k + size] for k in range(0, len(jobs), size)]

        def run(todo: list[tuple[int, int, int]]) -> np.ndarray:
            if engine == "fused":  # one compiled call for all the blocks (it releases the GIL)
                return fused.block_sums(p, g, m, np.array(todo, dtype=np.int64), (left, right), lo, hi)
            # non-finite values warn in the fast pass; the kernel then redoes the block exactly
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                return np.stack([_thread_kernel().block_sums(p[i, a:b, left:right], g[i, a:b, left:right],
                                                             None if m is None else m[i, a:b, left:right], lo, hi)
                                 for i, a, b in todo])

        results = np.concatenate(list(self._pool.map(run, parts))) if len(parts) > 1 else run(jobs)
        raw = np.zeros((n, len(RAW)), dtype=np.float64)
        for (i, _, _), sums in zip(jobs, results, strict=True):  # per image, in block order: thread-independent
            raw[i] += sums
        return raw

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_pool"] = None  # threads do not travel
        return state

    def _accumulate(self, raw: torch.Tensor | np.ndarray, n: int, degenerate: int, device: torch.device) -> None:
        """Add an (N, len(RAW)) batch of raw sums (numpy from the CPU kernel, else a tensor) to the state."""
        state = self._ensure_state(device)
        if state.device.type == "cpu" and isinstance(raw, np.ndarray):
            self._pending.append(raw)
            self._pending_counts += (n, degenerate)
            if len(self._pending) >= _PENDING:
                self._flush()
            return
        raw = torch.as_tensor(raw).to(state.device)
        kept = raw[:, 0] >= self.min_valid_pixels
        add = torch.zeros(len(STATE_FIELDS), dtype=torch.float64, device=state.device)
        add[_I_IMAGES] = kept.sum()
        add[_I_IMAGE] = torch.where(kept[:, None], _metrics_torch(raw), 0.0).sum(0)
        add[_I_POOLED] = torch.where(kept[:, None], raw, 0.0).sum(0)
        add[_I_SEEN] = n
        add[_I_EMPTY] = n - kept.sum()
        add[_I_DEGENERATE] = degenerate
        with torch.inference_mode(False):
            self._state = state + add

    # -- state -----------------------------------------------------------------------------
    def state_tensor(self, device: torch.device | None = None) -> torch.Tensor:
        """The float64 state vector (:data:`STATE_FIELDS`), on the accumulation device; not a copy.

        The accumulation device is ``device`` given to the constructor, else that of the first
        prediction (``device`` here: used only when no state exists yet), else the CPU.
        """
        self._ensure_state(device)
        self._flush()
        return self._state

    def _ensure_state(self, device: torch.device | None) -> torch.Tensor:
        if self._state is None:
            with torch.inference_mode(False):
                self._state = torch.zeros(len(STATE_FIELDS), dtype=torch.float64,
                                          device=self.device or device or "cpu")
        return self._state

    def load_state_tensor(self, t: torch.Tensor) -> None:
        """Replace the state by ``t`` (e.g. the all-reduced sum of every rank's state)."""
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != (len(STATE_FIELDS),) or not t.dtype.is_floating_point:
            shape = tuple(t.shape) if hasattr(t, "shape") else type(t).__name__
            raise ValueError(f"state tensor of shape {shape}: expected a float vector of {len(STATE_FIELDS)} "
                             "sums (DepthMetrics STATE_FIELDS)")
        self._pending, self._pending_counts = [], np.zeros(2, dtype=np.int64)
        with torch.inference_mode(False):
            self._state = t.to(torch.float64, copy=True)

    def _key(self) -> tuple:
        return (self.min_depth, self.max_depth, self.crop, self.alignment, self.interpolation, self.align_corners,
                self.min_valid_pixels)

    def merge(self, other: DepthMetrics) -> DepthMetrics:
        """Add ``other``'s state (same protocol settings) to this instance; returns self."""
        if not isinstance(other, DepthMetrics):
            raise TypeError(f"cannot merge {type(other).__name__} into DepthMetrics")
        if other._key() != self._key():
            raise ValueError(f"cannot merge depth metrics with settings {other.settings()} into {self.settings()}")
        mine = self.state_tensor()
        with torch.inference_mode(False):
            self._state = mine + other.state_tensor().to(mine.device)
        return self

    def __iadd__(self, other: DepthMetrics) -> DepthMetrics:
        return self.merge(other)

    # -- compute ---------------------------------------------------------------------------
    def compute(self, reduction: str | None = None) -> dict:
        """Metrics as python floats (NaN with no evaluated image) and the counts.

        Keys: :data:`METRICS`; ``num_images`` (evaluated), ``num_empty`` (left out: too few valid
        pixels), ``num_pixels`` (evaluated pixels), ``alignment_degenerate``, ``reduction``.
        """
        reduction = reduction or self.reduction
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; expected one of {', '.join(REDUCTIONS)}")
        s = self.state_tensor().detach().cpu().numpy()
        images = s[_I_IMAGES]
        if reduction == "image":
            values = s[_I_IMAGE] / images if images > 0 else np.full(len(METRICS), np.nan)
        else:
            values = metrics_from_sums(s[_I_POOLED])
        out = {k: float(v) for k, v in zip(METRICS, values, strict=True)}
        out.update(num_images=int(images), num_empty=int(s[_I_EMPTY]), num_pixels=int(s[_I_POOLED][0]),
                   alignment_degenerate=int(s[_I_DEGENERATE]), reduction=reduction)
        return out
