"""suites/robustness-real-samples.yaml end to end: the real LiteRT models on the real samples in
../shared, clean and under Gaussian noise at severities 1, 3, 5.

The suite's cells run in this process (each cell's own process costs ~2 s of imports; the
launcher is tested elsewhere), one of them again in a fresh worker process: its corrupted inputs
and its mIoU are the same bytes and number. The severity ordering is checked on the measured
values, the report shows every rise of mIoU with severity, and the label-map models say why they
cannot be calibrated.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.cell import run_cell
from harness.data.loader import image_digest
from harness.launchers import run_cell_process
from harness.report.html import render
from harness.results import cell_path, load_cell_result, load_run, write_json_atomic
from harness.robustness.summary import severity_rises, summarize_robustness
from harness.stages import inputs_digest
from harness.suite import load_suite

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_litert import SHARED  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "suites" / "robustness-real-samples.yaml"


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (pip install 'segbench[litert]')")
    pytest.importorskip("skimage", reason="the robustness extra is not installed (pip install 'segbench[robustness]')")
    for p in (SHARED / "weights", SHARED / "data"):
        if not p.exists():
            pytest.skip(f"{p} is not present (real samples and weights live in ../shared beside the repository)")
    mp = pytest.MonkeyPatch()
    mp.chdir(ROOT)  # the suite's data roots are relative to the repository root
    suite = load_suite(SUITE)
    run_dir = tmp_path_factory.mktemp("run")
    cells = suite.cells()
    write_json_atomic(run_dir / "run.json", {"schema_version": 2, "run_id": "real", "suite": suite.data,
                                             "cells": [c.cell_id for c in cells]})
    for cell in cells:
        write_json_atomic(cell_path(run_dir, cell.cell_id), run_cell(cell, run_dir).to_dict())
    yield suite, cells, load_run(run_dir)
    mp.undo()


def test_every_cell_ran_with_boundary_figures_and_the_calibration_reason(measured):
    suite, cells, run = measured
    assert len(cells) == 3 * 4 and sum(c.corruption is not None for c in cells) == 9
    for c in run.cells.values():
        assert c.ok, c.error
        m = c.accuracy.metrics
        assert 0 <= m["mBIoU"] <= 1 and m["calibration_note"].startswith("cannot be calibrated:") and "ECE" not in m
        if c.identity.corruption is not None:
            assert c.latency.forward_ms is None and "does not depend on the image content" in c.latency.note
            assert len(c.provenance.data["corrupted_inputs_sha256"]) == 64
        else:
            assert c.latency.forward_ms["n"] >= 1


def test_severity_ordering_on_the_real_samples(measured, capsys):
    """mIoU at severity 5 is below severity 1 and below clean for every model: checked on the values."""
    _, _, run = measured
    by_model: dict[str, dict] = {}
    for c in run.cells.values():
        by_model.setdefault(c.identity.model, {})[(c.identity.corruption or {}).get("severity", 0)] = \
            c.accuracy.metrics["mIoU"]
    with capsys.disabled():
        for model, seq in sorted(by_model.items()):
            print(f"\n{model} gaussian_noise mIoU clean,1,3,5: " + ", ".join(f"{seq[s]:.4f}" for s in (0, 1, 3, 5)))
    for model, seq in by_model.items():
        assert seq[5] < seq[1] < seq[0], (model, seq)


def test_the_report_shows_every_rise(measured):
    _, _, run = measured
    page = render([run], "")
    section = page[page.index("<h2 id=robustness>"):page.index("<h2 id=provenance>")]
    assert section.count("<h3>") == 3
    for dataset in ("ade20k", "voc", "cityscapes"):
        cells = [c for c in run.cells.values() if c.identity.dataset == dataset]
        rises = severity_rises(summarize_robustness(
            [{"model": c.identity.model, "corruption": (c.identity.corruption or {}).get("name"),
              "severity": (c.identity.corruption or {}).get("severity"), "mIoU": c.accuracy.metrics["mIoU"]}
             for c in cells]))
        for r in rises:
            assert f"{r['model']}, gaussian_noise: severity {r['from_severity']} → {r['to_severity']}" in section
    if "severity-rise" not in section:
        assert section.count("mIoU never rises") == 3


def test_corrupted_inputs_are_the_same_bytes_in_a_fresh_process(measured, tmp_path, monkeypatch):
    from harness.data import load_dataset
    from harness.robustness.corruptions import corrupt

    _, cells, run = measured
    monkeypatch.chdir(ROOT)
    cell = next(c for c in cells if c.dataset == "ade20k" and c.corruption_tag == "gaussian_noise-5")
    here = run.cells[cell.cell_id]
    (tmp_path / "cells").mkdir()
    assert run_cell_process(cell, tmp_path) == "ok"
    there = load_cell_result(cell_path(tmp_path, cell.cell_id))
    assert there.provenance.data["corrupted_inputs_sha256"] == here.provenance.data["corrupted_inputs_sha256"]
    assert there.accuracy.metrics["mIoU"] == here.accuracy.metrics["mIoU"]
    ds = load_dataset("ade20k", root=cell.dataset_root)
    digests = {s.id: image_digest(corrupt(s.image, "gaussian_noise", 5, seed=0, sample_id=s.id))
               for s in (ds.load(i) for i in range(len(ds)))}
    assert inputs_digest(digests) == here.provenance.data["corrupted_inputs_sha256"]
