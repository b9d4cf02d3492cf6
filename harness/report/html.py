"""The HTML report: one self-contained page (plotly.js inlined, no network) built from runs.

Every string that comes from a suite, a model config, a dataset or a result file is escaped
with ``html.escape``; chart data is embedded as JSON in ``<script type="application/json">``
with ``<``, ``>`` and ``&`` written as ``\\u00XX`` so it can never close the element, and its
strings entity-escaped because plotly renders a subset of HTML in labels.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path

from harness.report import plots
from harness.report.rows import all_rows, best_values, columns, family_label, fmt
from harness.results import Run, load_run

E = html.escape
MEASURING_ACCURACY_NOTE = "accuracy needs real weights and data; see README 'Measuring accuracy'"
TEMPLATES = Path(__file__).with_name("templates")


def _asset(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def _plot_safe(obj):
    """Entity-escape every string of a chart spec so names show verbatim and no tag in them is interpreted."""
    if isinstance(obj, str):
        return E(obj, quote=False)
    if isinstance(obj, list):
        return [_plot_safe(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _plot_safe(v) for k, v in obj.items()}
    return obj


def json_script(obj: object, element_id: str) -> str:
    """``obj`` as a JSON data element that no string inside it can break out of."""
    text = json.dumps(_plot_safe(obj), allow_nan=False, default=str)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{E(element_id)}">{text}</script>'


def visible_columns(rows: list[dict], several_runs: bool) -> list:
    """The table's columns: ``run`` only for several runs; a quantity declared ``shown`` with another
    quantity's key (published reference, delta, Dice, ...) only when some row has that value."""
    cols = []
    for c in columns():
        if (c.key == "run" and not several_runs) or (c.optional and not any(r.get(c.key) for r in rows)):
            continue
        shown = c.quantity.shown if c.quantity is not None else "always"
        if shown != "always" and not any(r.get(shown) is not None for r in rows):
            continue
        cols.append(c)
    return cols


def _td(r: dict, c, best: dict[str, float]) -> str:
    v = r.get(c.key)
    cls = ["text" if c.kind == "text" else "num"]
    title = ""
    if v is None and c.kind != "text":
        text = r["why"].get(c.key, "–")
        cls.append("missing")
        if r["status"] != "ok" and r.get("error"):
            title = str(r["error"])[:2000]
        elif c.key == "published_mIoU" and r.get("published_note"):
            title = str(r["published_note"])
        elif r["status"] == "ok":
            title = text
        dv = ""
    else:
        text = fmt(v, c.kind) if c.kind != "text" else str(v if v is not None else "–")
        dv = str(v) if v is not None else ""
        if c.key == "mIoU" and r.get("mIoU_ci") and None not in r["mIoU_ci"]:
            lo, hi = r["mIoU_ci"]
            text += f" [{100 * lo:.1f}, {100 * hi:.1f}]"
            title = "95% bootstrap interval over images"
        if c.key.startswith("published_") and r.get("published_source"):
            title = f"source: {r['published_source']}"
            if r.get("published_checkpoint"):
                title += f"; checkpoint: {r['published_checkpoint']}"
        if c.key == "flags" and r.get("flag_reasons"):
            title = "; ".join(f"{k}: {v}" for k, v in r["flag_reasons"].items())
        if c.key == "model" and r.get("trust_remote_code"):
            text += " (remote code)"
        if c.key == "model" and r["status"] != "ok":
            text += f" [{r['status']}]"
        if c.key in best and v == best[c.key] and r["status"] == "ok":
            cls.append("best")
            title = title or "best in this column"
    title_attr = f' title="{E(title)}"' if title else ""
    return f'<td class="{" ".join(cls)}" data-v="{E(dv)}"{title_attr}>{E(text)}</td>'


