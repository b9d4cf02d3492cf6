"""torchrun with 2 CPU processes (gloo): the boundary and calibration states, each rank's share of
the images all-reduced with harness.distributed.all_reduce_sum, equal one process's states."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.boundary import BoundaryMetrics
from harness.calibration import CalibrationMetrics

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[2])
from harness import distributed
from test_robustness_distributed import accumulate

info = distributed.init()
bnd, cal = accumulate(info.rank, info.world_size)
for m in (bnd, cal):
    m.load_state_tensor(distributed.all_reduce_sum(m.state_tensor()))
if info.is_main:
    json.dump({"boundary": bnd.state_tensor().tolist(), "calibration": cal.state_tensor().tolist()},
              open(sys.argv[1], "w"))
distributed.shutdown()
"""


def accumulate(rank: int, world_size: int) -> tuple[BoundaryMetrics, CalibrationMetrics]:
    """Boundary and calibration states of this rank's share (every world_size-th) of 5 images."""
    g = torch.Generator().manual_seed(0)
    bnd, cal = BoundaryMetrics(4, trimap_widths=(1, 4)), CalibrationMetrics(4)
    for i in range(5):
        h, w = 24 + 4 * i, 30
        target = torch.randint(0, 4, (h // 6 + 1, w // 6 + 1), generator=g).repeat_interleave(6, 0)
        target = target.repeat_interleave(6, 1)[:h, :w]
        logits = torch.randn((4, 6, 8), generator=g)
        if i % world_size == rank:
            bnd.update(cal.update_logits(logits, target), target)
    return bnd, cal


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_two_ranks_sum_to_one_process(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          str(script), str(tmp_path / "two.json"), str(Path(__file__).parent)], env=env,
                         capture_output=True, text=True, timeout=180)
    assert two.returncode == 0, two.stderr[-3000:]
    got = json.loads((tmp_path / "two.json").read_text())
    bnd, cal = accumulate(0, 1)
    assert torch.equal(torch.tensor(got["boundary"]), bnd.state_tensor()) and int(bnd.state_tensor().sum()) > 0
    assert torch.allclose(torch.tensor(got["calibration"], dtype=torch.float64), cal.state_tensor(), rtol=1e-12,
                          atol=1e-9)
