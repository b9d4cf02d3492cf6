"""The report's robustness section and reliability diagrams, views of segmentation cell results.

Cells are grouped by run, dataset, protocol, precision, device, batch size and runtime (everything
but the model and the input corruption); a group with corrupted cells gets, from
:func:`harness.robustness.summary.summarize_robustness` over its cells' mIoU:

- a table per model: clean mIoU, mPC (mean over corruptions of the mean over severities), relative
  robustness (mPC / clean), and mCE / relative mCE against the suite's reference model when the
  group has it (``corruptions.reference`` of the run's suite);
- every rise of mIoU from one severity to the next (severity 0 = clean), listed rather than assumed away;
- a corruption x model heatmap (mean mIoU, relative robustness, CE) and mIoU-vs-severity curves;
- the paper table of published robustness figures of the group's registry models
  (:mod:`harness.robustness.published`), or why there are none.

Reliability diagrams: one per calibrated clean cell (``accuracy.metrics.calibration``).
Units: mIoU and relative robustness in %, CE x 100 (100 = the reference).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

from harness.cell_result import CellResult
from harness.report.robustness_plots import corruption_heatmap, reliability_diagram, severity_curves
from harness.report.rows import precision_label, protocol_label

E = html.escape
MAX_RELIABILITY = 12  # reliability diagrams shown at most


@dataclass
class Group:
    """The cells of one robustness comparison: same run and settings, models x corruption points."""

    run_id: str
    dataset: str
    settings: str  # protocol · precision · device · batch · runtime, for the heading
    cells: list[CellResult] = field(default_factory=list)
    reference: str | None = None  # the suite's reference model, when the group has cells of it


def _key(cell: CellResult) -> tuple:
    i = cell.identity
    return (str(i.dataset), protocol_label(cell), precision_label(cell), str(i.device), i.batch_size, str(i.runtime))


def robustness_groups(runs: list) -> list[Group]:
    """The groups of the runs' segmentation cells that hold corrupted cells, in first-seen order."""
    out = []
    for run in runs:
        suite = run.meta.get("suite") if isinstance(run.meta.get("suite"), dict) else {}
        reference = (suite.get("corruptions") or {}).get("reference")
        by: dict[tuple, list[CellResult]] = {}
        for cell in run.cells.values():
            if cell.identity.task == "segmentation":
                by.setdefault(_key(cell), []).append(cell)
        for key, cells in by.items():
            corrupted = {c.identity.model for c in cells if c.identity.corruption is not None}
            if corrupted:
                settings = " · ".join(str(k) for k in (key[1], key[2], key[3], f"batch {key[4]}", key[5]))
                out.append(Group(run.run_id, key[0], settings, [c for c in cells if c.identity.model in corrupted],
                                 reference if reference in corrupted else None))
    return out


def records(cells: list[CellResult]) -> list[dict]:
    """One :func:`summarize_robustness` record per cell (mIoU None for a cell that did not finish)."""
    out = []
    for c in cells:
        point = c.identity.corruption or {}
        miou = (c.accuracy.metrics or {}).get("mIoU") if c.ok else None
        out.append({"model": str(c.identity.model), "corruption": point.get("name"), "severity": point.get("severity"),
                    "mIoU": miou})
    return out


def _pct(v, scale: float = 100.0) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{scale * v:.1f}"


def summary_table(summary: dict) -> str:
    """Per model: clean mIoU, mPC, relative robustness and, with a reference, mCE and relative mCE (HTML)."""
    ref = summary.get("reference")
    head = ["model", "clean mIoU (%)", "mPC (%)", "relative (%)"] + (["mCE (x100)", "rel. mCE (x100)"] if ref else [])
    rows = []
    for model, m in summary["models"].items():
        vals = [m["clean_mIoU"], m["mPC"], m["relative"]] + ([m["mCE"], m["relative_mCE"]] if ref else [])
        name = E(model) + (" (reference)" if model == ref else "")
        rows.append(f"<tr><td class=text>{name}</td>" + "".join(f"<td class=num>{_pct(v)}</td>" for v in vals)
                    + "</tr>")
    ths = "".join(f'<th class="{"text" if i == 0 else "num"}">{E(h)}</th>' for i, h in enumerate(head))
    return f'<table class="robust"><thead><tr>{ths}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def rises_html(rises: list[dict]) -> str:
    """The severity-ordering check: every rise of mIoU with severity, or that there is none."""
    if not rises:
        return "<p class=help>Severity ordering: mIoU never rises from one severity to the next (0 = clean).</p>"
    items = "".join(f"<li>{E(r['model'])}, {E(r['corruption'])}: severity {r['from_severity']} → "
                    f"{r['to_severity']}, mIoU {_pct(r['from_mIoU'])} → {_pct(r['to_mIoU'])}</li>" for r in rises)
    return (f'<div class="warn severity-rise">mIoU rises with severity in {len(rises)} place(s) (severity 0 = '
            f"clean; on few images one draw of a corruption can help a class):<ul>{items}</ul></div>")