def comparison_table(rows: list[dict], several_runs: bool = False) -> str:
    """The sortable comparison table: one row per cell, a group row before each family."""
    columns = visible_columns(rows, several_runs)
    best = best_values(rows, [c.key for c in columns])
    hints = {"max": ' title="higher is better"', "min": ' title="lower is better"', None: ""}
    head = "".join(f'<th class="{"text" if c.kind == "text" else "num"}" scope="col" data-key="{E(c.key)}"'
                   f"{hints[c.better]}>{E(c.header)}</th>" for c in columns)
    out, family = [], object()
    for r in rows:
        if r["family"] != family:
            family = r["family"]
            out.append(f'<tr class="group" data-family="{E(str(family))}"><td colspan="{len(columns)}">'
                       f"{E(family_label(family))}</td></tr>")
        tds = "".join(_td(r, c, best) for c in columns)
        out.append(f'<tr data-status="{E(str(r["status"]))}">{tds}</tr>')
    return f'<table id="cells"><thead><tr>{head}</tr></thead><tbody>{"".join(out)}</tbody></table>'


def _dl(items: dict) -> str:
    def show(v: object) -> str:
        return v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)

    return "<dl class=env>" + "".join(f"<dt>{E(str(k))}</dt><dd>{E(show(v))}</dd>" for k, v in items.items()) + "</dl>"


def provenance_section(runs: list[Run]) -> str:
    """Per run: the command, suite, environment fingerprint (every key), weights per model, data per dataset."""
    parts = []
    for run in runs:
        meta = run.meta
        env = meta.get("env") if isinstance(meta.get("env"), dict) else {}
        weights: dict[str, object] = {}
        data: dict[str, object] = {}
        for c in run.cells.values():
            if c.provenance.weights:
                weights.setdefault(str(c.identity.model), c.provenance.weights)
            d = c.provenance.data
            if isinstance(d, dict):
                files = d.get("files")
                skipped = d.get("skipped")
                data.setdefault(str(c.identity.dataset), {
                    "digest (sha256)": d.get("digest"), "samples": d.get("num_samples"),
                    "files": len(files) if isinstance(files, list) else files,
                    "skipped": len(skipped) if isinstance(skipped, list) else skipped})
        run_info = {k: meta.get(k) for k in ("suite_path", "suite_sha256", "created_at") if meta.get(k) is not None}
        command = meta.get("command")
        command_text = " ".join(map(str, command)) if isinstance(command, list) else str(command or "")
        parts.append(
            f"<section class=prov><h3>run {E(str(meta.get('run_id')))}</h3>"
            f"<p>command: <code>{E(command_text)}</code></p>{_dl(run_info)}"
            f"<h4>environment</h4>{_dl(dict(sorted(env.items())))}"
            f"<h4>weights provenance</h4>{_dl(dict(sorted(weights.items())))}"
            f"<h4>data</h4>{_dl(dict(sorted(data.items())))}</section>")
    return "".join(parts)


def _qualitative(runs: list[Run]) -> tuple[str, list[str]]:
    """Each task's qualitative panel (HTML) for the runs' cells of that task, and the warnings met."""
    from harness.tasks import TASKS, task_module

    parts, warnings = [], []
    for name in TASKS:
        if any(c.identity.task == name for r in runs for c in r.cells.values()):
            html_part, warns = task_module(name).report_qualitative(runs)
            parts.append(html_part)
            warnings.extend(warns)
    return "".join(parts), warnings


def _header(runs: list[Run], rows: list[dict]) -> str:
    statuses = Counter(str(r["status"]) for r in rows)
    status_text = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    lines = []
    for run in runs:
        suite = run.meta.get("suite") if isinstance(run.meta.get("suite"), dict) else {}
        env = run.meta.get("env") if isinstance(run.meta.get("env"), dict) else {}
        cells = list(run.cells.values())
        devices = sorted({str(c.identity.device) for c in cells})
        missing = len(run.missing)
        bits = [f"suite <b>{E(str(suite.get('name', '?')))}</b>", f"{len(cells)} cell(s)"]
        if missing:
            bits.append(f"{missing} planned cell(s) without a result")
        if run.meta.get("created_at"):
            bits.append(f"created {E(str(run.meta['created_at']))}")
        if devices:
            bits.append("device(s) " + E(", ".join(devices)))
        hw = env.get("gpu") or env.get("gpu_name") or env.get("cpu")
        if hw:
            bits.append(E(str(hw)))
        if env.get("git_sha"):
            bits.append(f"git {E(str(env['git_sha']))}")
        lines.append(f"<li><code>{E(str(run.meta.get('run_id')))}</code>: {' · '.join(bits)}</li>")
    return (f'<p class="sub">{len(runs)} run(s), {len(rows)} cell(s): {E(status_text)}</p>'
            f"<ul class=runs>{''.join(lines)}</ul>")


