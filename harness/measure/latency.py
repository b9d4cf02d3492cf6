"""Latency timing: warm-up, then timed iterations, summarised in milliseconds.

On CUDA each iteration is timed with a pair of CUDA events recorded on the current stream
(synchronised once the loop ends); elsewhere with ``time.perf_counter_ns`` around a call
that is made synchronous (the caller's ``sync``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch


def summarize(samples_ms: Sequence[float]) -> dict:
    """Summary statistics of latency samples in ms: p50/p90/p99, mean, std, cv, min, max, n, samples."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        return {"p50": None, "p90": None, "p99": None, "mean": None, "std": None, "cv": None,
                "min": None, "max": None, "n": 0, "samples": []}
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    p50, p90, p99 = (float(x) for x in np.percentile(a, [50, 90, 99]))
    return {"p50": p50, "p90": p90, "p99": p99, "mean": mean, "std": std,
            "cv": std / mean if mean > 0 else None, "min": float(a.min()), "max": float(a.max()),
            "n": int(a.size), "samples": [float(x) for x in a]}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_iterations(fn: Callable[[Any], Any], inputs: Sequence[Any], warmup: int, iters: int,
                    device: torch.device | str = "cpu", min_time_s: float = 0.0,
                    clock: Callable[[], int] = time.perf_counter_ns,
                    progress: Callable[[int], None] | None = None, warmup_cv: float | None = None,
                    warmup_window: int = 5, max_warmup: int = 200, info: dict | None = None) -> list[float]:
    """Call ``fn(inputs[i % len(inputs)])`` ``warmup`` times untimed, then time it.

    With ``warmup_cv`` set, warm-up goes on after the first ``warmup`` calls until the
    coefficient of variation of the last ``warmup_window`` warm-up latencies is below
    ``warmup_cv`` (or ``max_warmup`` calls were made). Timed iterations continue until at
    least ``iters`` were done and ``min_time_s`` seconds of timed work elapsed. Inputs rotate
    so no single tensor is reused every time. Returns the per-iteration latencies in
    milliseconds; ``info`` (if given) receives ``warmup_iters`` and ``warmup_stable``.
    ``clock`` (ns) is injectable for tests.
    """
    device = torch.device(device)
    if not inputs:
        raise ValueError("time_iterations needs at least one input")
    done, stable = _warm_up(fn, inputs, warmup, device, clock, warmup_cv, warmup_window, max_warmup)
    if info is not None:
        info.update(warmup_iters=done, warmup_stable=bool(stable))
    timed = _timed_cuda if device.type == "cuda" else _timed_host
    return timed(fn, inputs, done, iters, min_time_s, device, clock, progress)  # rotation goes on from the warm-up


def _warm_up(fn, inputs, warmup: int, device: torch.device, clock, warmup_cv, window: int,
             max_warmup: int) -> tuple[int, bool]:
    """Untimed calls: ``warmup`` of them, then (with ``warmup_cv``) until the last ``window`` latencies
    have a CV below it or ``max_warmup`` calls were made. Returns (calls made, stable)."""
    done = 0
    recent: list[float] = []
    stable = warmup_cv is None
    while done < warmup or (not stable and done < max(max_warmup, warmup)):
        t0 = clock()
        fn(inputs[done % len(inputs)])
        _sync(device)
        recent = (recent + [(clock() - t0) / 1e6])[-window:]
        done += 1
        if warmup_cv is not None and len(recent) == window:
            a = np.asarray(recent)
            stable = a.mean() > 0 and a.std(ddof=1) / a.mean() < warmup_cv
    return done, stable


def _timed_cuda(fn, inputs, offset: int, iters: int, min_time_s: float, device: torch.device, clock,
                progress) -> list[float]:
    """CUDA events around each call (ms), read after one synchronisation per 64 calls."""
    events = []
    start_wall = clock()
    i = 0
    while i < iters or (clock() - start_wall) / 1e9 < min_time_s:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(inputs[(offset + i) % len(inputs)])
        end.record()
        events.append((start, end))
        i += 1
        if progress:
            progress(1)
        if i % 64 == 0:  # bound the number of outstanding events
            torch.cuda.synchronize(device)
    torch.cuda.synchronize(device)
    return [s.elapsed_time(e) for s, e in events]


def _timed_host(fn, inputs, offset: int, iters: int, min_time_s: float, device: torch.device, clock,
                progress) -> list[float]:
    """The host clock around each call, synchronised on the device (ms)."""
    samples: list[float] = []
    elapsed_ns = 0
    i = 0
    while i < iters or elapsed_ns / 1e9 < min_time_s:
        t0 = clock()
        fn(inputs[(offset + i) % len(inputs)])
        _sync(device)
        dt = clock() - t0
        elapsed_ns += dt
        samples.append(dt / 1e6)
        i += 1
        if progress:
            progress(1)
    return samples
