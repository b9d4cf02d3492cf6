"""Paper tables: LaTeX (booktabs), Markdown and CSV from run results.

Best value per ranked column in bold and the second underlined; models grouped by family;
mIoU shown as mean ± half-width of its 95% bootstrap interval when the result carries one,
latency as mean ± std over repeats when the cell was repeated. Every string is escaped for
the output format.
"""

from __future__ import annotations

import csv
import io

from harness.report.rows import COLUMNS, FAMILY_LABEL, all_rows
from harness.results import Run

DEFAULT_COLUMNS = ["model", "precision", "mIoU", "aAcc", "mAcc", "latency_p50", "throughput", "params", "gflops"]
BY_KEY = {c.key: c for c in COLUMNS}
FORMATS = ("latex", "markdown", "csv")

LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def markdown_escape(text: str) -> str:
    out = str(text).replace("\\", "\\\\")
    for ch in "|`*_[]<>#":
        out = out.replace(ch, "\\" + ch)
    return out.replace("\n", " ")


def _number(row: dict, key: str, kind: str, decimals: int) -> str:
    v = row.get(key)
    if v is None:
        return "–"
    scale = 100.0 if kind == "pct" else 1.0
    text = f"{scale * v:.{decimals}f}"
    if key == "mIoU" and row.get("mIoU_ci") and None not in row["mIoU_ci"]:
        lo, hi = row["mIoU_ci"]
        text += f" ± {scale * (hi - lo) / 2:.{decimals}f}"
    if key == "latency_p50" and row.get("run_to_run_std") is not None:
        text += f" ± {row['run_to_run_std']:.{decimals}f}"
    return text


def _ranks(rows: list[dict], columns: list[str]) -> dict[tuple[int, str], int]:
    """(row index, column) -> 1 for best, 2 for second best, among ok rows."""
    ranks = {}
    for key in columns:
        col = BY_KEY[key]
        if not col.better:
            continue
        vals = sorted({r[key] for r in rows if r["status"] == "ok" and r.get(key) is not None},
                      reverse=col.better == "max")
        for i, r in enumerate(rows):
            if r["status"] == "ok" and r.get(key) is not None and r[key] in vals[:2]:
                ranks[(i, key)] = vals.index(r[key]) + 1
    return ranks


def caption(rows: list[dict]) -> str:
    def uniq(k):
        return ", ".join(sorted({str(r.get(k)) for r in rows if r.get(k) is not None})) or "-"

    return (f"Device: {uniq('device')}; precision: {uniq('precision')}; protocol: {uniq('protocol')}; "
            f"dataset: {uniq('dataset')}. Latency: model forward per batch, median (ms).")


def render_table(runs: list[Run], fmt: str = "markdown", columns: list[str] | None = None, decimals: int = 1,
                 group: bool = True) -> str:
    """The table of ``runs`` in ``fmt`` (latex, markdown or csv)."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    columns = columns or DEFAULT_COLUMNS
    unknown = [c for c in columns if c not in BY_KEY]
    if unknown:
        raise ValueError(f"unknown column(s) {', '.join(unknown)}; known: {', '.join(BY_KEY)}")
    rows = all_rows(runs)
    for r, cell in zip(rows, _cells(runs, rows), strict=True):
        rtr = cell.get("run_to_run") or {}
        r["run_to_run_std"] = rtr.get("std_ms")
    ranks = _ranks(rows, columns)
    headers = [BY_KEY[c].header for c in columns]

    def cells_of(i: int, r: dict) -> list[str]:
        out = []
        for key in columns:
            col = BY_KEY[key]
            out.append(str(r.get(key) or "–") if col.kind == "text" else _number(r, key, col.kind, decimals))
        return out

    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["family"] + headers)
        for i, r in enumerate(rows):
            w.writerow([FAMILY_LABEL.get(r["family"], r["family"])] + cells_of(i, r))
        return buf.getvalue()

    if fmt == "markdown":
        lines = ["| " + " | ".join(markdown_escape(h) for h in headers) + " |",
                 "|" + "|".join("---" if BY_KEY[c].kind == "text" else "---:" for c in columns) + "|"]
        family = object()
        for i, r in enumerate(rows):
            if group and r["family"] != family:
                family = r["family"]
                lines.append(f"| **{markdown_escape(FAMILY_LABEL.get(family, family))}** |" + " |" * (len(columns) - 1))
            vals = []
            for key, text in zip(columns, cells_of(i, r), strict=True):
                text = markdown_escape(text)
                rank = ranks.get((i, key))
                vals.append(f"**{text}**" if rank == 1 else f"<u>{text}</u>" if rank == 2 else text)
            lines.append("| " + " | ".join(vals) + " |")
        return "\n".join(lines) + "\n\n" + markdown_escape(caption(rows)) + "\n"

    align = "".join("l" if BY_KEY[c].kind == "text" else "r" for c in columns)
    out = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{align}}}", r"\toprule",
           " & ".join(latex_escape(h) for h in headers) + r" \\", r"\midrule"]
    family = object()
    for i, r in enumerate(rows):
        if group and r["family"] != family:
            if i > 0:
                out.append(r"\midrule")
            family = r["family"]
        vals = []
        for key, text in zip(columns, cells_of(i, r), strict=True):
            text = latex_escape(text).replace("±", r"$\pm$").replace("–", "--")
            rank = ranks.get((i, key))
            vals.append(rf"\textbf{{{text}}}" if rank == 1 else rf"\underline{{{text}}}" if rank == 2 else text)
        out.append(" & ".join(vals) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{latex_escape(caption(rows))}}}", r"\end{table}"]
    return "\n".join(out) + "\n"


def _cells(runs: list[Run], rows: list[dict]) -> list[dict]:
    index = {(r.meta.get("run_id"), cid): c for r in runs for cid, c in r.cells.items()}
    return [index[(row["run_id"], row["cell_id"])] for row in rows]
