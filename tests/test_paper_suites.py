"""The paper suites: their DPT-Hybrid ms+flip cells are listed, and the same cells (the suite's own
protocol, crops and base size scaled down) run to ``ok`` on the CPU with random registry weights and
with a tiny DPT-Hybrid whose accuracy goes through the protocol."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from layouts import write_ade20k
from tiny_models import save_tiny_dpt_hybrid

import harness
from harness.protocols import predict_with_protocol
from harness.results import load_run
from harness.runner import run_suite
from harness.suite import load_suite

REPO = Path(__file__).resolve().parents[1]
SUITES = sorted((REPO / "suites").glob("paper-*.yaml"))


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.stem)
def test_paper_suites_validate_and_record_their_merge(path):
    suite = load_suite(path)
    for cell in suite.cells():
        if cell.protocol["mode"] == "multiscale":
            assert cell.protocol["merge"] in ("softmax", "pytorch-encoding")
    text = path.read_text()
    assert "merge" in text  # each paper suite says which merge its figures were measured with


def test_dry_run_lists_the_dpt_hybrid_ms_flip_cells():
    out = subprocess.run([sys.executable, "-m", "harness", "run", "suites/paper-ade20k.yaml", "--dry-run", "--json"],
                         cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    rows = [c for c in json.loads(out.stdout) if c["cell_id"].startswith("dpt-hybrid__")]
    assert any(c["protocol"]["mode"] == "multiscale" for c in rows), out.stdout


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """suites/paper-ade20k.yaml's ms+flip protocol with 64-pixel crops (base 72), the same cells made small:
    the registry DPT-Hybrid with random weights on synthetic images, and a tiny DPT-Hybrid on ADE20K-layout
    data (accuracy measured through the protocol). One run for both, to keep the test short."""
    tmp = tmp_path_factory.mktemp("paper")
    model_dir = save_tiny_dpt_hybrid(tmp / "hybrid")
    ade = write_ade20k(tmp / "data", n=2, sizes=[(60, 90), (100, 70)])
    data = yaml.safe_load((REPO / "suites" / "paper-ade20k.yaml").read_text())
    proto = next(p for p in data["protocol"] if p["mode"] == "multiscale")
    assert proto["merge"] == "pytorch-encoding" and proto["flip"] and len(proto["scales"]) == 6
    small = {**data, "name": "paper-small", "devices": ["cpu"], "protocol": {**proto, "base_size": 72, "crop_size": 64},
             "models": [{"name": "dpt-hybrid", "weights": "random"}, {"name": str(model_dir), "label": "tiny-hybrid"}],
             "datasets": [{"name": "synthetic", "options": {"num_samples": 1, "image_size": [60, 90]}},
                          {"name": "ade20k", "root": str(ade)}],
             "include": [{"model": "dpt-hybrid", "dataset": "synthetic"}, {"model": "tiny-hybrid", "dataset": "ade20k"}],
             "measure": {"warmup": 0, "iters": 1, "stages": False, "flops": False, "samples": 0, "num_workers": 0}}
    path = tmp / "suite.yaml"
    path.write_text(yaml.safe_dump(small))
    summary = run_suite(path, out_dir=tmp / "r", echo=False)
    cells = {c.identity.model: c for c in load_run(summary.run_dir).cells.values()}
    return cells, model_dir, ade


def test_dpt_hybrid_ms_flip_cell_runs_with_random_registry_weights(small_run):
    cell = small_run[0]["dpt-hybrid"]
    assert cell.status == "ok", cell.error
    assert cell.identity.protocol["merge"] == "pytorch-encoding" and cell.provenance.weights["source"] == "random"


def test_dpt_hybrid_ms_flip_accuracy_goes_through_the_protocol(small_run):
    cells, model_dir, ade = small_run
    cell = cells["tiny-hybrid"]
    assert cell.status == "ok", cell.error
    model = harness.load_model(str(model_dir))
    ds = harness.load_dataset("ade20k", root=str(ade))
    metrics = harness.SegmentationMetrics(150)
    with torch.inference_mode():
        for i in range(len(ds)):
            s = ds.load(i)
            metrics.update(predict_with_protocol(model, s.image, cell.identity.protocol), s.label)
    assert cell.accuracy.metrics["mIoU"] == pytest.approx(metrics.compute()["mIoU"], abs=1e-12)
