"""Human views of what ``eval``, ``models``, ``datasets``, ``run`` (and ``--dry-run``) and ``profile``
print: the summary first, then short aligned tables (:mod:`harness.cli_output`).

Headers and units of measured values come from the quantity table (:mod:`harness.quantities` and
each task's ``QUANTITIES``); the registry tables are lists of :class:`Field`, one line a column.
Every function returns lines of at most ``width`` characters (a path is never cut).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.cli_output import Column, Style, bullet_list, render_table, split_header, truncate, wrap

DASH = "-"


@dataclass(frozen=True)
class Field:
    """A registry table column: the row key, its column, and how a value is shown."""

    key: str
    column: Column
    show: Callable[[Any], str] = lambda v: DASH if v is None or v == "" else str(v)  # noqa: E731


def yes_no(v: Any) -> str:
    return DASH if v is None else "yes" if v else "no"


def _paint_found(style: Style, text: str, raw: str) -> str:
    return style.paint(text, "green") if raw == "yes" else style.dim(text) if raw == "no" else text


def millions(v: Any) -> str:
    return DASH if not isinstance(v, (int, float)) or isinstance(v, bool) else f"{v / 1e6:.1f}"


def size(v: Any) -> str:
    return "x".join(str(x) for x in v) if isinstance(v, (list, tuple)) and v else DASH


MODEL_FIELDS: tuple[Field, ...] = (
    Field("name", Column("name", min_width=28)),
    Field("task", Column("task")),
    Field("family", Column("family")),
    Field("params", Column("params", "M", "right"), millions),
    Field("input_size", Column("input"), size),
    Field("label_set", Column("labels")),
    Field("runtime", Column("runtime")),
    Field("weights_from", Column("weights from", min_width=12)),
    Field("present", Column("found", paint=_paint_found), yes_no),
)
"""The columns of ``segbench models``: one line each (``--json`` has every key of every row)."""

DATASET_FIELDS: tuple[Field, ...] = (
    Field("name", Column("name", min_width=24)),
    Field("tasks", Column("tasks"), lambda v: ",".join(v) if isinstance(v, (list, tuple)) else str(v)),
    Field("num_classes", Column("classes", align="right")),
    Field("label_set", Column("labels")),
    Field("found", Column("found", paint=_paint_found), yes_no),
    Field("root", Column("root", min_width=24)),
    Field("layout", Column("layout", min_width=10)),
)
"""The columns of ``segbench datasets``."""


def registry_lines(rows: Sequence[dict], fields: Sequence[Field], style: Style, width: int, what: str) -> list[str]:
    """A registry table: a count line, then one aligned row per entry."""
    found = sum(1 for r in rows if r.get("present") or r.get("found"))
    head = f"{len(rows)} {what}, {found} found locally (--json: every field)"
    table = render_table([f.column for f in fields], [[f.show(r.get(f.key)) for f in fields] for r in rows],
                         width, style)
    return [style.bold(head), ""] + table


# --- eval -------------------------------------------------------------------------------------------

def _accuracy_quantities(task: str):
    """The task's accuracy quantities: (summary ones, per-class ones), in declaration order."""
    from harness.tasks import TASKS

    qs = [q for q in TASKS[task].quantities if q.path and q.path.startswith("accuracy.metrics.")]
    return [q for q in qs if not q.per_class], [q for q in qs if q.per_class]


def value_text(q, value: Any, decimals: int = 1) -> str:
    """A quantity's value with its display unit: ``46.6%``, ``12.3 ms``; ``-`` when absent."""
    from harness.report.rows import fmt, num

    v = num(value)
    if v is None:
        return DASH
    unit = split_header(q.header)[1]
    text = fmt(v / q.divisor, q.display, decimals)
    return text + ("%" if unit == "%" else f" {unit}" if unit else "")


def _metric_key(q) -> str:
    return q.path.rsplit(".", 1)[-1]


def summary_line(metrics: dict, task: str, style: Style, width: int) -> list[str]:
    """``mIoU 46.6% (95% CI 44.1%–48.9%)   aAcc 89.1%   mAcc 58.6%``, then the task's other means."""
    scalar, _ = _accuracy_quantities(task)
    parts, more = [], []
    for q in scalar:
        key = _metric_key(q)
        if metrics.get(key) is None:
            continue
        text = f"{key} {value_text(q, metrics[key])}"
        ci = metrics.get(f"{key}_ci")
        if isinstance(ci, list) and len(ci) == 2 and all(isinstance(c, (int, float)) for c in ci):
            text += f" (95% CI {value_text(q, ci[0])}–{value_text(q, ci[1])})"
        (parts if q.shown == "always" else more).append(text)
    first = wrap("   ".join(parts), width) if parts else []
    return [style.bold(line) for line in first] + (wrap("   ".join(more), width) if more else [])