def published_table(group: Group, summary: dict, shipped: list[dict] | None = None) -> str:
    """Published figures of the group's registry models beside the measured ones, or why there are none."""
    from harness.robustness.published import lookup, not_applicable

    parts = []
    for model_ref, model in {(str(c.identity.model_ref), str(c.identity.model)) for c in group.cells}:
        entry = lookup(model_ref, group.dataset, shipped)
        mine = summary["models"].get(model)
        if entry is None or mine is None:
            continue
        cells = "".join(f"<tr><td class=text>{E(name)}</td><td class=num>{_pct(v)}</td><td class=num>"
                        f"{_pct(mine['per_corruption'].get(name, {}).get('mean_mIoU'))}</td></tr>"
                        for name, v in entry["mIoU"].items())
        parts.append(f"<h4>{E(model)}: {E(entry['checkpoint'])}</h4><p class=help>source: {E(entry['source'])}; "
                     f"protocol: {E(entry['published_protocol'])}</p><table class=robust><thead><tr>"
                     "<th class=text>corruption</th><th class=num>published mIoU (%)</th>"
                     "<th class=num>measured mean mIoU (%)</th></tr></thead><tbody><tr><td class=text>clean</td>"
                     f"<td class=num>{_pct(entry['clean_mIoU'])}</td><td class=num>{_pct(mine['clean_mIoU'])}</td>"
                     f"</tr>{cells}</tbody></table>")
    if parts:
        return "".join(parts)
    known = "".join(f"<li>{E(n['source'])} ({E(n['checkpoint'])}): {E(n['why'])}</li>" for n in not_applicable())
    return ("<p class=help>No model of this comparison has published corruption-robustness figures for its "
            f"checkpoint on {E(group.dataset)}. Published tables that exist evaluate other checkpoints:</p>"
            f"<ul>{known}</ul>")


def _charts(summary: dict, prefix: str) -> str:
    from harness.report.html import json_script

    specs = [corruption_heatmap(summary, "mean_mIoU"), corruption_heatmap(summary, "relative"),
             corruption_heatmap(summary, "CE") if summary.get("reference") else None, severity_curves(summary)]
    more = [severity_curves(summary, name) for name in summary["corruptions"]]
    out = []
    for i, spec in enumerate(s for s in specs + more if s):
        block = f'<div class="chart" id="{prefix}c{i}" data-spec="{prefix}s{i}"></div>{json_script(spec, f"{prefix}s{i}")}'
        out.append(block)
    head = len([s for s in specs if s])
    return "".join(out[:head]) + (f"<details><summary>mIoU vs severity per corruption</summary>{''.join(out[head:])}"
                                  "</details>" if out[head:] else "")


def robustness_section(runs: list) -> tuple[str, list[str]]:
    """The robustness section (HTML) of the runs' corrupted cells, and warnings; empty when none."""
    from harness.robustness.summary import severity_rises, summarize_robustness

    blocks, warnings = [], []
    for k, group in enumerate(robustness_groups(runs)):
        try:
            summary = summarize_robustness(records(group.cells), group.reference)
        except ValueError as e:  # two cells of one model at one point: the group cannot be summarised
            warnings.append(f"robustness of {group.dataset} ({group.settings}, run {group.run_id}): {e}")
            continue
        blocks.append(f"<h3>{E(group.dataset)} · {E(group.settings)} · run {E(group.run_id)}</h3>"
                      + summary_table(summary) + rises_html(severity_rises(summary)) + _charts(summary, f"rob{k}")
                      + "<h4>Published robustness</h4>" + published_table(group, summary))
    if not blocks:
        return "", warnings
    intro = ("<p class=help>mIoU on corrupted copies of the input images (imagecorruptions, seeded per image), "
             "mean over severities per corruption; mPC: mean over corruptions; relative: mPC / clean mIoU; "
             "CE: summed error (1 - mIoU) over severities divided by the reference model's (x100). "
             "See docs/ROBUSTNESS.md.</p>")
    return "<h2 id=robustness>Robustness</h2>" + intro + "".join(blocks), warnings


def reliability_panels(pairs: list) -> list[dict]:
    """Reliability diagrams of calibrated cells on clean images (one per cell, at most MAX_RELIABILITY)."""
    specs = []
    for row, cell in pairs:
        metrics = cell.accuracy.metrics or {}
        cal = metrics.get("calibration")
        if row["status"] != "ok" or cell.identity.corruption is not None or not isinstance(cal, dict):
            continue
        spec = reliability_diagram({"reliability": cal.get("reliability"), "ECE": metrics.get("ECE")},
                                   f"{row['model']} · {row['dataset']} · {row['precision']}")
        if spec is not None:
            specs.append(spec)
        if len(specs) >= MAX_RELIABILITY:
            break
    return specs
