"""Display rows built from results: one per cell, with the reason a value is missing."""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.results import Run

FAMILY_ORDER = {"dpt": 0, "transformer": 1, "cnn": 2}
FAMILY_LABEL = {"dpt": "DPT", "transformer": "Transformer", "cnn": "CNN", None: "unknown"}


@dataclass(frozen=True)
class Column:
    key: str
    header: str  # with unit
    better: str | None  # "max", "min" or None (not ranked)
    kind: str  # "text", "pct", "ms", "num", "int", "mib", "m"


COLUMNS = [
    Column("model", "model", None, "text"),
    Column("weights", "weights", None, "text"),
    Column("dataset", "dataset", None, "text"),
    Column("device", "device", None, "text"),
    Column("precision", "precision", None, "text"),
    Column("batch_size", "batch", None, "int"),
    Column("runtime", "runtime", None, "text"),
    Column("protocol", "protocol", None, "text"),
    Column("mIoU", "mIoU (%)", "max", "pct"),
    Column("aAcc", "aAcc (%)", "max", "pct"),
    Column("mAcc", "mAcc (%)", "max", "pct"),
    Column("published_mIoU", "published mIoU (%)", None, "pct"),
    Column("delta_mIoU", "Δ mIoU (pts)", None, "num"),
    Column("latency_p50", "latency p50 (ms)", "min", "ms"),
    Column("latency_p90", "latency p90 (ms)", "min", "ms"),
    Column("throughput", "throughput (img/s)", "max", "num"),
    Column("gpu_peak", "GPU peak alloc. (MiB)", "min", "mib"),
    Column("host_rss", "host peak RSS (MiB)", "min", "mib"),
    Column("params", "params (M)", "min", "m"),
    Column("gflops", "GFLOPs", "min", "num"),
]


def _num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def cell_row(run: Run, cell: dict) -> dict:
    """Flatten a cell result into display values plus ``why`` (the reason per missing value)."""
    status = cell.get("status")
    metrics = cell.get("metrics") or {}
    lat = cell.get("latency_ms") or {}
    mem = cell.get("memory_mib") or {}
    weights = cell.get("weights") or {}
    protocol = cell.get("protocol") or {}
    variant = cell.get("variant") or {}
    precision = cell.get("precision") or ""
    if cell.get("amp") == "cast":
        precision += " (cast)"
    if variant:
        precision += " " + ",".join(f"{k}={v}" for k, v in sorted(variant.items()))
    published = cell.get("published") or {}
    row = {
        "run_id": run.meta.get("run_id"), "cell_id": cell.get("cell_id"), "status": status,
        "error": cell.get("error"), "family": cell.get("family"), "model": cell.get("model"),
        "weights": weights.get("source") or "-", "dataset": cell.get("dataset"), "device": cell.get("device"),
        "precision": precision, "batch_size": cell.get("batch_size"), "runtime": cell.get("runtime"),
        "protocol": "+".join(filter(None, [protocol.get("mode"), protocol.get("upsample")])),
        "mIoU": _num(metrics.get("mIoU")), "aAcc": _num(metrics.get("aAcc")), "mAcc": _num(metrics.get("mAcc")),
        "mIoU_ci": metrics.get("mIoU_ci"),
        "published_mIoU": _num(published.get("mIoU")),
        "latency_p50": _num(lat.get("p50")), "latency_p90": _num(lat.get("p90")),
        "throughput": _num(cell.get("throughput_ips")), "gpu_peak": _num(mem.get("gpu_peak_allocated")),
        "host_rss": _num(mem.get("host_peak_rss")),
        "params": _num(cell.get("params")) / 1e6 if _num(cell.get("params")) else None,
        "gflops": _num(cell.get("gflops")),
        "trust_remote_code": bool(weights.get("trust_remote_code")),
    }
    if row["mIoU"] is not None and row["published_mIoU"] is not None:
        row["delta_mIoU"] = 100 * (row["mIoU"] - row["published_mIoU"])
    else:
        row["delta_mIoU"] = None
    why = {}
    if status != "ok":
        reason = status or "no result"
        for c in COLUMNS:
            if c.kind != "text" and row.get(c.key) is None:
                why[c.key] = reason
    else:
        if weights.get("source") == "random":
            for k in ("mIoU", "aAcc", "mAcc"):
                why[k] = "random weights"
        elif row["mIoU"] is None:
            for k in ("mIoU", "aAcc", "mAcc"):
                why[k] = cell.get("metrics_note") or "not measured"
        if row["gpu_peak"] is None:
            why["gpu_peak"] = "not on CUDA" if str(cell.get("device", "")).startswith("cpu") else "not measured"
        for k in ("latency_p50", "latency_p90", "throughput"):
            if row[k] is None:
                why[k] = "not measured"
        if row["gflops"] is None:
            why["gflops"] = "not counted"
        if row["published_mIoU"] is None:
            why["published_mIoU"] = "no reference"
        if row["delta_mIoU"] is None:
            why["delta_mIoU"] = "-"
    row["why"] = why
    return row


def all_rows(runs: list[Run]) -> list[dict]:
    """Rows of every cell of every run, grouped by family (DPT, transformer, CNN) then model."""
    rows = [cell_row(r, c) for r in runs for c in r.cells.values()]
    rows.sort(key=lambda r: (FAMILY_ORDER.get(r["family"], 9), str(r["model"]), str(r["dataset"]),
                             str(r["device"]), str(r["precision"]), r["batch_size"] or 0))
    return rows


def best_values(rows: list[dict]) -> dict[str, float]:
    """The best value of each ranked column over rows whose status is ok."""
    best = {}
    for c in COLUMNS:
        if not c.better:
            continue
        vals = [r[c.key] for r in rows if r["status"] == "ok" and r.get(c.key) is not None]
        if vals:
            best[c.key] = max(vals) if c.better == "max" else min(vals)
    return best


def fmt(value, kind: str, decimals: int = 1) -> str:
    """A display string for ``value`` of column ``kind``."""
    if value is None:
        return ""
    if kind == "pct":
        return f"{100 * value:.{decimals}f}"
    if kind in ("ms", "num"):
        return f"{value:.{decimals + 1}f}" if abs(value) < 10 else f"{value:.{decimals}f}"
    if kind == "mib":
        return f"{value:.0f}"
    if kind == "m":
        return f"{value:.1f}"
    if kind == "int":
        return str(int(value))
    return str(value)
