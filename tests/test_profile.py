"""`segbench profile` and `eval --profile`: where a cell's time goes, from the recorded breakdown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from layouts import write_ade20k
from tiny_models import save_tiny_segformer

from harness.profile import describe
from harness.results import load_run
from harness.runner import run_suite

ROOT = Path(__file__).resolve().parents[1]


def test_breakdown_is_recorded_and_printed(tmp_path):
    model = save_tiny_segformer(tmp_path / "m")
    ade = write_ade20k(tmp_path / "data", n=3)
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump({"name": "prof", "models": [{"name": str(model), "label": "tiny"}],
                                     "datasets": [{"name": "ade20k", "root": str(ade)}],
                                     "measure": {"iters": 2, "flops": False, "num_workers": 1}}))
    summary = run_suite(suite, out_dir=tmp_path / "r", echo=False)
    cell = next(iter(load_run(summary.run_dir).cells.values()))
    br = cell.timing.accuracy_breakdown_s
    assert set(br) == {"data_wait", "forward", "postprocess", "metric"} and all(v >= 0 for v in br.values())
    assert sum(br.values()) <= cell.timing.accuracy_s + 1e-6
    cpu = cell.timing.accuracy_cpu_s
    assert set(cpu) == {*br, "workers"} and all(v >= 0 for v in cpu.values()) and cpu["forward"] > 0
    assert cpu["workers"] > 0  # the worker reported its decode time from its own process
    plan = cell.timing.accuracy_pipeline
    assert plan["postprocess"] in ("inline", "overlapped") and (plan["workers"], plan["worker_start"]) == (1, "forkserver")
    assert cell.environment.heap in ("retained", "system", "system (not glibc)")
    text = describe(cell)
    for word in ("model load", "first inference", "accuracy loop", "forward", "metric", "CPU s", "cores busy",
                 "layout:", "data workers (CPU)", "forkserver"):
        assert word in text
    out = subprocess.run([sys.executable, "-m", "harness", "profile", str(summary.run_dir)], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode == 0 and "accuracy loop" in out.stdout and "per batch (p50, ms)" in out.stdout
