"""End to end: `segbench run` and `segbench report` as subprocesses on tiny real-architecture models,
synthetic data and an ADE20K-layout folder; the numbers are checked against an independent computation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from layouts import write_ade20k
from tiny_models import save_tiny_dpt, save_tiny_upernet

import harness
from harness.results import load_run

ROOT = Path(__file__).resolve().parents[1]


def numpy_metrics(preds, targets, C, ignore=255):
    p = np.concatenate([x.ravel() for x in preds])
    t = np.concatenate([x.ravel() for x in targets])
    keep = t != ignore
    p, t = p[keep], t[keep]
    ious = []
    for c in range(C):
        union = np.sum((p == c) | (t == c))
        ious.append(np.sum((p == c) & (t == c)) / union if union else np.nan)
    return float(np.nanmean(ious)), float(np.mean(p == t))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    dpt = save_tiny_dpt(tmp / "tiny-dpt")
    upernet = save_tiny_upernet(tmp / "tiny-upernet")
    ade = write_ade20k(tmp / "data", n=3)
    suite = {
        "name": "e2e",
        "models": [{"name": str(dpt), "label": "tiny-dpt"},
                   {"name": str(upernet), "weights": "random", "label": "tiny-upernet"}],
        "datasets": [{"name": "ade20k", "root": str(ade)},
                     {"name": "synthetic", "options": {"num_samples": 2, "image_size": [40, 56], "num_classes": 150}}],
        "precisions": ["fp32"],
        "measure": {"warmup": 1, "iters": 2, "samples": 2},
    }
    path = tmp / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    run = subprocess.run([sys.executable, "-m", "harness", "run", str(path), "--out", str(tmp / "results"),
                          "--report", "--report-dir", str(tmp / "reports")], capture_output=True, text=True,
                         cwd=ROOT, timeout=600)
    return {"tmp": tmp, "dpt": dpt, "ade": ade, "run": run}


def test_run_succeeds_and_writes_every_cell(workspace):
    run = workspace["run"]
    assert run.returncode == 0, run.stderr[-3000:]
    run_dir = Path(run.stdout.split("results: ")[1].split()[0])
    loaded = load_run(run_dir)
    assert len(loaded.cells) == 4 and not loaded.missing
    summary = run.stdout.splitlines()  # the human summary: counts first, then a row per cell within 100 columns
    assert summary[0] == "ok  4 cells: 4 ok" and summary[2].startswith("report: ")
    assert all(len(line) <= 100 for line in summary if not line.startswith(("results: ", "report: ")))
    assert sum(1 for line in summary if line.startswith(("tiny-dpt ", "tiny-upernet "))) == 4
    assert {c.status for c in loaded.cells.values()} == {"ok"}
    meta = loaded.meta
    for key in ("torch", "transformers", "python", "cpu", "torch_threads", "git_sha"):
        assert key in meta["env"]
    assert meta["command"][:2] == ["segbench", "run"]


def _cells(workspace):
    run_dir = Path(workspace["run"].stdout.split("results: ")[1].split()[0])
    return run_dir, {(c.identity.model, c.identity.dataset): c for c in load_run(run_dir).cells.values()}


def test_accuracy_matches_an_independent_computation(workspace):
    _, cells = _cells(workspace)
    cell = cells[("tiny-dpt", "ade20k")]
    assert cell.provenance.weights["source"] == "local" and len(cell.provenance.weights["sha256"]) == 64
    model = harness.load_model(str(workspace["dpt"]))
    from PIL import Image

    root = workspace["ade"]
    preds, targets = [], []
    for img in sorted((root / "images" / "validation").glob("*.jpg")):
        preds.append(model.predict([Image.open(img).convert("RGB")])[0])
        raw = np.asarray(Image.open(root / "annotations" / "validation" / f"{img.stem}.png")).astype(np.int64)
        targets.append(np.where(raw == 0, 255, raw - 1))
    miou, aacc = numpy_metrics(preds, targets, 150)
    assert cell.accuracy.metrics["mIoU"] == pytest.approx(miou, abs=1e-12)
    assert cell.accuracy.metrics["aAcc"] == pytest.approx(aacc, abs=1e-12)
    assert cell.accuracy.metrics["num_images"] == 3 and len(cell.accuracy.metrics["IoU"]) == 150
    assert cell.provenance.data["num_samples"] == 3 and len(cell.provenance.data["digest"]) == 64
    assert len(cell.samples) == 2


def test_result_contract_fields(workspace):
    run_dir, cells = _cells(workspace)
    for cell in cells.values():
        on_disk = json.loads((run_dir / "cells" / f"{cell.cell_id}.json").read_text())
        assert on_disk["schema_version"] == 2 and on_disk["status"] == "ok" and on_disk["error"] is None
        for section in ("identity", "provenance", "environment", "timing", "accuracy", "latency", "memory",
                        "compute"):
            assert isinstance(on_disk[section], dict), section
        for key in ("task", "model", "dataset", "device", "precision", "amp", "batch_size", "runtime", "protocol"):
            assert key in on_disk["identity"], key
        assert on_disk["identity"]["task"] == "segmentation" and on_disk["provenance"]["weights"]["source"]
        quality = on_disk["environment"]["quality"]  # what disturbed the timed region, and the flags it raised
        assert isinstance(quality["flags"], list) and quality["wall_s"] > 0 and quality["latency"]["n"] == 2
        lat = cell.latency.forward_ms
        assert lat["n"] == 2 and 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        assert cell.latency.throughput_ips == pytest.approx(1000.0 / lat["mean"])
        assert cell.memory.host_peak_rss > 0 and cell.memory.gpu_peak_allocated is None
        assert cell.compute.params > 0


def test_random_weights_show_no_accuracy(workspace):
    _, cells = _cells(workspace)
    for ds in ("ade20k", "synthetic"):
        cell = cells[("tiny-upernet", ds)]
        assert cell.provenance.weights == {"source": "random", "seed": 0}
        assert cell.accuracy.metrics is None and "random weights" in cell.accuracy.note


def test_report_written_with_a_row_per_cell(workspace):
    run_dir, cells = _cells(workspace)
    reports = list((workspace["tmp"] / "reports").glob("*.html"))
    assert len(reports) == 1
    page = reports[0].read_text()
    assert page.count('<tr data-status="ok">') == 4
    assert "random weights" in page
    assert 'src="http' not in page and "<link" not in page  # nothing loaded from the network
    again = subprocess.run([sys.executable, "-m", "harness", "report", str(run_dir), "--out",
                            str(workspace["tmp"] / "again.html")], capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 0, again.stderr
    assert (workspace["tmp"] / "again.html").read_text().count('<tr data-status="ok">') == 4


def test_dataframe_loader(workspace):
    run_dir, _ = _cells(workspace)
    from harness.results import to_dataframe

    df = to_dataframe(load_run(run_dir))
    assert len(df) == 4 and set(df["status"]) == {"ok"}
    assert df.loc[df["weights"] == "random", "mIoU"].isna().all()
    assert json.loads(df.to_json())  # plain data
