"""Human views of the regression verdicts of ``compare``, ``ab`` and ``history check``.

Each view reads the command's JSON document (``Comparison.to_json``, ``ABResult.to_json``,
``CheckResult.to_json``), so what a person reads is what a script gets with ``--json``: the
verdict first, then one aligned table, then the lists (problems, unmatched cells, notes).
Values are shown with the display and unit of their quantity (:mod:`harness.quantities`).
"""

from __future__ import annotations

from harness.cli_output import Column, Style, bullet_list, grouped_table, render_table, wrap
from harness.cli_views import DASH, value_text


def _paint_verdict(style: Style, text: str, raw: str) -> str:
    return style.verdict(text) if raw.startswith(("regression", "inconclusive")) else text


def _head(style: Style, verdict: str, text: str, width: int) -> list[str]:
    first, *rest = wrap(f"{verdict}  {text}", width)
    return [first.replace(verdict, style.verdict(verdict), 1), *rest]


def _quantity(name: str):
    """The declared quantity of a findings' metric (a column name) or a series' key, or None."""
    from harness.quantities import all_quantities

    return next((q for q in all_quantities() if name in (q.key, q.column)), None)


def _num(v, name: str) -> str:
    q = _quantity(name)
    if v is None:
        return DASH
    return value_text(q, v, decimals=2) if q is not None else f"{v:.4g}"


def _finding_row(f: dict) -> list[str]:
    from harness.report.compare import _fmt

    q = _quantity(f["metric"])
    return [q.key if q is not None else f["metric"], _fmt(f["metric"], f["baseline"], "value"),
            _fmt(f["metric"], f["current"], "value"), _fmt(f["metric"], f["change"], "change"),
            _fmt(f["metric"], f["threshold"], "threshold"), "regression" if f["regression"] else "ok",
            f.get("note") or ""]


def compare_lines(doc: dict, style: Style, width: int) -> list[str]:
    """``segbench compare``: verdict and counts, the thresholds, every check (regressions first), lists."""
    from harness.report.compare import threshold_text

    base = (doc.get("baseline") or {}).get("run_id")
    cur = (doc.get("current") or {}).get("run_id")
    text = (f"baseline {base} vs current {cur}: {doc.get('matched', 0)} paired, {doc.get('compared', 0)} compared, "
            f"{doc.get('regressions', 0)} regression(s)" if "findings" in doc else "")
    lines = _head(style, doc["verdict"], text, width)
    if doc.get("thresholds"):
        lines += wrap(f"thresholds: {threshold_text(doc['thresholds'])}", width)
    findings = doc.get("findings") or []
    if findings:
        cols = [Column("check", min_width=8), Column("baseline", align="right"), Column("current", align="right"),
                Column("change", align="right"), Column("fails beyond", align="right", min_width=7),
                Column("verdict", paint=_paint_verdict), Column("note", min_width=8)]
        cells = sorted(dict.fromkeys(f["cell"] for f in findings),
                       key=lambda c: not any(f["regression"] for f in findings if f["cell"] == c))
        groups = [(cell, [_finding_row(f) for f in findings if f["cell"] == cell]) for cell in cells]
        lines += [""] + grouped_table(cols, groups, width, style)
        notes = [f"{f['cell']} · {f['metric']}: {f['note']}" for f in findings if f.get("note") and f["regression"]]
        lines += [""] + bullet_list("regressions explained", notes, width, style=style) if notes else []
    for title, key in (("problems", "problems"), ("timings not judged (flagged measurement)", "unjudged"),
                       ("only in the baseline", "only_baseline"), ("only in the current run", "only_current"),
                       ("notes", "notes")):
        if doc.get(key):
            lines += [""] + bullet_list(title, doc[key], width, style=style)
    return lines


