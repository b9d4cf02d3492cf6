"""Display rows built from results: one per cell, with the reason each missing value is missing.

The numeric columns are the declared quantities (:mod:`harness.quantities`); the text columns
below say which cell a row is. Units: accuracy values are fractions (shown as %), latency in
ms, memory in MiB, parameters in millions, compute in GFLOPs, throughput in images/s.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from harness.cell_result import CellResult
from harness.measure.quality import cell_flags, cell_quality, flag_reasons
from harness.quantities import Quantity, all_quantities
from harness.results import Run

FAMILY_ORDER = {"dpt": 0, "transformer": 1, "cnn": 2}
FAMILY_LABEL = {"dpt": "DPT", "transformer": "Transformer", "cnn": "CNN"}


def family_label(family: object) -> str:
    """The display name of a model family (``DPT``, ``Transformer``, ``CNN``, or the raw value)."""
    return FAMILY_LABEL.get(family, "unknown family" if family is None else str(family))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Column:
    """A table column: row key, header (with unit), ranking direction, value kind and its quantity.

    ``kind``: ``text``, ``int`` or a quantity's display (``pct``, ``ms``, ``num``, ``mib``, ``m``).
    """

    key: str
    header: str
    better: str | None  # "max", "min" or None (not ranked)
    kind: str
    quantity: Quantity | None = None
    optional: bool = False  # shown only when some row has a value (e.g. the corruption)


TEXT_COLUMNS = [
    Column("run", "run", None, "text"),
    Column("model", "model", None, "text"),
    Column("weights", "weights", None, "text"),
    Column("dataset", "dataset", None, "text"),
    Column("device", "device", None, "text"),
    Column("precision", "precision", None, "text"),
    Column("batch_size", "batch", None, "int"),
    Column("runtime", "runtime", None, "text"),
    Column("protocol", "protocol", None, "text"),
    Column("flags", "quality flags", None, "text", optional=True),
    Column("corruption", "corruption", None, "text", optional=True),
]


def table_quantities() -> list[Quantity]:
    """The quantities that are table columns, in declaration order."""
    return [q for q in all_quantities() if q.table and not q.per_class]


def columns() -> list[Column]:
    """Every column: the text columns, then one per table quantity."""
    return TEXT_COLUMNS + [Column(q.key, q.header, q.better, q.display, q) for q in table_quantities()]


def by_key() -> dict[str, Column]:
    return {c.key: c for c in columns()}


def num(v: object) -> float | None:
    """``v`` as a finite float, or None (bools, strings, NaN and inf are not numbers here)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def precision_label(cell: CellResult) -> str:
    """Precision with how it is applied: ``fp32``, ``fp16 (autocast)``, ``bf16 (cast)``, plus variants."""
    ident = cell.identity
    precision = str(ident.precision or "?")
    if ident.amp and precision not in ("fp32", "tf32"):
        precision += f" ({ident.amp})"
    variant = ident.variant or {}
    if isinstance(variant, dict) and variant:
        precision += " " + ",".join(f"{k}={v}" for k, v in sorted(variant.items()))
    return precision


def protocol_label(cell: CellResult) -> str:
    """``mode[+merge]+upsample`` of the cell's protocol, e.g. ``whole+bilinear``,
    ``multiscale+pytorch-encoding+bilinear`` (multi-scale cells name how they merged)."""
    protocol = cell.identity.protocol
    if not isinstance(protocol, dict):
        return str(protocol)
    parts = (protocol.get("mode"), protocol.get("merge"), protocol.get("upsample"))
    return "+".join(str(v) for v in parts if v) or "-"


IDENTITY_FIELDS = ("task", "model", "dataset", "device", "precision", "amp", "batch_size", "runtime", "variant")


def identity_key(cell: CellResult, with_weights: bool = True) -> str:
    """The settings that make two cells comparable across runs (model, dataset, device, precision, amp,
    batch size, runtime, variant, protocol mode + upsampling, input corruption when set, weights
    source; for tasks other than segmentation also the task, dataset options and task settings), as a
    stable JSON string."""
    ident = {k: getattr(cell.identity, k) for k in IDENTITY_FIELDS if k != "task"}
    if cell.identity.task != "segmentation":  # (segmentation keys stay as they were before tasks)
        ident["task"] = cell.identity.task
        settings = cell.identity.settings if isinstance(cell.identity.settings, dict) else {}
        for k in ("dataset_options", "task_options"):  # e.g. two rgbd-folder roots, two alignments
            if settings.get(k):
                ident[k] = settings[k]
    if cell.identity.corruption is not None:
        ident["corruption"] = cell.corruption_tag
    ident["protocol"] = protocol_label(cell)
    if with_weights:
        ident["weights"] = cell.weights_source
    return json.dumps(ident, sort_keys=True, default=str)