def per_class_lines(metrics: dict, class_names: Sequence[str] | None, task: str, style: Style,
                    width: int) -> list[str]:
    """The per-class table of the classes present (a value for the first per-class quantity)."""
    _, per_class = _accuracy_quantities(task)
    lists = {q: metrics.get(_metric_key(q)) for q in per_class if isinstance(metrics.get(_metric_key(q)), list)}
    if not lists:
        return []
    from harness.report.rows import num

    first = next(iter(lists.values()))
    present = [i for i, v in enumerate(first) if num(v) is not None]
    names = list(class_names or [])
    cols = [Column("class", min_width=10)] + [Column(*split_header(q.header), align="right", min_width=4)
                                              for q in lists]
    rows = [[f"{i} {names[i]}" if i < len(names) else str(i)]
            + [value_text(q, vals[i]).rstrip("%") if i < len(vals) else DASH for q, vals in lists.items()]
            for i in present]
    title = f"per class: {len(present)} of {len(first)} classes present (absent ones have no value; --json lists all)"
    return [style.bold(truncate(title, width))] + render_table(cols, rows, width, style)


def weights_text(weights: Any) -> str:
    """``hub org/model@rev``, ``local /path``, ``random``: where the weights came from."""
    if not isinstance(weights, dict):
        return str(weights)
    src = weights.get("source") or weights.get("requested") or "?"
    where = weights.get("id") or weights.get("path") or ""
    rev = weights.get("revision")
    return f"{src} {where}{'@' + str(rev)[:12] if rev else ''}".strip()


def eval_lines(doc: dict, class_names: Sequence[str] | None, task: str, style: Style, width: int) -> list[str]:
    """``segbench eval``: model and data, the summary line, then the per-class table."""
    data = doc.get("data") or {}
    skipped = data.get("skipped") or []
    metrics = doc.get("metrics") or {}
    images = metrics.get("num_images", data.get("num_samples"))
    lines = [*(style.bold(line) for line in wrap(f"{doc.get('model')} on {doc.get('dataset')}", width)),
             *wrap(f"weights: {weights_text(doc.get('weights'))}", width),
             f"images: {DASH if images is None else images}   skipped: {len(skipped)}", ""]
    if not metrics:
        return lines + wrap(f"no accuracy: {doc.get('metrics_note') or 'not measured'}", width)
    lines += summary_line(metrics, task, style, width)
    if metrics.get("mIoU_ci_note"):
        lines += [style.dim(line) for line in wrap(str(metrics["mIoU_ci_note"]), width)]
    table = per_class_lines(metrics, class_names, task, style, width)
    lines += ([""] + table) if table else []
    names = [s.get("id", s) if isinstance(s, dict) else s for s in skipped]
    return lines + ([""] + bullet_list("skipped samples", [str(n) for n in names], width, style=style)
                    if skipped else [])


# --- run --dry-run, run, profile -------------------------------------------------------------------

def precision_text(precision: str, amp: str | None) -> str:
    """``fp32``; ``bf16 autocast`` / ``fp16 cast`` where the amp mode matters."""
    from harness.settings import HALF_PRECISIONS

    return f"{precision} {amp}" if precision in HALF_PRECISIONS and amp else precision


def _protocol_text(protocol: dict) -> str:
    return "+".join(str(protocol[k]) for k in ("mode", "merge") if protocol.get(k))