def ab_lines(doc: dict, style: Style, width: int) -> list[str]:
    """``segbench ab``: verdict, sides and rounds, a row per paired cell, flagged rounds, problems."""
    import numpy as np

    t, q = doc["settings"], doc["quantity"]
    lines = _head(style, doc["verdict"], f"{doc['quantity']} of B/A over {len(doc['order'])} interleaved round(s) "
                                          f"({' '.join(doc['order']) or DASH}), threshold {t['threshold']:g}", width)
    lines += wrap(f"A: {doc['side_a']}", width) + wrap(f"B: {doc['side_b']}", width)
    if doc["cells"]:
        cols = [Column("cell", min_width=16), Column("A median", align="right"), Column("B median", align="right"),
                Column("B/A", align="right"), Column("interval", min_width=8), Column("p (B worse)", align="right"),
                Column("verdict", paint=_paint_verdict)]
        rows = []
        for c in doc["cells"]:
            a, b = [v for v in c["a"] if v is not None], [v for v in c["b"] if v is not None]
            ci = f"[{c['ci'][0]:.3f}, {c['ci'][1]:.3f}]" if c.get("ci") else DASH
            rows.append([c["cell"], _num(float(np.median(a)) if a else None, q),
                         _num(float(np.median(b)) if b else None, q),
                         DASH if c["ratio"] is None else f"{c['ratio']:.3f}", ci,
                         DASH if c["p_worse"] is None else f"{c['p_worse']:.2g}", c["verdict"]])
        lines += [""] + render_table(cols, rows, width, style)
        lines += [""] + bullet_list("reasons", [f"{c['cell']}: {c['reason']}" for c in doc["cells"]], width,
                                    style=style)
    flagged = doc.get("flagged_rounds") or {}
    if any(flagged.values()):
        lines += [""] + wrap(f"flagged rounds: A {flagged.get('A', 0)}, B {flagged.get('B', 0)} of "
                             f"{len(doc['order'])} (busy host, CPU steal or throttling; --json has each round)", width)
    if doc.get("problems"):
        lines += [""] + bullet_list("problems", doc["problems"], width, style=style)
    return lines


def _short(sha: str | None) -> str:
    return (sha or "?")[:10]


def _step_row(s: dict) -> list[str]:
    kind = ("regression" if s["recent"] else "old regression") if s["kind"] == "regression" else s["kind"]
    return [kind, s["quantity"], f"{_short(s['commit_before'])}..{_short(s['commit_after'])}",
            _num(s["mean_before"], s["quantity"]), _num(s["mean_after"], s["quantity"]),
            DASH if s["change"] is None else f"{100 * s['change']:+.1f}%", f"{s['pvalue']:.1g}"]


def history_lines(doc: dict, style: Style, width: int) -> list[str]:
    """``segbench history check``: verdict and counts, a row per step (failing ones first), lists."""
    t = doc["settings"]
    lines = _head(style, doc["verdict"], f"{doc['series']} series, {doc['points']} points; a regression among the "
                                         f"{t['recent']} newest points of a series fails", width)
    steps = sorted(doc.get("steps") or [], key=lambda s: (not (s["kind"] == "regression" and s["recent"]),
                                                          s["kind"], s["cell"], s["quantity"], s["index"]))
    if steps:
        cols = [Column("step", paint=_paint_verdict), Column("quantity"), Column("commits", min_width=12),
                Column("before", align="right"), Column("after", align="right"), Column("change", align="right"),
                Column("p", align="right")]
        keys = list(dict.fromkeys((s["cell"], s["machine"]) for s in steps))
        groups = [(f"{cell} · {machine}",
                   [_step_row(s) for s in steps if (s["cell"], s["machine"]) == (cell, machine)])
                  for cell, machine in keys]
        lines += [""] + grouped_table(cols, groups, width, style)
    else:
        lines += ["", "no change point in any series"]
    for title, key in (("problems", "problems"), ("too short to check", "too_short")):
        if doc.get(key):
            lines += [""] + bullet_list(title, doc[key], width, style=style)
    return lines
