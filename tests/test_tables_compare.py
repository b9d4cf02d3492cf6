"""Paper tables, the regression comparison (with a Mann-Whitney reference) and the pytest-benchmark export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures_results import make_cell, write_run

from harness.report.compare import compare_runs, mann_whitney_greater, markdown_summary
from harness.report.export import to_pytest_benchmark
from harness.report.tables import latex_escape, markdown_escape, render_table
from harness.results import load_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def runs(tmp_path):
    cells = [make_cell("dpt-large", family="dpt", miou=0.47, latency=300, seed=1),
             make_cell("segformer-b0", family="transformer", miou=0.37, latency=40, seed=2),
             make_cell("upernet-convnext-tiny", miou=0.45, latency=120, seed=3),
             make_cell("deeplabv3", miou=None, weights="random", latency=20, seed=4)]
    return write_run(tmp_path / "base", cells)


def test_markdown_table_marks_best_and_second(runs):
    text = render_table([load_run(runs)], "markdown", columns=["model", "mIoU", "latency_p50"])
    lines = text.splitlines()
    assert lines[0] == "| model | mIoU (%) | latency p50 (ms) |"
    dpt = next(line for line in lines if line.startswith("| dpt-large"))
    upernet = next(line for line in lines if line.startswith("| upernet"))
    assert "**47.0**" in dpt and "<u>45.0</u>" in upernet
    assert "| **DPT** |" in text and "| **CNN** |" in text
    random_row = next(line for line in lines if line.startswith("| deeplabv3"))
    assert "–" in random_row and "**" in random_row  # fastest, no accuracy


def test_latex_table_is_booktabs_and_grouped(runs):
    text = render_table([load_run(runs)], "latex", decimals=2)
    assert r"\toprule" in text and r"\bottomrule" in text and text.count(r"\midrule") == 3  # header + 2 family breaks
    assert r"\textbf{47.00}" in text and r"\underline{45.00}" in text and r"\caption{" in text


def test_csv_table(runs):
    import csv
    import io

    rows = list(csv.reader(io.StringIO(render_table([load_run(runs)], "csv"))))
    assert rows[0][:3] == ["family", "model", "precision"] and len(rows) == 5


def test_confidence_interval_shown_when_present(tmp_path):
    r = write_run(tmp_path / "ci", [make_cell("m", miou=0.5, metrics_ci=None)])
    cell = load_run(r).cells["m__ade20k__cpu__fp32__b1"]
    cell["metrics"]["mIoU_ci"] = [0.45, 0.55]
    write_run(tmp_path / "ci2", [cell])
    assert "50.0 ± 5.0" in render_table([load_run(tmp_path / "ci2")], "markdown", columns=["model", "mIoU"])


def test_escaping():
    assert latex_escape("a_b & 50% $x$ #1 {y} ~^\\") == r"a\_b \& 50\% \$x\$ \#1 \{y\} \textasciitilde{}\textasciicircum{}\textbackslash{}"
    assert markdown_escape("a|b*c_d`e<script>") == r"a\|b\*c\_d\`e\<script\>"


def test_unknown_column_is_an_error(runs):
    with pytest.raises(ValueError, match="unknown column"):
        render_table([load_run(runs)], "markdown", columns=["model", "speed"])


def test_mann_whitney_direction_and_edge_cases():
    rng = np.random.default_rng(0)
    a, b = rng.normal(10, 1, 30), rng.normal(11, 1, 25)
    p = mann_whitney_greater(a, b)
    assert p < 0.01
    assert mann_whitney_greater(b, a) > 0.99
    same = rng.normal(10, 1, 40)
    assert 0.05 < mann_whitney_greater(same[:20], same[20:]) < 0.95
    assert np.isnan(mann_whitney_greater([1.0], [2.0, 3.0]))
    assert mann_whitney_greater([1, 1, 1], [1, 1, 1]) == 1.0


def test_mann_whitney_against_scipy():
    stats = pytest.importorskip("scipy.stats", reason="scipy is not installed here")
    rng = np.random.default_rng(1)
    a, b = rng.normal(10, 1, 30).round(1), rng.normal(10.4, 1, 25).round(1)  # ties included
    ref = stats.mannwhitneyu(b, a, alternative="greater", method="asymptotic", use_continuity=True).pvalue
    assert mann_whitney_greater(a, b) == pytest.approx(ref, rel=1e-9)


def test_compare_no_regression_is_exit_0(runs, tmp_path):
    cur = write_run(tmp_path / "cur", [make_cell("dpt-large", family="dpt", miou=0.47, latency=301, seed=9)])
    cmp = compare_runs(load_run(runs), load_run(cur))
    assert cmp.exit_code == 0 and cmp.pairs == 1 and len(cmp.only_baseline) == 3


def test_accuracy_drop_is_a_regression(runs, tmp_path):
    cur = write_run(tmp_path / "cur", [make_cell("dpt-large", family="dpt", miou=0.46, latency=300, seed=1)])
    cmp = compare_runs(load_run(runs), load_run(cur))
    assert cmp.exit_code == 1 and [f.metric for f in cmp.regressions] == ["mIoU", "aAcc"]
    loose = {"max_miou_drop": 0.02, "max_aacc_drop": 0.02}
    assert compare_runs(load_run(runs), load_run(cur), loose).exit_code == 0


def test_slowdown_must_exceed_threshold_and_noise(runs, tmp_path):
    slow = write_run(tmp_path / "slow", [make_cell("dpt-large", family="dpt", miou=0.47, latency=360, seed=5)])
    assert compare_runs(load_run(runs), load_run(slow)).exit_code == 1
    # 20% slower median but only 2 samples each: not beyond noise
    few_b = write_run(tmp_path / "fb", [make_cell("dpt-large", family="dpt", miou=0.47, latency=300, n=2, seed=1)])
    few_c = write_run(tmp_path / "fc", [make_cell("dpt-large", family="dpt", miou=0.47, latency=360, n=2, seed=2)])
    cmp = compare_runs(load_run(few_b), load_run(few_c))
    assert cmp.exit_code == 0 and "latency" in {f.metric.split("_")[0] for f in cmp.findings}


def test_memory_growth_and_failed_cells(runs, tmp_path):
    cur = write_run(tmp_path / "mem", [make_cell("dpt-large", family="dpt", miou=0.47, latency=300, seed=1,
                                                 memory=1200.0),
                                       make_cell("segformer-b0", family="transformer", status="oom")])
    cmp = compare_runs(load_run(runs), load_run(cur))
    metrics = {f.metric for f in cmp.regressions}
    assert "host_peak_rss_mib" in metrics and "status" in metrics
    assert "regression" in markdown_summary(cmp, "a", "b")


def test_compare_cli_exit_codes(runs, tmp_path):
    cur = write_run(tmp_path / "cur", [make_cell("dpt-large", family="dpt", miou=0.40, latency=300, seed=1)])
    cmd = [sys.executable, "-m", "harness", "compare", str(runs), str(cur), "--format", "json"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 1 and json.loads(out.stdout)["regressions"] == 2  # mIoU and aAcc
    ok = subprocess.run(cmd + ["--max-miou-drop", "0.1", "--max-aacc-drop", "0.1"], capture_output=True, text=True,
                        cwd=ROOT)
    assert ok.returncode == 0
    missing = subprocess.run([sys.executable, "-m", "harness", "compare", str(runs), str(tmp_path / "nope")],
                             capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode == 2 and "could not compare" in missing.stdout
    other = write_run(tmp_path / "other", [make_cell("x", latency=5)])
    assert subprocess.run([sys.executable, "-m", "harness", "compare", str(runs), str(other)],
                          capture_output=True, text=True, cwd=ROOT).returncode == 2


def test_thresholds_file(runs, tmp_path):
    cur = write_run(tmp_path / "cur", [make_cell("dpt-large", family="dpt", miou=0.46, latency=300, seed=1)])
    th = tmp_path / "th.yaml"
    th.write_text("max_miou_drop: 0.05\nmax_aacc_drop: 0.05\n")
    cmd = [sys.executable, "-m", "harness", "compare", str(runs), str(cur), "--thresholds", str(th)]
    assert subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT).returncode == 0
    th.write_text("max_mIoU: 1\n")
    bad = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "max_miou_drop" in bad.stderr


def test_pytest_benchmark_export(runs):
    data = to_pytest_benchmark(load_run(runs))
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(data)
    b = next(x for x in data["benchmarks"] if x["group"] == "dpt-large")
    cell = load_run(runs).cells["dpt-large__ade20k__cpu__fp32__b1"]
    secs = np.array(cell["latency_ms"]["samples"]) / 1000
    assert b["stats"]["median"] == pytest.approx(np.median(secs)) and b["stats"]["rounds"] == len(secs)
    assert b["stats"]["data"] == pytest.approx(list(secs)) and b["stats"]["ops"] == pytest.approx(1 / secs.mean())
