"""The robustness views: the report's section (summary table against values computed here by hand,
every severity rise listed, heatmaps and curves, the published table or why it is empty), the
reliability diagrams, and the table / compare / DataFrame views of corrupted and calibrated cells."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.cell_result import Accuracy, CellResult, Identity, Latency, Provenance
from harness.report.html import render
from harness.report.robustness import published_table, robustness_groups
from harness.report.rows import all_rows, cell_row
from harness.results import load_run, to_dataframe, write_json_atomic
from harness.robustness.published import check_entry, lookup, not_applicable
from harness.robustness.summary import severity_rises, summarize_robustness

# model -> clean mIoU, then (corruption, severity) -> mIoU; "cnn" rises on fog from severity 1 to 2
MIOU = {"dpt": (0.6, {("fog", 1): 0.5, ("fog", 2): 0.4, ("gaussian_noise", 1): 0.45, ("gaussian_noise", 2): 0.3}),
        "cnn": (0.5, {("fog", 1): 0.3, ("fog", 2): 0.35, ("gaussian_noise", 1): 0.2, ("gaussian_noise", 2): 0.1})}
RELIABILITY = {"edges": [0, 0.5, 1.0], "count": [10, 30], "confidence": [0.4, 0.8], "accuracy": [0.3, 0.9]}


def cell(model: str, point: tuple | None, miou: float, calibrated: bool = False) -> CellResult:
    corruption = None if point is None else {"name": point[0], "severity": point[1], "seed": 0}
    metrics = {"mIoU": miou, "aAcc": 0.8, "mBIoU": miou / 2, "trimap_mIoU": {"5": miou / 3}}
    if calibrated:
        metrics.update(ECE=0.07, MCE=0.2, NLL=1.3, Brier=0.4,
                       calibration={"accuracy": 0.8, "pixels": 40, "n_bins": 2, "reliability": RELIABILITY})
    else:
        metrics["calibration_note"] = "cannot be calibrated: the model outputs label maps"
    tag = "" if point is None else f"__{point[0]}-{point[1]}"
    return CellResult(cell_id=f"{model}{tag}", status="ok",
                      identity=Identity(model=model, model_ref=model, dataset="ade20k", device="cpu", precision="fp32",
                                        amp="autocast", batch_size=1, runtime="pytorch",
                                        protocol={"mode": "whole", "upsample": "bilinear"}, corruption=corruption),
                      provenance=Provenance(family="dpt" if model == "dpt" else "cnn", weights={"source": "hub"}),
                      accuracy=Accuracy(metrics=metrics),
                      latency=Latency(note="not measured on corrupted images: speed does not depend on content")
                      if point else Latency(forward_ms={"p50": 10.0, "mean": 10.0, "n": 3, "samples": [9, 10, 11]}))


def write_run(path: Path, reference: str | None = "cnn") -> Path:
    cells = [cell(m, None, clean, calibrated=m == "dpt") for m, (clean, _) in MIOU.items()]
    cells += [cell(m, p, v) for m, (_, pts) in MIOU.items() for p, v in pts.items()]
    write_json_atomic(path / "run.json", {"schema_version": 2, "run_id": path.name, "cells": [c.cell_id for c in cells],
                                          "suite": {"name": "r", "corruptions": {"reference": reference}}})
    for c in cells:
        write_json_atomic(path / "cells" / f"{c.cell_id}.json", c.to_dict())
    return path


def by_hand(model: str, ref: str = "cnn") -> dict:
    """mPC, relative robustness and mCE of the module docstring of harness.robustness.summary."""
    clean, pts = MIOU[model]
    rclean, rpts = MIOU[ref]
    names = ("fog", "gaussian_noise")
    mean = {n: (pts[n, 1] + pts[n, 2]) / 2 for n in names}
    ce = {n: ((1 - pts[n, 1]) + (1 - pts[n, 2])) / ((1 - rpts[n, 1]) + (1 - rpts[n, 2])) for n in names}
    rce = {n: ((clean - pts[n, 1]) + (clean - pts[n, 2])) / ((rclean - rpts[n, 1]) + (rclean - rpts[n, 2]))
           for n in names}
    mpc = sum(mean.values()) / 2
    return {"mPC": mpc, "relative": mpc / clean, "mCE": sum(ce.values()) / 2, "relative_mCE": sum(rce.values()) / 2}


@pytest.fixture
def run(tmp_path):
    return load_run(write_run(tmp_path / "run1"))


def test_section_table_matches_values_by_hand(run):
    page = render([run], "")
    section = page[page.index("<h2 id=robustness>"):page.index("<h2 id=provenance>")]
    for model in MIOU:
        want = by_hand(model)
        row = re.search(rf"<tr><td class=text>{model}( \(reference\))?</td>(.*?)</tr>", section).group(2)
        nums = [float(x) for x in re.findall(r"<td class=num>([\d.]+)</td>", row)]
        assert nums == pytest.approx([100 * MIOU[model][0], 100 * want["mPC"], 100 * want["relative"],
                                      100 * want["mCE"], 100 * want["relative_mCE"]], abs=0.051)
    assert "cnn (reference)" in section
    # the rise of cnn on fog is listed with its values
    assert "cnn, fog: severity 1 → 2, mIoU 30.0 → 35.0" in section and "1 place(s)" in section
    # heatmaps (mean, relative, CE) and curves are embedded as chart specs
    specs = [json.loads(m) for m in re.findall(r'<script type="application/json" id="rob0s\d+">(.*?)</script>',
                                                  section)]
    titles = [s["layout"]["title"]["text"] for s in specs]
    assert any(t.startswith("Corruption error") and "reference cnn" in t for t in titles)
    assert "mIoU vs severity (mean over corruptions)" in titles and "mIoU vs severity (fog)" in titles
    assert "No model of this comparison has published" in section and "SegFormer" in section


def test_without_reference_there_is_no_ce(tmp_path):
    page = render([load_run(write_run(tmp_path / "r", reference=None))], "")
    section = page[page.index("<h2 id=robustness>"):page.index("<h2 id=provenance>")]
    assert "mCE" not in section.split("<h3>")[1].split("</table>")[0] and "Corruption error" not in section


def test_severity_rises_are_found_not_assumed():
    recs = [{"model": "m", "corruption": None, "severity": None, "mIoU": 0.3},
            {"model": "m", "corruption": "shot_noise", "severity": 1, "mIoU": 0.35},  # above clean
            {"model": "m", "corruption": "shot_noise", "severity": 3, "mIoU": None},  # failed cell: skipped
            {"model": "m", "corruption": "shot_noise", "severity": 5, "mIoU": 0.36}]
    rises = severity_rises(summarize_robustness(recs))
    assert [(r["from_severity"], r["to_severity"]) for r in rises] == [(0, 1), (1, 5)]
    assert severity_rises(summarize_robustness(recs[:2] + [{**recs[3], "mIoU": 0.1}])) == [rises[0]]


def test_groups_keep_settings_apart_and_reference_only_when_present(run):
    (group,) = robustness_groups([run])
    assert group.reference == "cnn" and len(group.cells) == 10 and group.dataset == "ade20k"
    run.meta["suite"]["corruptions"]["reference"] = "someone-else"
    assert robustness_groups([run])[0].reference is None


def test_published_table_shows_a_matching_entry_beside_the_measured_values(run):
    entry = {"model": "dpt", "dataset": "ade20k", "checkpoint": "org/dpt-ade", "source": "A paper, Table 9",
             "published_protocol": "single scale", "clean_mIoU": 61.0, "mIoU": {"fog": 52.5}}
    check_entry(entry)
    (group,) = robustness_groups([run])
    summary = summarize_robustness([{"model": c.identity.model, "corruption": (c.identity.corruption or {}).get("name"),
                                     "severity": (c.identity.corruption or {}).get("severity"),
                                     "mIoU": c.accuracy.metrics["mIoU"]} for c in group.cells])
    html = published_table(group, summary, shipped=[entry])
    assert "org/dpt-ade" in html and "A paper, Table 9" in html
    assert "<td class=text>fog</td><td class=num>52.5</td><td class=num>45.0</td>" in html
    assert "<td class=num>61.0</td><td class=num>60.0</td>" in html
    assert lookup("dpt", "cityscapes", [entry]) is None and lookup("dpt", "ade20k", [entry])["mIoU"]["fog"] == 0.525
    with pytest.raises(ValueError, match="mIoU.fog = 152"):
        check_entry({**entry, "mIoU": {"fog": 152}})
    with pytest.raises(ValueError, match="missing key.*checkpoint"):
        check_entry({k: v for k, v in entry.items() if k != "checkpoint"})


def test_the_shipped_file_has_no_entry_without_a_registry_checkpoint():
    from harness.models.registry import MODELS
    from harness.robustness.published import entries

    assert all(e["model"] in MODELS for e in entries())
    assert {n["source"].split(".")[0] for n in not_applicable()} >= {"Xie et al", "Kamann and Rother"}


def test_reliability_diagram_for_calibrated_clean_cells_only(run):
    page = render([run], "")
    specs = [json.loads(m) for m in re.findall(r'<script type="application/json" id="spec\d+">(.*?)</script>', page)]
    titles = [s["layout"]["title"]["text"] for s in specs]
    assert [t for t in titles if t.startswith("Reliability")] == ["Reliability diagram · dpt · ade20k · fp32 (ECE 7.00%)"]
    # per-class IoU heatmaps read clean cells only (the cells here carry no IoU: none)
    assert not any(t.startswith("Per-class IoU") for t in titles)


def test_table_rows_say_why_values_are_missing_and_keep_points_apart(run):
    rows = all_rows([run])
    noisy = next(r for r in rows if r["corruption"] == "fog-2" and r["model"] == "cnn")
    assert noisy["why"]["latency_p50"] == "not measured on corrupted images"
    assert noisy["why"]["ECE"] == "cannot be calibrated" and noisy["trimap_mIoU_5px"] == pytest.approx(0.35 / 3)
    clean = next(r for r in rows if r["corruption"] is None and r["model"] == "dpt")
    assert clean["ECE"] == 0.07 and clean["latency_p50"] == 10.0
    assert len({r["identity"] for r in rows}) == len(rows)  # compare and merge keep each point apart
    page = render([run], "")
    assert 'data-key="corruption"' in page and 'data-key="mBIoU"' in page and 'data-key="ECE"' in page
    df = to_dataframe(run)
    assert set(df["corruption"].dropna()) == {"fog-1", "fog-2", "gaussian_noise-1", "gaussian_noise-2"}
    assert df.loc[df["model"] == "dpt", "ECE"].dropna().tolist() == [0.07]


def test_clean_only_runs_show_no_corruption_column(run, tmp_path):
    clean = cell("dpt", None, 0.6)
    assert cell_row(run, clean)["corruption"] is None
    only = tmp_path / "clean"
    write_json_atomic(only / "run.json", {"schema_version": 2, "run_id": "clean", "cells": [clean.cell_id]})
    write_json_atomic(only / "cells" / f"{clean.cell_id}.json", clean.to_dict())
    page = render([load_run(only)], "")
    assert 'data-key="corruption"' not in page and "id=robustness" not in page


def test_the_qualitative_panel_keeps_corrupted_inputs_apart(tmp_path):
    import numpy as np
    from PIL import Image

    from harness.report.qualitative import panel_items

    run_dir = tmp_path / "q"
    cells = [cell("dpt", None, 0.6), cell("dpt", ("fog", 3), 0.4)]
    for c, folder, grey in ((cells[0], "ade20k", 40), (cells[1], "ade20k__fog-3", 200)):
        base = run_dir / "samples" / folder
        base.mkdir(parents=True)
        Image.fromarray(np.full((8, 8, 3), grey, np.uint8)).save(base / "a.jpg")
        Image.fromarray(np.zeros((8, 8), np.uint8), mode="L").save(base / "a.label.png")
        (run_dir / "samples" / c.cell_id).mkdir(parents=True)
        Image.fromarray(np.ones((8, 8), np.uint8), mode="L").save(run_dir / "samples" / c.cell_id / "a.png")
        c.samples = [{"id": "a", "image": f"samples/{folder}/a.jpg", "label": f"samples/{folder}/a.label.png",
                      "pred": f"samples/{c.cell_id}/a.png"}]
    write_json_atomic(run_dir / "run.json", {"schema_version": 2, "run_id": "q", "cells": [c.cell_id for c in cells]})
    for c in cells:
        write_json_atomic(run_dir / "cells" / f"{c.cell_id}.json", c.to_dict())
    items, warnings = panel_items([load_run(run_dir)])
    assert not warnings and [it.dataset for it in items] == ["ade20k", "ade20k · fog-3"]
    assert items[0].input != items[1].input and all(len(it.preds) == 1 for it in items)