def task_panels(pairs: list[tuple[dict, object]]) -> list[dict]:
    """Each task's own chart panels (e.g. per-class IoU heatmaps), for the cells of that task."""
    from harness.tasks import TASKS, task_module

    specs = []
    for name in TASKS:
        mine = [(row, cell) for row, cell in pairs if row.get("task") == name]
        if mine:
            specs.extend(task_module(name).report_panels(mine))
    return specs


def render(runs: list[Run], plotly_js: str) -> str:
    """The whole page as a string; ``plotly_js`` is the plotly.js source inlined in the page."""
    rows = all_rows(runs)
    index = {(r.run_id, cid): c for r in runs for cid, c in r.cells.items()}
    pairs = [(row, index[(row["run"], row["cell_id"])]) for row in rows]
    charts = [*plots.accuracy_vs_latency(rows), plots.latency_by_model(rows), plots.memory_by_model(rows),
              plots.throughput_vs_batch(rows), plots.speedup_over_fp32(rows), *task_panels(pairs)]
    chart_html = [f'<div class="chart" id="chart{i}" data-spec="spec{i}"></div>{json_script(spec, f"spec{i}")}'
                  for i, spec in enumerate(s for s in charts if s)]
    notes = []
    n_random = sum(1 for r in rows if r["weights"] == "random")
    if n_random:
        notes.append(f'<div class="note" id="random-note">{n_random} cell(s) use <b>random weights</b>: they measure '
                     f"speed and memory only and show no accuracy ({E(MEASURING_ACCURACY_NOTE)}).</div>")
    failed = [r for r in rows if r["status"] not in ("ok", "skipped")]
    if failed:
        listed = ", ".join(f"{E(str(r['model']))} {E(str(r['precision']))} ({E(str(r['status']))})" for r in failed[:20])
        notes.append(f'<div class="warn">{len(failed)} cell(s) did not finish: {listed}'
                     f"{' …' if len(failed) > 20 else ''}. Hover a missing value for the error.</div>")
    qual, warnings = _qualitative(runs)
    notes += [f'<div class="warn sample-warning">{E(w)}</div>' for w in warnings[:50]]
    run_ids = ", ".join(str(r.meta.get("run_id")) for r in runs)
    several = len(runs) > 1
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{E("segbench report: " + run_ids)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data:; font-src data:">
<style>{_asset("report.css")}</style>
<script>{plotly_js}</script></head>
<body><h1>segbench report</h1>
{_header(runs, rows)}
{"".join(notes)}
<h2 id=comparison>Comparison</h2>
<p><input id="filter" type="search" placeholder="filter rows (model, dataset, precision, status...)"
 aria-label="filter rows"> <span id="count"></span></p>
<p class="help">Click a column header to sort (again to reverse, a third time for the grouped order).
Best value per column highlighted; latency is the model forward per batch; accuracy values are %.</p>
<div class="scroll">{comparison_table(rows, several)}</div>
<h2 id=charts>Charts</h2>{"".join(chart_html) or "<p>No chart: no cell finished.</p>"}
{qual}
<h2 id=provenance>Environment and provenance</h2>{provenance_section(runs)}
<script>{_asset("report.js")}</script></body></html>
"""


def write_report(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Write the report of ``run_dirs`` to ``out`` (a single offline HTML file, atomically); return its path."""
    from plotly.offline import get_plotlyjs

    runs = [load_run(d) for d in run_dirs]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    page = render(runs, get_plotlyjs())
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out
