"""``history report``: one offline HTML page (plotly.js inlined) with a chart per series and its steps.

Each chart plots one series over its runs' times: the values (runs whose cell was flagged by
the quality probe drawn as grey crosses), the mean of each segment between change points,
and a dashed line at each step (red for a regression, green for an improvement) with its
commit range and p-value in the hover text. Charts are grouped by cell, so a cell's accuracy
and its speed and memory series stand side by side. Strings from results are escaped as in
the run report (``harness.report.html``).
"""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path

import numpy as np

from harness.history.check import CheckResult, Step
from harness.history.quantities import QUANTITIES
from harness.history.store import Series
from harness.report.html import json_script

E = html.escape
COLORS = {"regression": "#c62828", "improvement": "#2e7d32"}
RENDER_JS = """
document.querySelectorAll("div.chart[data-spec]").forEach(function (el) {
  var spec = JSON.parse(document.getElementById(el.getAttribute("data-spec")).textContent);
  Plotly.newPlot(el, spec.data, spec.layout, {responsive: true, displaylogo: false});
});
"""
CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222} .sub{color:#555}
table{border-collapse:collapse;font-size:13px} th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}
th{background:#f3f3f3} td.regression{color:#c62828;font-weight:600} td.improvement{color:#2e7d32}
.chart{max-width:1100px;margin-bottom:12px} h3{margin-top:28px}"""


def _hover(s: Series, i: int) -> str:
    flags = f" · flags: {', '.join(s.flags[i])}" if s.flags[i] else ""
    return f"{s.run_ids[i]} · commit {(s.commits[i] or '?')[:12]}{flags}"


def _segments(s: Series, steps: list[Step]) -> dict:
    """A step trace of each segment's mean between change points."""
    bounds = [0, *sorted(st.change.index for st in steps), len(s)]
    xs, ys = [], []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        mean = float(np.mean(s.values[a:b]))
        xs += [s.times[a], s.times[b - 1], None]
        ys += [mean, mean, None]
    return {"type": "scatter", "mode": "lines", "name": "segment mean", "x": xs, "y": ys,
            "line": {"color": "#555", "width": 2}, "hoverinfo": "skip"}


def series_chart(s: Series, steps: list[Step]) -> dict:
    """The plotly spec of one series with its steps."""
    q = QUANTITIES.get(s.quantity)
    clean = [i for i in range(len(s)) if not s.flags[i]]
    flagged = [i for i in range(len(s)) if s.flags[i]]
    data = [{"type": "scatter", "mode": "markers", "name": "run", "x": [s.times[i] for i in clean],
             "y": [float(s.values[i]) for i in clean], "text": [_hover(s, i) for i in clean],
             "hoverinfo": "x+y+text", "marker": {"size": 6, "color": "#1565c0"}}]
    if flagged:
        data.append({"type": "scatter", "mode": "markers", "name": "flagged run", "x": [s.times[i] for i in flagged],
                     "y": [float(s.values[i]) for i in flagged], "text": [_hover(s, i) for i in flagged],
                     "hoverinfo": "x+y+text", "marker": {"size": 8, "symbol": "x", "color": "#999"}})
    data.append(_segments(s, steps))
    shapes = []
    for st in steps:
        before, after = st.commit_range
        x = s.times[st.change.index]
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": x, "x1": x, "y0": 0, "y1": 1,
                       "line": {"color": COLORS[st.kind], "dash": "dash", "width": 2}})
        data.append({"type": "scatter", "mode": "markers", "name": st.kind, "showlegend": False,
                     "x": [x], "y": [st.change.mean_after], "marker": {"size": 12, "color": COLORS[st.kind],
                                                                        "symbol": "diamond"},
                     "hoverinfo": "text", "text": [f"{st.kind} {100 * st.change.forward_change:+.1f}% "
                                                   f"(p={st.change.pvalue:.1g}) · commits "
                                                   f"{(before or '?')[:12]}..{(after or '?')[:12]}"]})
    unit = q.unit if q else ""
    return {"data": data, "layout": {
        "title": {"text": f"{s.quantity} · {s.machine}"}, "height": 320, "shapes": shapes,
        "xaxis": {"title": {"text": "run time (UTC)"}, "type": "date"},
        "yaxis": {"title": {"text": f"{s.quantity} ({unit})" if unit else s.quantity}, "automargin": True},
        "margin": {"t": 40, "l": 70, "r": 20, "b": 50}, "legend": {"orientation": "h", "y": -0.25}}}


def _steps_table(result: CheckResult) -> str:
    if not result.steps:
        return "<p id=nosteps>No change point in any series.</p>"
    rows = []
    for st in result.steps:
        before, after = st.commit_range
        rows.append(f"<tr><td class={st.kind}>{st.kind}{' (recent)' if st.recent else ''}</td>"
                    f"<td>{E(st.series.cell_label)}</td><td>{E(st.series.quantity)}</td><td>{E(st.series.machine)}</td>"
                    f"<td><code>{E((before or '?')[:12])}..{E((after or '?')[:12])}</code></td>"
                    f"<td>{100 * st.change.forward_change:+.1f}%</td><td>{st.change.pvalue:.1g}</td></tr>")
    return ("<table id=steps><thead><tr><th>step</th><th>cell</th><th>quantity</th><th>machine</th><th>commits</th>"
            "<th>change</th><th>p</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def render(result: CheckResult, plotly_js: str, title: str = "segbench history") -> str:
    """The page as a string; ``plotly_js`` is inlined."""
    by_cell: dict[str, list[Series]] = defaultdict(list)
    for s in result.series:
        by_cell[s.cell_label].append(s)
    sections, k = [], 0
    for label in sorted(by_cell):
        charts = []
        for s in sorted(by_cell[label], key=lambda x: (x.machine, x.quantity)):
            steps = [st for st in result.steps if st.series is s]
            charts.append(f'<div class="chart" id="chart{k}" data-spec="spec{k}"></div>'
                          f"{json_script(series_chart(s, steps), f'spec{k}')}")
            k += 1
        sections.append(f"<h3>{E(label)}</h3>{''.join(charts)}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{E(title)}</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data:">
<style>{CSS}</style><script>{plotly_js}</script></head>
<body><h1>{E(title)}</h1>
<p class=sub>{len(result.series)} series, {sum(len(s) for s in result.series)} points: {E(result.verdict)}</p>
<h2>Steps</h2>{_steps_table(result)}
<h2>Series</h2>{"".join(sections) or "<p>No series recorded.</p>"}
<script>{RENDER_JS}</script></body></html>
"""


def write_report(result: CheckResult, out: str | Path, title: str = "segbench history") -> Path:
    """Write the page to ``out`` atomically (plotly imported here, for its bundled plotly.js)."""
    from plotly.offline import get_plotlyjs

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(render(result, get_plotlyjs(), title), encoding="utf-8")
    tmp.replace(out)
    return out
