"""Paper tables: LaTeX (booktabs), Markdown and CSV from run results.

- One row per cell; cells with the same settings in several runs are repeats and become one row
  holding the mean and the half-width of its 95% Student-t confidence interval.
- mIoU of a single cell is shown as value ± half the width of its bootstrap interval
  (``metrics.mIoU_ci``) when the result carries one; latency p50 as the mean ± CI over the cell's
  own ``repeats`` when the runner repeated it.
- Per ranked column the best value is bold and the second underlined (direction per metric:
  max for accuracy and throughput, min for latency, memory, parameters and FLOPs).
- Models are grouped by family (a ``\\midrule`` between families in LaTeX).
- Every string is escaped for the output format.
"""

from __future__ import annotations

import csv
import io
import math

from harness.errors import ConfigError
from harness.report.escape import latex_escape, markdown_escape
from harness.report.rows import all_rows, by_key, family_label, num, table_quantities
from harness.results import Run

FORMATS = ("latex", "markdown", "csv", "text")
GROUPS = ("family", "none")
TEXT_DEFAULTS = ("model", "precision")
TEXT_ALIASES = {"batch": "batch_size"}


def default_columns() -> list[str]:
    """The identity columns model and precision, then every quantity declared for paper tables."""
    return list(TEXT_DEFAULTS) + [q.key for q in table_quantities() if q.paper]


def averaged_keys() -> list[str]:
    """Quantities that differ between repeats of a cell: averaged (with an interval) when runs are merged."""
    return [q.key for q in table_quantities() if q.varies and q.derive is None]


def aliases() -> dict[str, str]:
    """Other names accepted by ``--columns``: the quantities' aliases and the text ones."""
    return {**TEXT_ALIASES, **{a: q.key for q in table_quantities() for a in q.aliases}}

# two-sided 95% Student-t quantiles t(0.975, df) for df = 1..30; beyond that the normal 1.96 is used
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042]


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (two-sided 95% interval)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def mean_ci(values: list[float]) -> tuple[float, float | None]:
    """Mean and half-width of its 95% t interval (None for fewer than 2 values)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t_quantile_975(n - 1) * sd / math.sqrt(n)


def resolve_columns(columns: list[str] | None) -> list[str]:
    """Column keys from names or aliases; ``ConfigError`` naming the unknown ones and the known keys."""
    if not columns:
        return default_columns()
    known, alias = by_key(), aliases()
    keys = [alias.get(c, c) for c in columns]
    unknown = [c for c, k in zip(columns, keys, strict=True) if k not in known]
    if unknown:
        raise ConfigError(f"table --columns: unknown column(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return keys


def merge_repeats(rows: list[dict]) -> list[dict]:
    """One row per identity: repeated cells (same settings in several runs) averaged, with ``ci`` half-widths."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["identity"], []).append(r)
    out = []
    for members in groups.values():
        row = dict(members[0])
        row["ci"] = {}
        if row["mIoU_ci"] and None not in row["mIoU_ci"]:
            lo, hi = row["mIoU_ci"]
            row["ci"]["mIoU"] = (hi - lo) / 2
        reps = [num(x.get("p50")) for x in (row.get("repeats") or []) if isinstance(x, dict)]
        reps = [v for v in reps if v is not None]
        if len(reps) >= 2:
            row["latency_p50"], row["ci"]["latency_p50"] = mean_ci(reps)
        ok = [m for m in members if m["status"] == "ok"]
        if len(members) > 1:
            row["repeats_n"] = len(members)
            row["status"] = "ok" if ok else members[0]["status"]
            base = ok[0] if ok else members[0]
            row.update({k: base[k] for k in ("why", "error", "weights")})
            for key in averaged_keys():
                vals = [m[key] for m in ok if m.get(key) is not None]
                if vals:
                    row[key], half = mean_ci(vals)
                    if half is not None:
                        row["ci"][key] = half
                else:
                    row[key] = None
        out.append(row)
    return out


