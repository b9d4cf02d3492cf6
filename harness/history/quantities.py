"""The quantities a cell result holds, read straight from its JSON, with their unit and direction.

One small function, :func:`cell_quantities`, reads them; the history and the A/B decide with
:data:`QUANTITIES` whether a larger value is better or worse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Quantity:
    """A quantity's name, unit and whether a larger value is better (accuracy, throughput) or worse."""

    name: str
    unit: str
    higher_is_better: bool
    description: str


QUANTITIES: dict[str, Quantity] = {q.name: q for q in (
    Quantity("mIoU", "fraction", True, "mean intersection over union (metrics.mIoU)"),
    Quantity("aAcc", "fraction", True, "pixel accuracy (metrics.aAcc)"),
    Quantity("latency_p50", "ms", False, "median model forward latency per batch (latency_ms.p50)"),
    Quantity("latency_mean", "ms", False, "mean model forward latency per batch (latency_ms.mean)"),
    Quantity("throughput", "images/s", True, "batch size / mean forward latency (throughput_ips)"),
    Quantity("gpu_peak", "MiB", False, "peak GPU memory allocated (memory_mib.gpu_peak_allocated)"),
    Quantity("host_rss", "MiB", False, "peak resident memory of the cell's process (memory_mib.host_peak_rss)"),
)}


def _finite(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _section(cell: dict, key: str) -> dict:
    v = cell.get(key)
    return v if isinstance(v, dict) else {}


def cell_quantities(cell: dict) -> dict[str, float]:
    """The quantities of one cell result (only those it has as finite numbers; {} unless status ok).

    Keys are those of :data:`QUANTITIES`. Accuracy comes from ``metrics`` (null for random
    weights, so absent then), latency from ``latency_ms``, memory from ``memory_mib``.
    """
    if cell.get("status") != "ok":
        return {}
    metrics, lat, mem = _section(cell, "metrics"), _section(cell, "latency_ms"), _section(cell, "memory_mib")
    raw = {"mIoU": metrics.get("mIoU"), "aAcc": metrics.get("aAcc"), "latency_p50": lat.get("p50"),
           "latency_mean": lat.get("mean"), "throughput": cell.get("throughput_ips"),
           "gpu_peak": mem.get("gpu_peak_allocated"), "host_rss": mem.get("host_peak_rss")}
    return {k: f for k, v in raw.items() if (f := _finite(v)) is not None}


def worse_factor(quantity: str, before: float, after: float) -> float:
    """How many times worse ``after`` is than ``before`` (> 1 worse, < 1 better), for a known quantity."""
    q = QUANTITIES[quantity]
    return before / after if q.higher_is_better else after / before
