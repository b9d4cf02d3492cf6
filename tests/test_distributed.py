"""torchrun with 2 CPU processes (gloo): the data is split across ranks without duplicates or drops,
confusion matrices are all-reduced, and the results equal a single-process run on the same data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from layouts import write_ade20k
from tiny_models import save_tiny_segformer

from harness.results import load_run

ROOT = Path(__file__).resolve().parents[1]


def _suite(tmp: Path, model: Path, ade: Path) -> Path:
    data = {"name": "dist", "models": [{"name": str(model), "label": "tiny"}],
            "datasets": [{"name": "ade20k", "root": str(ade)}],
            "measure": {"warmup": 0, "iters": 2, "stages": False, "flops": False, "samples": 0},
            "corruptions": {"names": ["shot_noise"], "severities": [2]}}
    p = tmp / "suite.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_two_ranks_equal_one_process_on_an_uneven_split(tmp_path):
    model = save_tiny_segformer(tmp_path / "m")
    ade = write_ade20k(tmp_path / "data", n=5)  # 5 images over 2 ranks: 3 + 2
    suite = _suite(tmp_path, model, ade)
    single = subprocess.run([sys.executable, "-m", "harness", "run", str(suite), "--out", str(tmp_path / "single")],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    dist = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "harness", "run", str(suite), "--out", str(tmp_path / "dist")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert dist.returncode == 0, dist.stderr[-3000:]
    one_run = load_run(next((tmp_path / "single").iterdir()))
    two_run = load_run(next((tmp_path / "dist").iterdir()))
    assert len(list((tmp_path / "dist").iterdir())) == 1  # rank 0 alone created the run directory
    one, one_noisy = sorted(one_run.cells.values(), key=lambda c: c.corruption_tag or "")
    two, two_noisy = sorted(two_run.cells.values(), key=lambda c: c.corruption_tag or "")
    assert two.environment.world_size == 2 and two.environment.distributed["world_size"] == 2
    assert "rank 0 only" in two.environment.distributed["latency"]
    assert two.accuracy.metrics["num_images"] == one.accuracy.metrics["num_images"] == 5
    for k in ("mIoU", "aAcc", "mAcc"):
        assert two.accuracy.metrics[k] == one.accuracy.metrics[k]
    assert np.array_equal(np.array(two.accuracy.metrics["IoU"], dtype=float),
                          np.array(one.accuracy.metrics["IoU"], dtype=float),
                          equal_nan=True)
    assert two.provenance.data["digest"] == one.provenance.data["digest"]
    assert two.latency.forward_ms["n"] == 2
    # Boundary IoU, trimap and calibration sums are all-reduced too; corrupted inputs are the same bytes
    for a, b in ((one, two), (one_noisy, two_noisy)):
        assert a.ok and b.ok, (a.error, b.error)
        for k in ("mIoU", "mBIoU", "ECE", "MCE", "NLL", "Brier"):
            assert b.accuracy.metrics[k] == pytest.approx(a.accuracy.metrics[k], rel=1e-9, abs=1e-12), k
        assert b.accuracy.metrics["trimap"] == a.accuracy.metrics["trimap"]
        assert b.accuracy.metrics["calibration"]["pixels"] == a.accuracy.metrics["calibration"]["pixels"] > 0
    assert one_noisy.corruption_tag == two_noisy.corruption_tag == "shot_noise-2"
    assert two_noisy.provenance.data["corrupted_inputs_sha256"] == one_noisy.provenance.data["corrupted_inputs_sha256"]
    assert two_noisy.accuracy.metrics["mIoU"] != two.accuracy.metrics["mIoU"] or \
        two_noisy.accuracy.metrics["NLL"] != two.accuracy.metrics["NLL"]