def _ranks(rows: list[dict], columns: list[str]) -> dict[tuple[int, str], int]:
    """(row index, column key) -> 1 for the best value, 2 for the second best, among ok rows."""
    ranks = {}
    known = by_key()
    for key in columns:
        col = known[key]
        if not col.better:
            continue
        vals = sorted({r[key] for r in rows if r["status"] == "ok" and r.get(key) is not None},
                      reverse=col.better == "max")
        for i, r in enumerate(rows):
            if r["status"] == "ok" and r.get(key) is not None and r[key] in vals[:2]:
                ranks[(i, key)] = vals.index(r[key]) + 1
    return ranks


def _value_text(row: dict, key: str, decimals: int) -> tuple[str, str | None]:
    """(value text, CI half-width text or None) in display units; a missing value gives the short reason."""
    col = by_key()[key]
    v = row.get(key)
    if col.kind == "text":
        return (str(v) if v not in (None, "") else "–"), None
    if v is None:
        return (str(row["status"]) if row["status"] != "ok" else "–"), None
    scale = 100.0 if col.kind == "pct" else 1.0
    if col.kind == "int":
        return str(int(v)), None
    if col.kind == "f3":  # depth errors: at least three decimals, as the papers print them
        decimals = max(decimals, 3)
    if col.kind == "mib":
        text = f"{v:.0f}"
    else:
        text = f"{scale * v:.{decimals}f}"
    half = row.get("ci", {}).get(key)
    return text, (f"{scale * half:.{decimals}f}" if half is not None else None)


def caption(rows: list[dict]) -> str:
    """A caption naming the device(s), precision(s), protocol(s) and dataset(s) of the rows, and units."""
    def uniq(k: str) -> str:
        return ", ".join(sorted({str(r.get(k)) for r in rows if r.get(k) is not None})) or "-"

    text = (f"Device: {uniq('device')}; precision: {uniq('precision')}; protocol: {uniq('protocol')}; "
            f"dataset: {uniq('dataset')}. Latency: model forward per batch, median (ms); accuracy in %.")
    if any(r.get("ci") for r in rows):
        text += " ± is the half-width of a 95% confidence interval."
    return text


def table_rows(runs: list[Run]) -> list[dict]:
    """The rows a table shows: every cell of ``runs``, repeats merged, grouped by family."""
    return merge_repeats(all_rows(runs))


