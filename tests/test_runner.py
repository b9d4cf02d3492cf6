"""The runner: one process per cell; crashes, hangs, OOM and errors are recorded; resume; shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.errors import ConfigError
from harness.results import load_run
from harness.runner import parse_shard, run_suite, select_cells
from harness.suite import load_suite

FAULTS = Path(__file__).resolve().parent / "faults"


@pytest.fixture
def faults(monkeypatch, fault_names):
    monkeypatch.setenv("SEGBENCH_TEST_FAULTS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAULTS), os.environ.get("PYTHONPATH", "")]))


def suite(tmp_path: Path, models: list[str], **measure) -> Path:
    data = {"name": "faults", "models": [{"name": m, "weights": "random"} for m in models],
            "datasets": ["tiny"], "measure": {"warmup": 1, "iters": 3, "timeout_s": 60, **measure}}
    p = tmp_path / "suite.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def statuses(run_dir: Path) -> dict[str, tuple[str, str | None]]:
    run = load_run(run_dir)
    return {c.identity.model: (c.status, c.error) for c in run.cells.values()}


def test_each_fault_is_recorded_and_the_run_goes_on(tmp_path, faults):
    s = suite(tmp_path, ["fault-crash", "fault-ok", "fault-oom", "fault-raise", "fault-exit", "fault-late"])
    summary = run_suite(s, out_dir=tmp_path / "results", echo=False)
    got = statuses(summary.run_dir)
    assert got["fault-ok"][0] == "ok"
    assert got["fault-crash"][0] == "error" and "SIGSEGV" in got["fault-crash"][1]
    assert got["fault-oom"][0] == "oom" and "out of memory" in got["fault-oom"][1]
    assert got["fault-raise"][0] == "error" and "injected error while loading" in got["fault-raise"][1]
    assert got["fault-exit"][0] == "error" and "exited with code 3" in got["fault-exit"][1]
    assert got["fault-late"][0] == "error" and "injected failure during timing" in got["fault-late"][1]
    assert summary.exit_code == 1
    ok = next(c for c in load_run(summary.run_dir).cells.values() if c.identity.model == "fault-ok")
    assert ok.latency.forward_ms["n"] == 3 and len(ok.latency.forward_ms["samples"]) == 3
    assert ok.latency.throughput_ips > 0 and ok.compute.params == 3 * 3 * 9 + 3
    assert ok.accuracy.metrics is None and "random weights" in ok.accuracy.note
    assert ok.memory.host_peak_rss > 0 and ok.memory.gpu_peak_allocated is None
    assert ok.compute.gflops * 1e9 == pytest.approx(2 * 3 * 3 * 9 * 32 * 32)  # conv 3->3, 3x3 kernel, 32x32 input
    assert {"decode", "preprocess", "forward", "postprocess", "end_to_end"} <= set(ok.latency.stages_ms)
    assert ok.latency.stages_ms["end_to_end"]["n"] >= 1 and ok.latency.warmup["warmup_iters"] == 1
    late = next(c for c in load_run(summary.run_dir).cells.values() if c.identity.model == "fault-late")
    assert late.compute.params == ok.compute.params and late.timing.first_inference_ms > 0  # kept what it measured


def test_timeout_kills_the_cell(tmp_path, faults):
    s = suite(tmp_path, ["fault-hang", "fault-ok"], timeout_s=15)  # room for a loaded machine
    summary = run_suite(s, out_dir=tmp_path / "results", echo=False)
    got = statuses(summary.run_dir)
    assert got["fault-hang"][0] == "timeout" and "timeout of 15 s" in got["fault-hang"][1]
    assert got["fault-ok"][0] == "ok"


def test_resume_runs_only_missing_cells(tmp_path, faults):
    s = suite(tmp_path, ["fault-ok", "fault-late"])
    first = run_suite(s, out_dir=tmp_path / "results", echo=False)
    ok_file = next((first.run_dir / "cells").glob("fault-ok*.json"))
    late_file = next((first.run_dir / "cells").glob("fault-late*.json"))
    before = ok_file.stat().st_mtime_ns
    late_file.unlink()
    again = run_suite(s, resume=first.run_dir, echo=False)
    assert again.run_dir == first.run_dir
    assert ok_file.stat().st_mtime_ns == before  # not redone
    assert late_file.exists()


def test_resume_refuses_a_changed_suite_unless_forced(tmp_path, faults):
    s = suite(tmp_path, ["fault-ok"])
    first = run_suite(s, out_dir=tmp_path / "results", echo=False)
    s2 = suite(tmp_path, ["fault-ok"], iters=4)
    with pytest.raises(ConfigError, match="suite changed.*--force"):
        run_suite(s2, resume=first.run_dir, echo=False)
    assert run_suite(s2, resume=first.run_dir, force=True, echo=False).exit_code == 0


def test_batch_sweep_stops_at_the_first_oom(tmp_path, faults):
    data = {"name": "sweep", "models": [{"name": "fault-oom-big", "weights": "random"}], "datasets": ["tiny"],
            "batch_sizes": [1, 2, 4, 8, 16], "measure": {"warmup": 0, "iters": 1, "stages": False, "flops": False}}
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(data))
    summary = run_suite(p, out_dir=tmp_path / "results", echo=False)
    by_bs = {c.identity.batch_size: c for c in load_run(summary.run_dir).cells.values()}
    assert [by_bs[b].status for b in (1, 2, 4, 8, 16)] == ["ok", "ok", "oom", "skipped", "skipped"]
    assert "batch size 4 already ran out of memory" in by_bs[8].error
    assert by_bs[2].latency.throughput_ips > 0


def test_repeat_records_run_to_run_spread(tmp_path, faults):
    s = suite(tmp_path, ["fault-ok"], repeat=3, stages=False, flops=False)
    summary = run_suite(s, out_dir=tmp_path / "results", echo=False)
    cell = next(iter(load_run(summary.run_dir).cells.values()))
    assert len(cell.latency.repeats) == 3 and cell.latency.run_to_run["n"] == 3
    means = [r["mean"] for r in cell.latency.repeats]
    assert cell.latency.run_to_run["mean_ms"] == pytest.approx(sum(means) / 3)


def test_shards_partition_the_cells(tmp_path, faults):
    s = load_suite(suite(tmp_path, [f"fault-m{i}" for i in range(7)]))
    all_ids = [c.cell_id for c in select_cells(s)]
    parts = [[c.cell_id for c in select_cells(s, (k, 3))] for k in range(3)]
    assert sorted(sum(parts, [])) == sorted(all_ids)
    assert not set(parts[0]) & set(parts[1])


@pytest.mark.parametrize("text", ["0/3", "4/3", "a/b", "3"])
def test_bad_shard(text):
    with pytest.raises(ConfigError, match="K/N"):
        parse_shard(text)


def test_cli_dry_run_lists_cells(tmp_path, faults):
    s = suite(tmp_path, ["fault-a", "fault-b"])
    out = subprocess.run([sys.executable, "-m", "harness", "run", "--dry-run", str(s)], capture_output=True,
                         text=True, check=True)
    assert out.stdout.startswith("2 cells in ") and "fault-a" in out.stdout and "fault-b" in out.stdout
    listed = subprocess.run([sys.executable, "-m", "harness", "run", "--dry-run", "--json", str(s)],
                            capture_output=True, text=True, check=True)
    assert [c["model"] for c in json.loads(listed.stdout)] == ["fault-a", "fault-b"]


def test_cli_run_json_and_quiet(tmp_path, faults):
    """``run --json``: the summary document on stdout; ``run --quiet``: nothing but the failure on stderr."""
    s = suite(tmp_path, ["fault-ok", "fault-raise"])
    cmd = [sys.executable, "-m", "harness", "run", str(s), "--out", str(tmp_path / "r")]
    out = subprocess.run([*cmd, "--json"], capture_output=True, text=True)
    doc = json.loads(out.stdout)
    assert out.returncode == doc["exit_code"] == 1 and sorted(doc["statuses"].values()) == ["error", "ok"]
    assert load_run(doc["run_dir"]).cells and len(doc["failed"]) == 1
    quiet = subprocess.run([*cmd, "--quiet"], capture_output=True, text=True)
    assert quiet.returncode == 1 and quiet.stdout == ""
    assert quiet.stderr.strip().splitlines() == [f"segbench: 1 cell(s) failed: {doc['failed'][0]}"]


def test_cli_bad_suite_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nmodels: [dpt-large]\ndatasets: [synthetic]\nprecisions: [fp64]\n")
    out = subprocess.run([sys.executable, "-m", "harness", "run", str(p)], capture_output=True, text=True)
    assert out.returncode == 2
    assert f"{p}: precisions[0]" in out.stderr and "Traceback" not in out.stderr


def test_sigterm_keeps_finished_cells(tmp_path, faults, monkeypatch):
    monkeypatch.setenv("SEGBENCH_TEST_SLOW_S", "30")
    s = suite(tmp_path, ["fault-ok", "fault-slow"])
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(s), "--out", str(tmp_path / "r")],
                            stderr=subprocess.PIPE, text=True)
    import time

    deadline = time.time() + 60
    cells = None
    while time.time() < deadline:
        runs = list((tmp_path / "r").glob("faults-*/cells/*.json"))
        if runs:
            cells = runs
            break
        time.sleep(0.2)
    assert cells, "the first cell never finished"
    time.sleep(1.0)
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    run_dir = cells[0].parents[1]
    assert json.loads(cells[0].read_text())["status"] == "ok"
    assert load_run(run_dir).missing and "resume" in err


def test_unsupported_combinations_are_skipped_with_the_reason(tmp_path):
    data = {"name": "unsup", "models": [{"name": "deeplabv3-mobilenetv2", "weights": "random"}],
            "datasets": [{"name": "synthetic", "options": {"num_samples": 1, "image_size": [32, 32]}}],
            "devices": ["cpu", "cuda"], "precisions": ["fp32", "tf32"],
            "variants": [{"attn_implementation": "eager"}], "measure": {"iters": 1}}
    p = tmp_path / "u.yaml"
    p.write_text(yaml.safe_dump(data))
    summary = run_suite(p, out_dir=tmp_path / "r", echo=False)
    cells = {(c.identity.device, c.identity.precision): c for c in load_run(summary.run_dir).cells.values()}
    assert {c.status for c in cells.values()} == {"skipped"} and summary.exit_code == 0
    assert "is a CNN" in cells[("cpu", "fp32")].error
    assert "tf32 applies to CUDA" in cells[("cpu", "tf32")].error
    import torch

    if not torch.cuda.is_available():
        assert "CUDA is not available" in cells[("cuda", "fp32")].error
