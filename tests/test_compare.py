"""Regression comparison: pairing, thresholds, the Mann-Whitney noise test, output formats, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures_results import latency_block, make_cell, write_run

from harness.errors import ConfigError
from harness.report.compare import (
    bootstrap_median_ratio,
    compare_runs,
    load_thresholds,
    mann_whitney_greater,
    markdown_summary,
)
from harness.results import load_run

ROOT = Path(__file__).resolve().parents[1]


def _dpt(**kw):
    args = {"family": "dpt", "miou": 0.47, "latency": 300, "seed": 1}
    args.update(kw)
    return make_cell("dpt-large", **args)


@pytest.fixture
def base(tmp_path):
    cells = [_dpt(),
             make_cell("segformer-b0", family="transformer", miou=0.37, latency=40, seed=2),
             make_cell("upernet-convnext-tiny", miou=0.45, latency=120, seed=3),
             make_cell("deeplabv3", miou=None, weights="random", latency=20, seed=4)]
    return load_run(write_run(tmp_path / "base", cells))


def _cur(tmp_path, cells, name="cur"):
    return load_run(write_run(tmp_path / name, cells))


def test_mann_whitney_direction_and_edge_cases():
    rng = np.random.default_rng(0)
    a, b = rng.normal(10, 1, 30), rng.normal(11, 1, 25)
    assert mann_whitney_greater(a, b) < 0.01
    assert mann_whitney_greater(b, a) > 0.99
    same = rng.normal(10, 1, 40)
    assert 0.05 < mann_whitney_greater(same[:20], same[20:]) < 0.95
    assert np.isnan(mann_whitney_greater([1.0], [2.0, 3.0]))
    assert mann_whitney_greater([1, 1, 1], [1, 1, 1]) == 1.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mann_whitney_equals_scipy_with_ties(seed):
    stats = pytest.importorskip("scipy.stats", reason="scipy is not installed")
    rng = np.random.default_rng(seed)
    a, b = rng.normal(10, 1, 30).round(1), rng.normal(10.4, 1, 25).round(1)  # rounding makes ties
    ref = stats.mannwhitneyu(b, a, alternative="greater", method="asymptotic", use_continuity=True).pvalue
    assert mann_whitney_greater(a, b) == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_scipy_statistics_equal_the_hand_written_references(seed):
    """compare calls scipy.stats; the numpy implementations it replaced (tests/stats_reference.py) check it."""
    import stats_reference as ref

    rng = np.random.default_rng(seed)
    a, b = rng.normal(100, 2, 50).round(1), rng.normal(100 + seed, 2, 40).round(1)  # rounding makes ties
    assert mann_whitney_greater(a, b) == pytest.approx(ref.mann_whitney_greater(a, b), rel=1e-9, abs=1e-300)
    assert mann_whitney_greater(b, a) == pytest.approx(ref.mann_whitney_greater(b, a), rel=1e-9, abs=1e-300)
    # both are percentile intervals over 2000 resamples: equal up to Monte Carlo noise
    assert bootstrap_median_ratio(a, b, seed=seed) == pytest.approx(ref.bootstrap_median_ratio(a, b, seed=seed),
                                                                    abs=0.004)
    for edge in (([1.0], [1.0, 2.0]), ([3.0] * 5, [3.0] * 4)):
        got, want = mann_whitney_greater(*edge), ref.mann_whitney_greater(*edge)
        assert got == want or (np.isnan(got) and np.isnan(want))
        assert np.allclose(bootstrap_median_ratio(*edge), ref.bootstrap_median_ratio(*edge), equal_nan=True)


def test_bootstrap_median_ratio_covers_the_true_ratio():
    rng = np.random.default_rng(0)
    lo, hi = bootstrap_median_ratio(rng.normal(100, 2, 50), rng.normal(120, 2, 50))
    assert lo < 1.2 < hi and hi - lo < 0.05
    assert np.isnan(bootstrap_median_ratio([1.0], [1.0, 2.0])[0])


def test_same_numbers_are_no_regression_and_unmatched_cells_are_listed(base, tmp_path):
    cur = _cur(tmp_path, [_dpt(latency=301, seed=9), make_cell("new-model", latency=10)])
    cmp = compare_runs(base, cur)
    assert cmp.exit_code == 0 and cmp.matched == 1 and cmp.compared == 1
    assert len(cmp.only_baseline) == 3 and cmp.only_current == ["new-model · ade20k · cpu · fp32 · b1"]
    assert {f.metric for f in cmp.findings} == {"mIoU", "aAcc", "latency_p50_ms", "host_peak_rss_mib"}


def test_pairing_uses_every_identity_setting(base, tmp_path):
    variants = [_dpt(precision="fp16"), _dpt(batch_size=2), _dpt(dataset="cityscapes"), _dpt(runtime="onnx"),
                _dpt(protocol={"mode": "slide", "upsample": "bilinear"}), _dpt(variant={"channels_last": True}),
                _dpt(amp="cast"), _dpt(weights="local")]
    for i, cell in enumerate(variants):
        cell["cell_id"] = f"variant{i}"
    cur = _cur(tmp_path, variants)
    cmp = compare_runs(base, cur)
    assert cmp.matched == 0 and len(cmp.only_current) == len(variants) and cmp.exit_code == 2


def test_a_failed_cell_without_weights_source_still_pairs(base, tmp_path):
    failed = _dpt(status="error", error="RuntimeError: boom")
    failed["weights"] = {"requested": None}  # the runner's record when loading the weights failed
    cmp = compare_runs(base, _cur(tmp_path, [failed]))
    assert cmp.matched == 1 and cmp.exit_code == 1
    assert cmp.regressions[0].metric == "status" and "RuntimeError: boom" in cmp.regressions[0].note


def test_accuracy_drop_beyond_threshold_fails(base, tmp_path):
    cur = _cur(tmp_path, [_dpt(miou=0.46)])
    cmp = compare_runs(base, cur)
    assert cmp.exit_code == 1 and [f.metric for f in cmp.regressions] == ["mIoU", "aAcc"]
    assert cmp.regressions[0].change == pytest.approx(-0.01)
    assert compare_runs(base, cur, {"max_miou_drop": 0.02, "max_aacc_drop": 0.02}).exit_code == 0
    # exactly at the threshold is allowed; an improvement never fails
    assert compare_runs(base, _cur(tmp_path, [_dpt(miou=0.465)], "edge"), {"max_aacc_drop": 1}).exit_code == 0
    assert compare_runs(base, _cur(tmp_path, [_dpt(miou=0.60)], "better")).exit_code == 0


def test_lost_accuracy_is_a_regression(base, tmp_path):
    cur = _cur(tmp_path, [_dpt(miou=None)])
    cmp = compare_runs(base, cur)
    assert cmp.exit_code == 1 and {f.metric for f in cmp.regressions} == {"mIoU", "aAcc"}


def test_slowdown_must_exceed_threshold_and_noise(base, tmp_path):
    slow = compare_runs(base, _cur(tmp_path, [_dpt(latency=360, seed=5)], "slow"))
    lat = next(f for f in slow.findings if f.metric == "latency_p50_ms")
    assert slow.exit_code == 1 and lat.regression and lat.p_value < 1e-6 and lat.change == pytest.approx(0.2, abs=0.02)
    # 5% slower but beyond noise: under the 10% threshold, not a regression
    small = compare_runs(base, _cur(tmp_path, [_dpt(latency=315, seed=5)], "small"))
    assert small.exit_code == 0 and next(f for f in small.findings if f.metric == "latency_p50_ms").p_value < 0.01
    assert compare_runs(base, _cur(tmp_path, [_dpt(latency=315, seed=5)], "small2"),
                        {"max_slowdown": 0.02}).exit_code == 1


def test_a_large_but_noisy_slowdown_is_not_a_regression(tmp_path):
    rng = np.random.default_rng(0)
    noisy_a = list(rng.lognormal(np.log(100), 0.6, 8))
    noisy_b = [v * 1.15 for v in noisy_a[::-1]][:6] + list(rng.lognormal(np.log(100), 0.6, 2))
    base = _dpt(latency_ms={**latency_block(100), "p50": 100.0, "samples": noisy_a})
    cur = _dpt(latency_ms={**latency_block(100), "p50": 130.0, "samples": noisy_b})
    cmp = compare_runs(load_run(write_run(tmp_path / "a", [base])), load_run(write_run(tmp_path / "b", [cur])))
    lat = next(f for f in cmp.findings if f.metric == "latency_p50_ms")
    assert lat.change == pytest.approx(0.3) and lat.p_value > 0.01 and not lat.regression and cmp.exit_code == 0
    # without raw samples the slowdown is inconclusive and reported, not failed
    few = compare_runs(load_run(write_run(tmp_path / "c", [_dpt(n=1)])),
                       load_run(write_run(tmp_path / "d", [_dpt(n=1, latency=400)])))
    lat = next(f for f in few.findings if f.metric == "latency_p50_ms")
    assert few.exit_code == 0 and "inconclusive" in lat.note


def test_memory_growth_and_a_newly_failing_cell(base, tmp_path):
    cur = _cur(tmp_path, [_dpt(memory=1200.0), make_cell("segformer-b0", family="transformer", status="oom",
                                                         error="torch.OutOfMemoryError: CUDA out of memory")])
    cmp = compare_runs(base, cur)
    assert {f.metric for f in cmp.regressions} == {"host_peak_rss_mib", "status"}
    status = next(f for f in cmp.regressions if f.metric == "status")
    assert "current oom" in status.note and "OutOfMemoryError" in status.note
    gpu_b = _dpt(memory_mib={"gpu_peak_allocated": 1000.0, "host_peak_rss": 3000.0})
    gpu_c = _dpt(memory_mib={"gpu_peak_allocated": 1050.0, "host_peak_rss": 9000.0})
    cmp = compare_runs(_cur(tmp_path, [gpu_b], "gb"), _cur(tmp_path, [gpu_c], "gc"))
    mem = next(f for f in cmp.findings if f.metric.endswith("_mib"))
    assert mem.metric == "gpu_peak_allocated_mib" and not mem.regression  # GPU figure preferred to host RSS


def test_nothing_comparable_is_exit_2(base, tmp_path):
    both_failed_b = load_run(write_run(tmp_path / "fb", [_dpt(status="oom")]))
    both_failed_c = load_run(write_run(tmp_path / "fc", [_dpt(status="oom")]))
    cmp = compare_runs(both_failed_b, both_failed_c)
    assert cmp.matched == 1 and cmp.compared == 0 and cmp.exit_code == 2 and cmp.problems


def test_markdown_summary_escapes_names_and_lists_regressions_first(base, tmp_path):
    hostile = "m|<b>x</b>_`y`"
    b = load_run(write_run(tmp_path / "hb", [make_cell(hostile, miou=0.5)]))
    c = load_run(write_run(tmp_path / "hc", [make_cell(hostile, miou=0.4)]))
    text = markdown_summary(compare_runs(b, c), "base|1", "cur")
    assert text.startswith("## segbench compare: ❌ regression")
    assert "<b>" not in text and r"m\|\<b\>x\</b\>\_\`y\`" in text and "`base\\|1`" in text
    assert text.index("### Regressions") < text.index("<details>")
    reg_line = next(line for line in text.splitlines() if "| mIoU |" in line)
    assert "50.00%" in reg_line and "40.00%" in reg_line and "-10.00 pts" in reg_line and "**regression**" in reg_line


def test_json_output_is_complete(base, tmp_path):
    data = compare_runs(base, _cur(tmp_path, [_dpt(miou=0.40)])).to_json()
    assert data["verdict"] == "regression" and data["exit_code"] == 1 and data["regressions"] == 2
    assert data["thresholds"]["max_miou_drop"] == 0.005 and len(data["only_baseline"]) == 3
    assert {"cell", "metric", "baseline", "current", "change", "threshold", "regression", "note", "p_value"} \
        <= set(data["findings"][0])
    json.dumps(data, allow_nan=False)


def test_threshold_files_yaml_and_json(tmp_path):
    y = tmp_path / "t.yaml"
    y.write_text("max_miou_drop: 0.05\nmax-slowdown: 0.2\n")
    assert load_thresholds(y)["max_miou_drop"] == 0.05 and load_thresholds(y)["max_slowdown"] == 0.2
    j = tmp_path / "t.json"
    j.write_text('{"alpha": 0.05}')
    assert load_thresholds(j)["alpha"] == 0.05 and load_thresholds(j)["max_miou_drop"] == 0.005
    for text, match in (("max_mIoU: 1\n", "unknown threshold 'max_mIoU'; expected keys: max_miou_drop"),
                        ("max_slowdown: fast\n", "'max_slowdown' = 'fast'; expected a number >= 0"),
                        ("alpha: 2\n", r"expected a number in \(0, 1\)"), ("- 1\n", "expected a mapping"),
                        ("a: [\n", "not valid YAML")):
        y.write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_thresholds(y)
    with pytest.raises(ConfigError, match="cannot read"):
        load_thresholds(tmp_path / "missing.yaml")


def _segbench(*args):
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_compare_command_exit_codes_and_outputs(base, tmp_path):
    cur = write_run(tmp_path / "cur", [_dpt(miou=0.40)])
    out = _segbench("compare", base.path, cur, "--format", "json")
    assert out.returncode == 1, out.stderr
    assert json.loads(out.stdout)["regressions"] == 2 and json.loads(out.stdout)["baseline"]["run_id"] == "base"
    assert _segbench("compare", base.path, cur, "--max-miou-drop", "0.1", "--max-aacc-drop", "0.1").returncode == 0
    th = tmp_path / "th.yaml"
    th.write_text("max_miou_drop: 0.1\nmax_aacc_drop: 0.1\n")
    summary = tmp_path / "summary.md"
    ok = _segbench("compare", base.path, cur, "--thresholds", th, "--out", summary)
    assert ok.returncode == 0 and summary.read_text().startswith("## segbench compare: ✅ no regression")
    # a command-line value overrides the file
    assert _segbench("compare", base.path, cur, "--thresholds", th, "--max-miou-drop", "0.01").returncode == 1
    th.write_text("max_mIoU: 1\n")
    bad = _segbench("compare", base.path, cur, "--thresholds", th)
    assert bad.returncode == 2 and "max_miou_drop" in bad.stderr
    missing = _segbench("compare", base.path, tmp_path / "nope")
    assert missing.returncode == 2 and "could not compare" in missing.stdout and "nope" in missing.stderr
    other = write_run(tmp_path / "other", [make_cell("x", latency=5)])
    assert _segbench("compare", base.path, other).returncode == 2


BUSY = {"wall_s": 2.0, "cpu_count": 2, "other_cpu_s": 2.6, "other_cores": 1.3, "other_share": 0.65,
        "latency": {"n": 20, "cv": 0.02}}


def test_a_flagged_measurement_is_not_judged_and_says_why(base, tmp_path):
    slow = _dpt(latency=450, seed=9, quality=BUSY)  # 1.5x slower, but measured beside a busy neighbour
    cur = load_run(write_run(tmp_path / "cur", [slow]))
    cmp = compare_runs(base, cur)
    assert not cmp.regressions and cmp.exit_code == 2 and cmp.verdict == "could not compare"
    assert len(cmp.unjudged) == 1 and "current: busy-host (other processes used 1.30 core(s)" in cmp.unjudged[0]
    assert not any(f.metric == "latency_p50_ms" for f in cmp.findings)
    assert "Timings not judged" in markdown_summary(cmp, "base", "cur")
    opted_in = compare_runs(base, cur, {"allow_flagged": 1})
    assert opted_in.exit_code == 1 and [f.metric for f in opted_in.regressions] == ["latency_p50_ms"]
    worse = load_run(write_run(tmp_path / "worse", [_dpt(miou=0.40, quality=BUSY)]))
    assert compare_runs(base, worse).exit_code == 1  # an accuracy drop does not depend on the machine


def test_runs_on_different_hardware_have_no_timing_judged(base, tmp_path):
    slow = [_dpt(latency=450, seed=9)]
    other = load_run(write_run(tmp_path / "other", slow, {"env": {**base.meta["env"], "cpu": "Another CPU"}}))
    cmp = compare_runs(base, other)
    assert cmp.exit_code == 2 and not cmp.regressions
    assert cmp.unjudged == ["every pair: timings not compared, the runs were measured on different machines "
                            "(cpu: 'Test CPU' vs 'Another CPU')"]
    assert compare_runs(base, other, {"allow_flagged": 1}).exit_code == 1
    same = load_run(write_run(tmp_path / "same", slow))
    assert compare_runs(base, same).exit_code == 1  # same machine: the slowdown is a regression