def render_table(runs: list[Run], fmt: str = "markdown", columns: list[str] | None = None, decimals: int = 1,
                 group: str | bool = "family", width: int = 100, colour: bool = False) -> str:
    """The table of ``runs`` in ``fmt`` (``text``, ``latex``, ``markdown`` or ``csv``).

    ``columns`` are row keys (see ``harness.report.rows.columns()``) or aliases; ``decimals`` the
    digits after the point; ``group`` ``"family"`` (or True) to group models by family. ``text`` is
    the terminal's: aligned columns within ``width`` characters, units on a second header line, the
    best value bold and the second underlined when ``colour`` is on.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"table --format {fmt!r} is not one of {', '.join(FORMATS)}")
    if not isinstance(decimals, int) or not 0 <= decimals <= 6:
        raise ConfigError(f"table --decimals {decimals!r}: expected an integer from 0 to 6")
    if isinstance(group, str) and group not in GROUPS:
        raise ConfigError(f"table --group {group!r} is not one of {', '.join(GROUPS)}")
    grouped = group is True or group == "family"
    keys = resolve_columns(columns)
    rows = table_rows(runs)
    if not rows:
        raise ConfigError("table: the run(s) hold no cell result")
    ranks = _ranks(rows, keys)
    known = by_key()
    headers = [known[k].header for k in keys]
    cells = [[_value_text(r, k, decimals) for k in keys] for r in rows]
    if fmt == "csv":
        return _csv(rows, keys, headers, cells)
    if fmt == "markdown":
        return _markdown(rows, keys, headers, cells, ranks, grouped)
    if fmt == "text":
        return _text(rows, keys, headers, cells, ranks, grouped, width, colour)
    return _latex(rows, keys, headers, cells, ranks, grouped)


def table_json(runs: list[Run], columns: list[str] | None = None) -> dict:
    """``table --json``: the column keys and headers, and per row its family, status, values (stored
    units: fractions, ms, MiB, millions of parameters) and the 95% half-widths where there are some."""
    keys = resolve_columns(columns)
    known = by_key()
    rows = table_rows(runs)
    return {"columns": [{"key": k, "header": known[k].header} for k in keys],
            "rows": [{"family": r["family"], "status": r["status"], **{k: r.get(k) for k in keys},
                      "ci": {k: v for k, v in (r.get("ci") or {}).items() if k in keys}} for r in rows]}


def _text(rows, keys, headers, cells, ranks, grouped, width, colour) -> str:
    """Aligned columns for the terminal: a family title above its rows, best bold, second underlined."""
    from harness.cli_output import Column, Style, grouped_table, split_header, wrap

    known = by_key()
    cols = [Column(*split_header(h), align="left" if known[k].kind == "text" else "right",
                   min_width=12 if k == "model" else 5) for k, h in zip(keys, headers, strict=True)]
    groups: list[tuple[str, list[list[str]]]] = []
    family = object()
    for r, row_cells in zip(rows, cells, strict=True):
        if not groups or (grouped and r["family"] != family):
            family = r["family"]
            groups.append((family_label(family) if grouped else "", []))
        groups[-1][1].append([text + (f" ± {half}" if half is not None else "") for text, half in row_cells])
    marks = {(i, keys.index(k)): ("bold",) if rank == 1 else ("underline",) for (i, k), rank in ranks.items()}
    lines = grouped_table(cols, groups, width, Style(colour), indent="", marks=marks)
    return "\n".join([line for line in lines if line] + [""] + wrap(caption(rows), width)) + "\n"


def _csv(rows, keys, headers, cells) -> str:
    with_ci = [i for i in range(len(keys)) if any(c[i][1] is not None for c in cells)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["family", "status"]
    for i, h in enumerate(headers):
        head += [h] + ([f"{h} ±95% CI"] if i in with_ci else [])
    w.writerow(head)
    for r, row_cells in zip(rows, cells, strict=True):
        out = [family_label(r["family"]), r["status"]]
        for i, (key, (text, half)) in enumerate(zip(keys, row_cells, strict=True)):
            if by_key()[key].kind != "text" and r.get(key) is None:
                text = ""  # machines read an empty field; the status column says why
            out += [text] + ([half or ""] if i in with_ci else [])
        w.writerow(out)
    return buf.getvalue()


def _markdown(rows, keys, headers, cells, ranks, grouped) -> str:
    lines = ["| " + " | ".join(markdown_escape(h) for h in headers) + " |",
             "|" + "|".join(":---" if by_key()[k].kind == "text" else "---:" for k in keys) + "|"]
    family = object()
    for i, (r, row_cells) in enumerate(zip(rows, cells, strict=True)):
        if grouped and r["family"] != family:
            family = r["family"]
            lines.append(f"| ***{markdown_escape(family_label(family))}*** |" + " |" * (len(keys) - 1))
        vals = []
        for key, (text, half) in zip(keys, row_cells, strict=True):
            text = markdown_escape(text) + (f" ± {half}" if half is not None else "")
            rank = ranks.get((i, key))
            vals.append(f"**{text}**" if rank == 1 else f"<ins>{text}</ins>" if rank == 2 else text)
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n\n" + markdown_escape(caption(rows)) + "\n"


def _latex(rows, keys, headers, cells, ranks, grouped) -> str:
    align = "".join("l" if by_key()[k].kind == "text" else "r" for k in keys)
    out = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{align}}}", r"\toprule",
           " & ".join(latex_escape(h) for h in headers) + r" \\", r"\midrule"]
    family = object()
    for i, (r, row_cells) in enumerate(zip(rows, cells, strict=True)):
        if grouped and r["family"] != family:
            if i > 0:
                out.append(r"\midrule")
            family = r["family"]
            out.append(rf"\multicolumn{{{len(keys)}}}{{l}}{{\textit{{{latex_escape(family_label(family))}}}}} \\")
        vals = []
        for key, (text, half) in zip(keys, row_cells, strict=True):
            text = "--" if text == "–" else latex_escape(text)
            if half is not None:
                text += rf" $\pm$ {half}"
            rank = ranks.get((i, key))
            vals.append(rf"\textbf{{{text}}}" if rank == 1 else rf"\underline{{{text}}}" if rank == 2 else text)
        out.append(" & ".join(vals) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{latex_escape(caption(rows))}}}", r"\end{table}"]
    return "\n".join(out) + "\n"