def dry_run_lines(cells: Sequence, suite_path: str, style: Style, width: int,
                  skips: Sequence[dict] = ()) -> list[str]:
    """``run --dry-run``: the cell count, then a row per cell (the cell ids are in ``--json``); a task
    column when the suite holds more than segmentation, a corruption column with the corruption axis,
    and a line per (model, dataset) pair that is no cell because the dataset cannot score its task."""
    variants = any(c.variant for c in cells)
    tasks = any(c.task != "segmentation" for c in cells)
    corrupted = any(c.corruption is not None for c in cells)
    cols = [Column("#", align="right", min_width=2), Column("model", min_width=12), Column("weights"),
            Column("dataset", min_width=8), Column("device"), Column("precision"),
            Column("batch", align="right", min_width=3), Column("runtime"), Column("protocol")]
    cols += [Column("task")] * tasks + [Column("corruption")] * corrupted + [Column("variant")] * variants
    rows = []
    for i, c in enumerate(cells, 1):
        row = [str(i), c.model_label or c.model, c.weights or "pretrained", c.dataset, c.device,
               precision_text(c.precision, c.amp), str(c.batch_size), c.runtime, _protocol_text(c.protocol)]
        row += [c.task] * tasks + [c.corruption_tag or "clean"] * corrupted
        if variants:
            row.append(",".join(f"{k}={v}" for k, v in sorted(c.variant.items())) or DASH)
        rows.append(row)
    head = f"{len(cells)} cell{'s' * (len(cells) != 1)} in {suite_path} (not run)"
    notes = [line for skip in skips
             for line in wrap(f"not a cell: {skip['model']} x {skip['dataset']}: {skip['reason']}", width)]
    return [style.bold(line) for line in wrap(head, width)] + render_table(cols, rows, width, style) + notes


def _paint_status(style: Style, text: str, raw: str) -> str:
    return text if raw == "ok" else style.dim(text) if raw == "skipped" else style.paint(text, "bold", "red")


def summary_quantities(tasks: Sequence[str]) -> list:
    """The columns of the run summary: each task's headline quantity, then the forward latency p50."""
    from harness.quantities import by_key
    from harness.tasks import TASKS

    known = by_key()
    keys = [TASKS[t].headline for t in tasks if t in TASKS] + ["latency_p50"]
    return [known[k] for k in dict.fromkeys(keys) if k in known]


def run_lines(doc: dict, run, style: Style, width: int) -> list[str]:
    """``segbench run``: counts per status, where the results are, a row per cell, the failures."""
    from harness.report.rows import all_rows, fmt

    statuses = doc["statuses"]
    counts = {s: list(statuses.values()).count(s) for s in dict.fromkeys(statuses.values())}
    verdict = "interrupted" if doc["interrupted"] else "failed" if doc["failed"] else "ok"
    head = f"{len(statuses)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    lines = [f"{style.verdict(verdict)}  {head}", f"results: {doc['run_dir']}"]
    if doc.get("report"):
        lines.append(f"report: {doc['report']}")
    if run is None or not run.cells:
        return lines
    rows = all_rows([run])
    qs = summary_quantities(sorted({r["task"] for r in rows}))
    cols = [Column("model", min_width=12), Column("dataset", min_width=8), Column("device"),
            Column("precision", min_width=6), Column("batch", align="right", min_width=3),
            Column("status", paint=_paint_status)] + [Column(*split_header(q.header), align="right") for q in qs]
    table = [[str(r["model"]), str(r["dataset"]), str(r["device"]), str(r["precision"]),
              fmt(r["batch_size"], "int") or DASH, str(r["status"])]
             + [fmt(r.get(q.key), q.display) or DASH for q in qs] for r in rows]
    lines += [""] + render_table(cols, table, width, style)
    errors = [f"{r['model']} · {r['dataset']} · {r['precision']}: {str(r['error'])[:300]}"
              for r in rows if r["status"] not in ("ok", "skipped") and r.get("error")]
    return lines + ([""] + bullet_list("failed", errors, width, style=style) if errors else [])


def profile_doc(cells: Sequence) -> list[dict]:
    """``profile --json``: each cell's id, status, timing and per-batch stage latencies."""
    from dataclasses import asdict

    return [{"cell_id": c.cell_id, "status": c.status, "timing": asdict(c.timing), "stages_ms": c.latency.stages_ms}
            for c in cells]


def profile_lines(cells: Sequence, style: Style, width: int) -> list[str]:
    """``segbench profile``: each cell's breakdown (:func:`harness.profile.describe`), cut to ``width``."""
    from harness.profile import describe

    out = [style.bold(f"{len(cells)} cell{'s' * (len(cells) != 1)}: where the time went")]
    for c in cells:
        text = describe(c).splitlines()
        out += ["", style.bold(truncate(text[0], width))]
        for line in text[1:]:
            body = line.lstrip()
            indent = line[: len(line) - len(body)]
            out += wrap(body, width, indent=indent, subsequent=indent + " " * 22) if len(line) > width else [line]
    return out
