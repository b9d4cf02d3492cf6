"""Display rows built from results: one per cell, with the reason each missing value is missing.

Units: accuracy values are fractions (shown as %), latency in ms, memory in MiB, parameters in
millions, compute in GFLOPs, throughput in images/s.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from harness.results import Run

FAMILY_ORDER = {"dpt": 0, "transformer": 1, "cnn": 2}
FAMILY_LABEL = {"dpt": "DPT", "transformer": "Transformer", "cnn": "CNN"}


def family_label(family: object) -> str:
    """The display name of a model family (``DPT``, ``Transformer``, ``CNN``, or the raw value)."""
    return FAMILY_LABEL.get(family, "unknown family" if family is None else str(family))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Column:
    """A table column: row key, header (with unit), ranking direction and value kind."""

    key: str
    header: str
    better: str | None  # "max", "min" or None (not ranked)
    kind: str  # "text", "pct" (fraction shown as %), "ms", "num", "int", "mib", "m" (millions)


COLUMNS = [
    Column("run", "run", None, "text"),
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
BY_KEY = {c.key: c for c in COLUMNS}
ACCURACY_KEYS = ("mIoU", "aAcc", "mAcc")


def num(v: object) -> float | None:
    """``v`` as a finite float, or None (bools, strings, NaN and inf are not numbers here)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def precision_label(cell: dict) -> str:
    """Precision with how it is applied: ``fp32``, ``fp16 (autocast)``, ``bf16 (cast)``, plus variants."""
    precision = str(cell.get("precision") or "?")
    amp = cell.get("amp")
    if amp and precision not in ("fp32", "tf32"):
        precision += f" ({amp})"
    variant = cell.get("variant") or {}
    if isinstance(variant, dict) and variant:
        precision += " " + ",".join(f"{k}={v}" for k, v in sorted(variant.items()))
    return precision


def protocol_label(cell: dict) -> str:
    """``mode+upsample`` of the cell's protocol, e.g. ``whole+bilinear``."""
    protocol = cell.get("protocol") or {}
    if not isinstance(protocol, dict):
        return str(protocol)
    return "+".join(str(v) for v in (protocol.get("mode"), protocol.get("upsample")) if v) or "-"


def identity_key(cell: dict) -> str:
    """Settings that make two cells comparable (everything but the run), as a stable JSON string."""
    ident = {k: cell.get(k) for k in ("model", "dataset", "device", "precision", "amp", "batch_size", "runtime",
                                      "variant")}
    ident["protocol"] = protocol_label(cell)
    ident["weights"] = (cell.get("weights") or {}).get("source")
    return json.dumps(ident, sort_keys=True, default=str)


def cell_row(run: Run, cell: dict) -> dict:
    """Flatten a cell result into display values plus ``why`` (the reason per missing value)."""
    status = cell.get("status")
    metrics = cell.get("metrics") if isinstance(cell.get("metrics"), dict) else {}
    lat = cell.get("latency_ms") if isinstance(cell.get("latency_ms"), dict) else {}
    mem = cell.get("memory_mib") if isinstance(cell.get("memory_mib"), dict) else {}
    weights = cell.get("weights") if isinstance(cell.get("weights"), dict) else {}
    published = cell.get("published") if isinstance(cell.get("published"), dict) else {}
    params = num(cell.get("params"))
    ci = metrics.get("mIoU_ci")
    row = {
        "run": str(run.meta.get("run_id") or run.path.name), "cell_id": cell.get("cell_id"), "status": status,
        "error": cell.get("error"), "family": cell.get("family"), "model": cell.get("model"),
        "weights": weights.get("source") or ("random" if weights.get("requested") == "random" else "-"),
        "dataset": cell.get("dataset"), "device": cell.get("device"), "precision": precision_label(cell),
        "precision_raw": cell.get("precision"), "amp": cell.get("amp"), "batch_size": num(cell.get("batch_size")),
        "runtime": cell.get("runtime"), "protocol": protocol_label(cell), "identity": identity_key(cell),
        "mIoU": num(metrics.get("mIoU")), "aAcc": num(metrics.get("aAcc")), "mAcc": num(metrics.get("mAcc")),
        "mIoU_ci": [num(v) for v in ci] if isinstance(ci, list) and len(ci) == 2 else None,
        "published_mIoU": num(published.get("mIoU")), "published_source": published.get("source"),
        "latency_p50": num(lat.get("p50")), "latency_p90": num(lat.get("p90")),
        "latency_samples": [v for v in (lat.get("samples") or []) if num(v) is not None],
        "throughput": num(cell.get("throughput_ips")), "gpu_peak": num(mem.get("gpu_peak_allocated")),
        "host_rss": num(mem.get("host_peak_rss")), "params": params / 1e6 if params is not None else None,
        "gflops": num(cell.get("gflops")), "trust_remote_code": bool(weights.get("trust_remote_code")),
        "repeats": cell.get("repeats") if isinstance(cell.get("repeats"), list) else None,
    }
    if row["mIoU"] is not None and row["published_mIoU"] is not None:
        row["delta_mIoU"] = 100 * (row["mIoU"] - row["published_mIoU"])
    else:
        row["delta_mIoU"] = None
    row["why"] = _reasons(row, cell, weights)
    return row


