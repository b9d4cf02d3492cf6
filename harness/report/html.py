"""The HTML report: one self-contained page (plotly.js inlined, no network) built from runs.

Every string that comes from a suite, a model config, a dataset or a result file is
escaped with ``html.escape``; chart data is embedded as JSON with ``</`` broken up so it
cannot close the script element.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from harness.report import plots
from harness.report.qualitative import panel_items
from harness.report.rows import COLUMNS, FAMILY_LABEL, all_rows, best_values, fmt
from harness.results import Run, load_run

E = html.escape

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{margin-bottom:4px} .sub{color:#666;margin-top:0}
.note{background:#fff6dd;border:1px solid #e8d58a;padding:8px 12px;border-radius:6px;margin:12px 0}
.warn{background:#fde8e8;border:1px solid #e3a0a0;padding:8px 12px;border-radius:6px;margin:12px 0}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#f3f3f3;cursor:pointer;position:sticky;top:0} th.text,td.text{text-align:left}
th[aria-sort=ascending]::after{content:" ▲"} th[aria-sort=descending]::after{content:" ▼"}
td.best{font-weight:700;background:#e6f4ea} td.missing{color:#999;font-style:italic}
tr.group td{background:#eef;font-weight:600;text-align:left}
.chart{max-width:1100px} .qual{display:flex;flex-wrap:wrap;gap:8px;margin-bottom:16px}
.qual figure{margin:0;font-size:12px} .qual img{display:block;max-width:320px}
#filter{padding:4px 8px;width:320px} dl.env{display:grid;grid-template-columns:max-content auto;gap:2px 16px;font-size:13px}
dl.env dt{color:#555}
"""

JS = """
(function(){
  const table=document.getElementById('cells');
  const body=table.tBodies[0];
  document.getElementById('filter').addEventListener('input',function(e){
    const q=e.target.value.toLowerCase();
    for(const tr of body.rows){ if(tr.classList.contains('group')) continue;
      tr.style.display = tr.textContent.toLowerCase().includes(q) ? '' : 'none'; }
  });
  Array.from(table.tHead.rows[0].cells).forEach(function(th,i){
    th.addEventListener('click',function(){
      const asc = th.getAttribute('aria-sort')!=='ascending';
      Array.from(table.tHead.rows[0].cells).forEach(h=>h.removeAttribute('aria-sort'));
      th.setAttribute('aria-sort', asc?'ascending':'descending');
      const rows=Array.from(body.rows).filter(r=>!r.classList.contains('group'));
      Array.from(body.rows).filter(r=>r.classList.contains('group')).forEach(r=>r.remove());
      rows.sort(function(a,b){
        const x=a.cells[i].dataset.v, y=b.cells[i].dataset.v;
        const nx=x===''?NaN:Number(x), ny=y===''?NaN:Number(y);
        let c;
        if(!isNaN(nx)&&!isNaN(ny)) c=nx-ny; else if(isNaN(nx)&&!isNaN(ny)) return 1;
        else if(!isNaN(nx)&&isNaN(ny)) return -1; else c=String(x).localeCompare(String(y));
        return asc?c:-c;
      });
      rows.forEach(r=>body.appendChild(r));
    });
  });
  for(const el of document.querySelectorAll('div.chart[data-spec]')){
    const spec=JSON.parse(document.getElementById(el.dataset.spec).textContent);
    Plotly.newPlot(el, spec.data, spec.layout, {responsive:true, displaylogo:false});
  }
})();
"""