def _interval(cell: CellResult) -> list[float | None] | None:
    """The stored mIoU bootstrap interval, when it rests on enough images to mean something."""
    from harness.tasks.segmentation import MIN_BOOTSTRAP_IMAGES

    metrics = cell.accuracy.metrics or {}
    ci, n = metrics.get("mIoU_ci"), num(metrics.get("num_images"))
    if not (isinstance(ci, list) and len(ci) == 2) or (n is not None and n < MIN_BOOTSTRAP_IMAGES):
        return None
    return [num(v) for v in ci]


def cell_row(run: Run, cell: CellResult) -> dict:
    """Flatten a cell result into display values plus ``why`` (the reason per missing value)."""
    ident, prov = cell.identity, cell.provenance
    weights = prov.weights if isinstance(prov.weights, dict) else {}
    forward = cell.latency.forward_ms if isinstance(cell.latency.forward_ms, dict) else {}
    row = {
        "run": run.run_id, "cell_id": cell.cell_id, "status": cell.status, "error": cell.error, "task": ident.task,
        "family": prov.family, "model": ident.model, "weights": cell.weights_source or "-", "dataset": ident.dataset,
        "device": ident.device, "precision": precision_label(cell), "precision_raw": ident.precision,
        "amp": ident.amp, "batch_size": num(ident.batch_size), "runtime": ident.runtime,
        "protocol": protocol_label(cell), "corruption": cell.corruption_tag, "identity": identity_key(cell),
        "mIoU_ci": _interval(cell),
        "published_source": (prov.published or {}).get("source"),
        "published_checkpoint": (prov.published or {}).get("checkpoint"),
        "latency_samples": [v for v in (forward.get("samples") or []) if num(v) is not None],
        "trust_remote_code": bool(weights.get("trust_remote_code")),
        "repeats": cell.latency.repeats if isinstance(cell.latency.repeats, list) else None,
        "flags": ", ".join(cell_flags(cell)) or None, "flag_reasons": flag_reasons(cell_quality(cell)),
    }
    derived = []
    for q in table_quantities():
        if q.derive is not None:
            derived.append(q)
            continue
        v = num(q.raw(cell))
        row[q.key] = v / q.divisor if v is not None else None
    for q in derived:
        row[q.key] = q.derive(row)
    row["why"] = _reasons(row, cell)
    row["published_note"] = _published_note(row, cell)
    return row


def _published_note(row: dict, cell: CellResult) -> str | None:
    """For an ok cell without a reference: the task's reason (another checkpoint, another protocol, ...)."""
    if row["status"] != "ok" or cell.provenance.published is not None:
        return None
    from harness.tasks import TASKS, task_module

    if cell.identity.task not in TASKS:
        return None
    explain = getattr(task_module(cell.identity.task), "published_reason", None)
    return explain(cell) if explain else None


def _reason(q: Quantity, row: dict, cell: CellResult) -> str:
    """Why quantity ``q`` of an ok cell has no value, in a few words."""
    if q.task is not None and q.task != row.get("task"):
        return "n/a"  # another task's quantity (a depth cell has no mIoU)
    note = cell.get(q.note) if q.note else None
    if isinstance(note, str) and note:
        return note.split(":")[0]
    if q.path and q.path.startswith("accuracy."):
        return "random weights" if row["weights"] == "random" else str(cell.accuracy.note or "accuracy not measured")
    if q.path and q.path.startswith("provenance.published"):
        return "no ref."
    if q.path and q.path.startswith("memory.gpu") and not str(cell.identity.device or "").startswith("cuda"):
        return "not CUDA"
    if q.path and q.path.startswith("compute."):
        return "not counted"
    if q.derive is not None:
        declared = {p.key: p for p in table_quantities()}
        missing = next((declared[k] for k in q.inputs if k in declared and row.get(k) is None), None)
        return _reason(missing, row, cell) if missing is not None else "not derived"
    return "not measured"


def _reasons(row: dict, cell: CellResult) -> dict[str, str]:
    """Why each empty numeric column is empty."""
    if row["status"] != "ok":
        return {c.key: str(row["status"] or "no result") for c in columns()
                if c.kind != "text" and row.get(c.key) is None}
    why = {q.key: _reason(q, row, cell) for q in table_quantities() if row.get(q.key) is None}
    if row["batch_size"] is None:
        why["batch_size"] = "not measured"
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
    for c in columns():
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
    if kind == "f3":
        return f"{value:.{max(decimals, 3)}f}"
    return str(value)