def _reasons(row: dict, cell: dict, weights: dict) -> dict[str, str]:
    """Why each empty numeric column is empty, in a few words."""
    why: dict[str, str] = {}
    status = row["status"]
    if status != "ok":
        for c in COLUMNS:
            if c.kind != "text" and row.get(c.key) is None:
                why[c.key] = str(status or "no result")
        return why
    if row["weights"] == "random":
        for k in ACCURACY_KEYS:
            if row[k] is None:
                why[k] = "random weights"
    else:
        note = cell.get("metrics_note") or "accuracy not measured"
        for k in ACCURACY_KEYS:
            if row[k] is None:
                why[k] = str(note)
    if row["gpu_peak"] is None:
        why["gpu_peak"] = "not CUDA" if not str(cell.get("device", "")).startswith("cuda") else "not measured"
    for k in ("latency_p50", "latency_p90", "throughput", "host_rss", "batch_size"):
        if row[k] is None:
            why[k] = "not measured"
    if row["params"] is None:
        why["params"] = "not counted"
    if row["gflops"] is None:
        why["gflops"] = "not counted"
    if row["published_mIoU"] is None:
        why["published_mIoU"] = "no ref."
    if row["delta_mIoU"] is None:
        why["delta_mIoU"] = "no ref." if row["published_mIoU"] is None else why.get("mIoU", "no accuracy")
    return why


def all_rows(runs: list[Run]) -> list[dict]:
    """Rows of every cell of every run, grouped by family (DPT, transformer, CNN) then model and settings."""
    rows = [cell_row(r, c) for r in runs for c in r.cells.values()]
    rows.sort(key=lambda r: (FAMILY_ORDER.get(r["family"], 9), str(r["family"]), str(r["model"]),
                             str(r["dataset"]), str(r["device"]), str(r["precision"]), r["batch_size"] or 0,
                             str(r["run"])))
    return rows


def best_values(rows: list[dict], keys: list[str] | None = None) -> dict[str, float]:
    """The best value of each ranked column (max or min by its direction) over rows with status ok."""
    best = {}
    for c in COLUMNS:
        if not c.better or (keys is not None and c.key not in keys):
            continue
        vals = [r[c.key] for r in rows if r["status"] == "ok" and r.get(c.key) is not None]
        if vals:
            best[c.key] = max(vals) if c.better == "max" else min(vals)
    return best


def fmt(value: float | str | None, kind: str, decimals: int = 1) -> str:
    """A display string for ``value`` of column ``kind`` (fractions become %, small numbers get a digit more)."""
    if value is None:
        return ""
    if kind == "text":
        return str(value)
    if kind == "pct":
        return f"{100 * value:.{decimals}f}"
    if kind in ("ms", "num"):
        return f"{value:.{decimals + 1}f}" if abs(value) < 10 else f"{value:.{decimals}f}"
    if kind == "mib":
        return f"{value:.0f}"
    if kind == "m":
        return f"{value:.{decimals}f}" if value >= 1 else f"{value:.{decimals + 2}f}"
    if kind == "int":
        return str(int(value))
    return str(value)