def _plot_safe(obj):
    """Entity-escape every string of a chart spec: plotly renders a subset of HTML tags in labels,
    and decodes entities, so names show verbatim and no tag from a name is ever interpreted."""
    if isinstance(obj, str):
        return E(obj, quote=False)
    if isinstance(obj, list):
        return [_plot_safe(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _plot_safe(v) for k, v in obj.items()}
    return obj


def _json_script(obj, element_id: str) -> str:
    text = json.dumps(_plot_safe(obj), allow_nan=False, default=str)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{E(element_id)}">{text}</script>'


OPTIONAL = ("published_mIoU", "delta_mIoU")  # shown only when some cell has a published reference


def visible_columns(rows: list[dict]):
    return [c for c in COLUMNS if c.key not in OPTIONAL or any(r.get(c.key) is not None for r in rows)]


def _table(rows: list[dict]) -> str:
    best = best_values(rows)
    columns = visible_columns(rows)
    head = "".join(f'<th class="{"text" if c.kind == "text" else "num"}" scope="col">{E(c.header)}</th>' for c in columns)
    out, family = [], object()
    for r in rows:
        if r["family"] != family:
            family = r["family"]
            out.append(f'<tr class="group"><td colspan="{len(columns)}">{E(FAMILY_LABEL.get(family, str(family)))}</td></tr>')
        tds = []
        for c in columns:
            v = r.get(c.key)
            cls = ["text" if c.kind == "text" else "num"]
            title = ""
            if v is None and c.kind != "text":
                text = r["why"].get(c.key, "")
                cls.append("missing")
                if r["status"] not in ("ok", None) and r.get("error"):
                    title = f' title="{E(str(r["error"])[:500])}"'
                dv = ""
            else:
                text = fmt(v, c.kind)
                if c.key == "mIoU" and r.get("mIoU_ci"):
                    lo, hi = r["mIoU_ci"]
                    if lo is not None and hi is not None:
                        text += f" [{100 * lo:.1f}, {100 * hi:.1f}]"
                if c.key == "model" and r.get("trust_remote_code"):
                    text += " (remote code)"
                if c.key in best and v == best[c.key] and r["status"] == "ok":
                    cls.append("best")
                dv = v if c.kind != "text" else str(v)
            tds.append(f'<td class="{" ".join(cls)}" data-v="{E(str(dv))}"{title}>{E(str(text))}</td>')
        out.append(f'<tr data-status="{E(str(r["status"]))}">' + "".join(tds) + "</tr>")
    return (f'<table id="cells"><thead><tr>{head}</tr></thead><tbody>{"".join(out)}</tbody></table>')


def _env_section(runs: list[Run]) -> str:
    parts = []
    for run in runs:
        env = run.meta.get("env") or {}
        items = "".join(f"<dt>{E(str(k))}</dt><dd>{E(str(v))}</dd>" for k, v in sorted(env.items()))
        weights = {}
        data = {}
        for c in run.cells.values():
            weights[str(c.get("model"))] = c.get("weights")
            if c.get("data"):
                data[str(c.get("dataset"))] = (c["data"].get("digest"), c["data"].get("num_samples"))
        w_rows = "".join(f"<dt>{E(k)}</dt><dd>{E(json.dumps(v, sort_keys=True))}</dd>" for k, v in sorted(weights.items()))
        d_rows = "".join(f"<dt>{E(k)}</dt><dd>{E(str(n))} samples, sha256 {E(str(d))}</dd>"
                         for k, (d, n) in sorted(data.items()))
        parts.append(f"<h3>{E(str(run.meta.get('run_id')))}</h3><p>command: <code>"
                     f"{E(' '.join(map(str, run.meta.get('command') or [])))}</code></p>"
                     f"<h4>environment</h4><dl class=env>{items}</dl><h4>weights</h4><dl class=env>{w_rows}</dl>"
                     f"<h4>data</h4><dl class=env>{d_rows}</dl>")
    return "".join(parts)


def _qualitative(runs: list[Run]) -> tuple[str, list[str]]:
    items, warnings = panel_items(runs)
    if not items:
        return "", warnings
    blocks = []
    for it in items[:12]:
        figs = [f'<figure><img alt="input" src="{it["input"]}"><figcaption>input</figcaption></figure>']
        if it["truth"]:
            figs.append(f'<figure><img alt="ground truth" src="{it["truth"]}"><figcaption>ground truth</figcaption></figure>')
        for name, uri in it["preds"]:
            figs.append(f'<figure><img alt="{E(name)}" src="{uri}"><figcaption>{E(name)}</figcaption></figure>')
        blocks.append(f"<h4>{E(str(it['dataset']))} / {E(str(it['id']))}</h4><div class=qual>{''.join(figs)}</div>")
    return "<h2>Predictions</h2><p>Overlays blended at 0.5 over the input.</p>" + "".join(blocks), warnings


def render(runs: list[Run], plotly_js: str) -> str:
    """The whole page as a string."""
    rows = all_rows(runs)
    pairs = [(r, c) for r, c in zip(rows, _cells_in_row_order(runs, rows), strict=True)]
    charts = [plots.accuracy_vs_latency(rows), plots.latency_by_model(rows), plots.memory_by_model(rows),
              plots.throughput_vs_batch(rows), plots.speedup_over_fp32(rows), *plots.iou_heatmaps(pairs)]
    chart_html = []
    for i, spec in enumerate(s for s in charts if s):
        chart_html.append(f'<div class="chart" id="chart{i}" data-spec="spec{i}"></div>{_json_script(spec, f"spec{i}")}')
    n_random = sum(1 for r in rows if r["weights"] == "random")
    notes = []
    if n_random:
        notes.append(f'<div class="note">{n_random} cell(s) use <b>random weights</b>: they measure speed and memory '
                     "only and show no accuracy. Accuracy needs real weights and real data: see the README, "
                     "section <i>Measuring accuracy</i>.</div>")
    failed = [r for r in rows if r["status"] not in ("ok", "skipped")]
    if failed:
        notes.append(f'<div class="warn">{len(failed)} cell(s) did not finish: '
                     + ", ".join(f"{E(str(r['model']))} {E(str(r['precision']))} ({E(str(r['status']))})" for r in failed[:20])
                     + ". Hover a missing value for the error.</div>")
    qual, warnings = _qualitative(runs)
    notes += [f'<div class="warn">{E(w)}</div>' for w in warnings]
    title = "segbench report: " + ", ".join(str(r.meta.get("run_id")) for r in runs)
    suites = ", ".join(sorted({str((r.meta.get("suite") or {}).get("name")) for r in runs}))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{E(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style>
<script>{plotly_js}</script></head>
<body><h1>segbench report</h1>
<p class="sub">suite(s): {E(suites)} · runs: {E(", ".join(str(r.meta.get("run_id")) for r in runs))} · {len(rows)} cells</p>
{"".join(notes)}
<h2>Comparison</h2>
<p><input id="filter" type="search" placeholder="filter rows (model, dataset, precision...)" aria-label="filter rows">
 Click a column header to sort. Best value per column in bold; latency is model forward per batch.</p>
{_table(rows)}
<h2>Charts</h2>{"".join(chart_html) or "<p>No chart: no cell finished.</p>"}
{qual}
<h2>Environment and provenance</h2>{_env_section(runs)}
<script>{JS}</script></body></html>
"""


def _cells_in_row_order(runs: list[Run], rows: list[dict]) -> list[dict]:
    index = {(r.meta.get("run_id"), cid): c for r in runs for cid, c in r.cells.items()}
    return [index[(row["run_id"], row["cell_id"])] for row in rows]


def write_report(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Write the report of ``run_dirs`` to ``out`` (a single offline HTML file); returns its path."""
    from plotly.offline import get_plotlyjs

    runs = [load_run(d) for d in run_dirs]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    page = render(runs, get_plotlyjs())
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out
