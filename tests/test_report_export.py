"""pytest-benchmark export: same document shape as pytest-benchmark's own --benchmark-json, stats from raw samples."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures_results import make_cell, write_run

from harness.errors import ConfigError
from harness.report.commands import add_parsers
from harness.report.export import to_pytest_benchmark
from harness.results import load_run

pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed")

REFERENCE_TEST = """
def test_sum(benchmark):
    benchmark(lambda: sum(range(50)))
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """pytest-benchmark's own JSON output for a trivial benchmark (the format to match)."""
    d = tmp_path_factory.mktemp("pb")
    (d / "test_ref.py").write_text(REFERENCE_TEST)
    out = d / "ref.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(d / "test_ref.py"),
                           f"--benchmark-json={out}", "--benchmark-min-rounds=3", "--benchmark-max-time=0.001",
                           "--benchmark-save-data", "-o", "addopts="],
                          capture_output=True, text=True, cwd=d, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text())


@pytest.fixture
def run(tmp_path):
    cells = [make_cell("dpt-large", family="dpt", latency=300, seed=1),
             make_cell("segformer-b0", "bf16", family="transformer", latency=40, seed=2, batch_size=4),
             make_cell("failed", status="oom")]
    return load_run(write_run(tmp_path / "run", cells))


def test_document_has_the_keys_of_pytest_benchmarks_own_output(run, reference):
    data = to_pytest_benchmark(run)
    assert set(data) == set(reference)
    ref_b, ours = reference["benchmarks"][0], data["benchmarks"][0]
    assert set(ref_b) == set(ours)
    assert set(ref_b["stats"]) == set(ours["stats"])
    assert set(ref_b["options"]) == set(ours["options"])
    assert set(reference["commit_info"]) <= set(data["commit_info"])
    assert {k for k in reference["machine_info"] if k != "cpu"} <= set(data["machine_info"])
    for key, value in ref_b["stats"].items():  # same JSON types per field
        assert isinstance(ours["stats"][key], type(value)) or {type(value), type(ours["stats"][key])} <= {int, float}


def test_stats_are_in_seconds_from_the_raw_samples(run):
    data = to_pytest_benchmark(run)
    assert len(data["benchmarks"]) == 2  # the failed cell has no samples
    b = next(x for x in data["benchmarks"] if x["group"] == "dpt-large")
    secs = np.array(run.cells["dpt-large__ade20k__cpu__fp32__b1"].latency.forward_ms["samples"]) / 1000
    s = b["stats"]
    assert s["data"] == pytest.approx(list(secs)) and s["rounds"] == len(secs) and s["iterations"] == 1
    assert s["min"] == pytest.approx(secs.min()) and s["max"] == pytest.approx(secs.max())
    assert s["mean"] == pytest.approx(secs.mean()) and s["median"] == pytest.approx(np.median(secs))
    assert s["stddev"] == pytest.approx(secs.std(ddof=1)) and s["ops"] == pytest.approx(1 / secs.mean())
    assert s["total"] == pytest.approx(secs.sum()) and s["q1"] <= s["median"] <= s["q3"]
    assert b["name"] == "dpt-large[ade20k-cpu-fp32-b1]" and b["params"]["batch_size"] == 1
    seg = next(x for x in data["benchmarks"] if x["group"] == "segformer-b0")
    assert seg["params"] == {"dataset": "ade20k", "device": "cpu", "precision": "bf16", "amp": "autocast",
                             "batch_size": 4, "runtime": "pytorch"}
    assert data["commit_info"]["id"] == "abc1234" and data["commit_info"]["dirty"] is False
    assert data["machine_info"]["system"] == "Linux" and data["machine_info"]["cpu"]["count"] == 2


def test_pytest_benchmark_compare_reads_the_export(run, tmp_path):
    out = tmp_path / "Linux-CPython-3.11-64bit" / "0001_export.json"
    out.parent.mkdir()
    out.write_text(json.dumps(to_pytest_benchmark(run)))
    cli = Path(sys.executable).parent / "pytest-benchmark"
    if not cli.exists():
        pytest.skip(f"pytest-benchmark's command line is not next to {sys.executable}")
    proc = subprocess.run([str(cli), "--storage", f"file://{tmp_path}", "compare", "--group-by", "group", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "dpt-large[ade20k-cpu-fp32-b1]" in proc.stdout and "benchmark 'segformer-b0'" in proc.stdout


def test_export_command_and_empty_runs(run, tmp_path):
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export", str(run.path), "--format", "pytest-benchmark", "--out", str(tmp_path / "x.json")])
    assert args.func(args) == 0
    assert len(json.loads((tmp_path / "x.json").read_text())["benchmarks"]) == 2
    empty = load_run(write_run(tmp_path / "empty", [make_cell("f", status="error")]))
    with pytest.raises(ConfigError, match="no finished cell has raw latency samples"):
        to_pytest_benchmark(empty)
