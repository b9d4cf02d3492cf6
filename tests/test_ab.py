"""Interleaved A/B: the decision against its formulas (scipy's t quantile and Wilcoxon test), and short
runs of real processes: a 15% slowdown, a 15% speed-up, an A/A check with a busy neighbour for part
of the run, two git revisions from their own worktrees, and a suite's cells through the runner.
Longer repetitions are in tests/benchmarks/test_ab_verdicts.py."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from ab_util import Neighbour, compute_side

from harness import ab
from harness.ab import decide, markdown_summary, run_ab
from harness.errors import ConfigError
from harness.measure.quality import BUSY_HOST_OTHER_SHARE

stats = pytest.importorskip("scipy.stats", reason="scipy is the reference (pip install 'segbench[dev]')")


def test_decide_matches_the_formulas():
    rng = np.random.default_rng(1)
    r = list(np.exp(rng.normal(np.log(1.2), 0.04, 10)))
    d = decide(r)
    logs = np.log(r)
    half = stats.t.ppf(0.975, 9) * logs.std(ddof=1) / math.sqrt(10)
    assert d.ratio == pytest.approx(math.exp(logs.mean()), rel=1e-12)
    assert d.ci == pytest.approx((math.exp(logs.mean() - half), math.exp(logs.mean() + half)), rel=1e-9)
    assert d.p_worse == pytest.approx(stats.wilcoxon(logs, alternative="greater").pvalue, rel=1e-9)
    assert d.p_better == pytest.approx(stats.wilcoxon(logs, alternative="less").pvalue, rel=1e-9)
    assert d.verdict == "regression"
    assert decide([1 / x for x in r]).verdict == "improvement"
    assert decide(list(np.exp(rng.normal(0.0, 0.01, 10)))).verdict == "no regression"
    assert decide(list(np.exp(rng.normal(0.0, 0.3, 10)))).verdict == "inconclusive"


def test_decide_needs_agreeing_pairs_and_enough_rounds():
    # the interval lies above the threshold, but one pair in four disagrees: the signed-rank test refuses
    r = [1.6, 1.7, 1.5, 0.9] * 2
    d = decide(r)
    assert d.ci[0] > 1.05 and d.p_worse >= 0.01 and d.verdict == "inconclusive"
    assert "disagree" in d.reason
    assert decide([1.3, 1.31]).verdict == "inconclusive" and "at least" in decide([1.3]).reason
    six = [1.30, 1.31, 1.29, 1.33, 1.32, 1.28]
    d6 = decide(six)  # every pair agrees, but the exact signed-rank p is 1/64 > 0.01
    assert d6.verdict == "inconclusive" and d6.p_worse == pytest.approx(1 / 64)
    assert decide([*six, 1.27]).verdict == "regression"  # 1/128 < 0.01


def _never_wrong(res, right: str) -> None:
    """The verdict is the right one or undecided ("inconclusive"; for a speed-up also "no regression",
    which is true), never the opposite. That the right verdict is reached in every repetition is a
    timing claim: tests/benchmarks/test_ab_verdicts.py measures it, beside other work too."""
    verdicts = {c.stats.verdict for c in res.cells}
    allowed = {right, "inconclusive"} | ({"no regression"} if right == "improvement" else set())
    assert verdicts <= allowed, markdown_summary(res)


def test_fifteen_percent_slowdown_is_a_regression(tmp_path):
    res = run_ab(compute_side(tmp_path, 1.0), compute_side(tmp_path, 1.15), rounds=8, work_dir=tmp_path / "w")
    assert len(res.order) == 8 and res.order[:2] == ["BA", "AB"]  # the warm-up round was AB
    _never_wrong(res, "regression")
    assert res.exit_code in (ab.EXIT_REGRESSION, ab.EXIT_CANNOT_COMPARE)
    # a timing claim only where the verdict makes one: one pair of 0.69 among eight left the ratio at
    # 0.99 (inconclusive) on a noisy 2-core box; tests/benchmarks/test_ab_verdicts.py measures the rate
    stats = res.cells[0].stats
    assert stats.verdict != "regression" or stats.ratio > 1.05


def test_fifteen_percent_speedup_is_an_improvement(tmp_path):
    res = run_ab(compute_side(tmp_path, 1.15), compute_side(tmp_path, 1.0), rounds=8, warmup_rounds=0,
                 work_dir=tmp_path / "w")
    _never_wrong(res, "improvement")
    assert res.exit_code in (ab.EXIT_OK, ab.EXIT_CANNOT_COMPARE)


def test_a_a_with_a_busy_neighbour_is_never_a_regression(tmp_path):
    neighbour = Neighbour()
    try:
        res = run_ab(compute_side(tmp_path, 1.0), compute_side(tmp_path, 1.0), rounds=10, warmup_rounds=0,
                     work_dir=tmp_path / "w", between_rounds=neighbour.between_rounds(3, 8))
    finally:
        neighbour.stop()
    assert res.cells[0].stats.verdict != "regression", markdown_summary(res)
    assert res.exit_code in (ab.EXIT_OK, ab.EXIT_CANNOT_COMPARE)
    # the rounds with the neighbour were seen as busy (the parent measures around each round), where one
    # core is enough to pass the busy-host share
    if (os.cpu_count() or 1) * BUSY_HOST_OTHER_SHARE <= 0.5:
        assert all("busy-host" in f for side in res.round_flags.values() for f in side[3:7])
    strict = res.settings | {"strict": True}
    res.settings = strict
    assert res.exit_code == ab.EXIT_CANNOT_COMPARE


def test_rounds_alternate_and_warmup_is_discarded(tmp_path):
    res = run_ab(compute_side(tmp_path, 1.0), compute_side(tmp_path, 1.0), rounds=4, warmup_rounds=2,
                 work_dir=tmp_path / "w")
    assert res.order == ["AB", "BA", "AB", "BA"]
    assert sorted(p.name for p in (tmp_path / "w" / "A").iterdir()) == [f"round-{i:02d}" for i in range(6)]
    cell = json.loads((tmp_path / "w" / "B" / "round-05" / "cell.json").read_text())
    assert res.cells[0].b_values[-1] == pytest.approx(cell["latency_ms"]["p50"])
    doc = res.to_json()
    assert doc["cells"][0]["n"] == 4 and doc["verdict"] == res.verdict


def test_failing_side_and_bad_settings_cannot_compare(tmp_path):
    bad = ab.CommandSide([sys.executable, "-c", "import sys; sys.exit('no model here')"], "broken")
    res = run_ab(compute_side(tmp_path, 1.0), bad, rounds=3, warmup_rounds=0, work_dir=tmp_path / "w")
    assert res.exit_code == ab.EXIT_CANNOT_COMPARE and "no model here" in res.problems[0]
    empty = ab.CommandSide([sys.executable, "-c", "pass"], "empty")
    res = run_ab(compute_side(tmp_path, 1.0), empty, rounds=3, warmup_rounds=0, work_dir=tmp_path / "w2")
    assert "wrote no cell result" in res.problems[0]
    for kwargs, match in (({"rounds": 2}, "rounds 2"), ({"threshold": 0.9}, "threshold"),
                          ({"quantity": "speed"}, "quantity 'speed'"), ({"alpha": 0}, "alpha")):
        with pytest.raises(ConfigError, match=match):
            run_ab(compute_side(tmp_path, 1.0), compute_side(tmp_path, 1.0), **kwargs)


FAKE_HARNESS = '''
"""A stand-in `python -m harness run SUITE --out OUT` whose latency is its FACTOR times a fixed loop."""
import json, os, sys, time
FACTOR = {factor}
_, cmd, suite, _, out = sys.argv
n = int(150_000 * FACTOR)
samples = []
for _ in range(6):
    t = time.perf_counter()
    s = sum(i * i for i in range(n))
    samples.append((time.perf_counter() - t) * 1000)
run = os.path.join(out, "fake-run")
os.makedirs(os.path.join(run, "cells"))
json.dump({{"schema_version": 1, "run_id": "fake-run", "created_at": "2026-01-01T00:00:00+00:00",
           "env": {{"harness_file": __file__}}}}, open(os.path.join(run, "run.json"), "w"))
cell = {{"schema_version": 1, "cell_id": "c", "status": "ok", "model": "m", "weights": {{"source": "random"}},
        "dataset": "synthetic", "device": "cpu", "precision": "fp32", "amp": "autocast", "batch_size": 1,
        "runtime": "pytorch", "variant": {{}}, "protocol": {{"mode": "whole", "upsample": "bilinear"}},
        "latency_ms": {{"p50": sorted(samples)[3], "mean": sum(samples) / 6, "samples": samples}},
        "suite_seen": suite}}
json.dump(cell, open(os.path.join(run, "cells", "c.json"), "w"))
'''


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_two_git_revisions_each_from_its_own_worktree(tmp_path, capsys):
    repo = tmp_path / "project"
    (repo / "harness").mkdir(parents=True)
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    revs = []
    for factor in (1.0, 1.15):
        (repo / "harness" / "__main__.py").write_text(textwrap.dedent(FAKE_HARNESS.format(factor=factor)))
        _git(repo, "add", "-A")
        _git(repo, "commit", "-qm", f"factor {factor}")
        revs.append(_git(repo, "rev-parse", "HEAD"))
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\n")
    work = tmp_path / "work"
    out = tmp_path / "summary.md"
    rc = ab.ab_main(["--rev", revs[0], "--rev", revs[1], "--repo", str(repo), str(suite), "--rounds", "8",
                     "--work-dir", str(work), "--out", str(out)])
    text = out.read_text()
    assert rc in (ab.EXIT_REGRESSION, ab.EXIT_CANNOT_COMPARE), text
    assert "improvement" not in text and "no regression" not in text.split("\n")[0]
    # each side ran its own revision's code, from its own worktree, on the suite file given
    for side, rev in (("A", revs[0]), ("B", revs[1])):
        run = json.loads(next((work / side).glob("round-03/*/run.json")).read_text())
        assert run["env"]["harness_file"].startswith(str(work / f"worktree-{rev}"))
        cell = json.loads(next((work / side).glob("round-03/*/cells/c.json")).read_text())
        assert cell["suite_seen"] == str(suite.resolve())
    assert "worktree-" not in _git(repo, "worktree", "list")  # worktrees removed afterwards
    with pytest.raises(SystemExit):
        ab.ab_main(["--rev", "x", "--quantity", "nope", str(suite)])
    capsys.readouterr()
    assert ab.ab_main(["--rev", revs[0], "--rev", "no-such-rev", "--repo", str(repo), str(suite)]) == 2
    assert "no-such-rev" in capsys.readouterr().err


def test_suite_side_runs_each_cell_in_a_fresh_process_through_the_runner(tmp_path):
    """A round of a suite side: its cells, measured by `run_cell_process`, read back for pairing."""
    from tiny_models import save_tiny_segformer

    model = save_tiny_segformer(tmp_path / "tiny-segformer")
    suite = {"name": "ab", "models": [{"name": str(model), "label": "tiny-segformer"}],
             "datasets": [{"name": "synthetic", "options": {"num_samples": 1, "image_size": [32, 32],
                                                             "num_classes": 150}}],
             "precisions": ["fp32"], "measure": {"warmup": 1, "iters": 3, "accuracy": False, "flops": False,
                                                 "stages": False, "samples": 0}}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    side = ab.SuiteSide(path)
    (cell,) = side.run_round(tmp_path / "round")
    (on_disk,) = (tmp_path / "round" / "cells").glob("*.json")
    assert cell.to_dict() == json.loads(on_disk.read_text()) and cell.status == "ok"
    assert ab._value([cell], ab._pairs([cell], [cell])[0][1], "latency_p50") == cell.latency.forward_ms["p50"]


def test_cli_markdown_and_json(tmp_path, capsys):
    script = compute_side(tmp_path, 1.0).argv
    cmd = " ".join(script)
    rc = ab.ab_main(["--cmd-a", cmd, "--cmd-b", cmd.replace(" 1.0 ", " 1.0 "), "--rounds", "3",
                     "--warmup-rounds", "0", "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == doc["exit_code"] and doc["settings"]["rounds"] == 3 and len(doc["cells"][0]["ratios"]) == 3
    assert ab.ab_main(["--cmd-a", cmd]) == 2
    assert "go together" in capsys.readouterr().err
    assert ab.ab_main([str(Path(tmp_path / "missing.yaml"))]) == 2


def test_busy_rounds_make_the_decision_stricter():
    """Most rounds flagged busy-host: 99% interval and p < 0.002, so 10 agreeing pairs with one
    reversed pair of the smallest size are still a regression, while a marginal case is not."""
    from fixtures_results import as_result, make_cell

    def cell(p50: float):
        c = make_cell("m", n=3)
        c["latency_ms"]["p50"] = p50
        return as_result(c)

    def measured(ratios):
        return [{"A": [cell(100.0)], "B": [cell(100.0 * r)]} for r in ratios]

    strong = [1.3, 1.32, 1.28, 1.31, 1.29, 1.33, 1.3, 1.27, 1.34, 1.3]
    marginal = [1.2, 1.12, 1.09, 0.98, 1.15, 1.1, 1.3, 1.08, 1.11, 1.14]
    for flagged, want in ((False, "regression"), (True, "inconclusive")):
        res = ab.ABResult("a", "b", "latency_p50", {"warmup_rounds": 0, "confidence": 0.95, "threshold": 1.05,
                                                     "alpha": 0.01})
        res.round_flags = {"A": [["busy-host"] if flagged else []] * 10, "B": [[]] * 10}
        ab._decide_cells(res, measured(marginal), 1.05, 0.01, 0.95)
        assert res.cells[0].stats.verdict == want and res.settings["busy_levels"]["used"] is flagged
        if flagged:
            assert "99% interval and p < 0.002" in markdown_summary(res)
    res = ab.ABResult("a", "b", "latency_p50", {"warmup_rounds": 0})
    res.round_flags = {"A": [["busy-host"]] * 10, "B": [["busy-host"]] * 10}
    ab._decide_cells(res, measured(strong), 1.05, 0.01, 0.95)
    assert res.cells[0].stats.verdict == "regression"


class ScriptedSide:
    """A side whose round k returns one cell with latency p50 ``values[k]`` (no process: for the loop logic)."""

    def __init__(self, name: str, values: list[float]):
        from fixtures_results import make_cell

        self.name, self.values, self.k, self.cell = name, values, 0, make_cell("m", n=3)

    def run_round(self, dest):
        from fixtures_results import as_result

        cell = json.loads(json.dumps(self.cell))
        cell["latency_ms"]["p50"] = self.values[self.k]
        self.k += 1
        return [as_result(cell)]

    def close(self):
        pass


def test_max_rounds_goes_on_only_while_undecided():
    ratios = [1.5, 0.8, 1.3, 0.9] + [1.2 + 0.01 * (k % 3) for k in range(20)]
    res = run_ab(ScriptedSide("a", [100.0] * 24), ScriptedSide("b", [100.0 * r for r in ratios]), rounds=4,
                 warmup_rounds=0, max_rounds=24)
    levels = res.settings["busy_levels"]
    # the reference: the first round count from 4 on at which the ratios so far are decided
    first = next(n for n in range(4, 25)
                 if ab.settled(decide(ratios[:n], 1.05, levels["alpha"], levels["confidence"]), 1.05))
    assert len(res.order) == first < 24 and res.cells[0].stats.verdict == "regression"
    fixed = run_ab(ScriptedSide("a", [100.0] * 24), ScriptedSide("b", [100.0 * r for r in ratios]), rounds=4,
                   warmup_rounds=0)
    assert len(fixed.order) == 4 and fixed.cells[0].stats.verdict == "inconclusive"
    # a speed-up first seen as "no regression" goes on until it is an improvement
    faster = [0.8, 0.95, 0.85, 0.9, 0.86] + [0.87 + 0.01 * (k % 3) for k in range(19)]
    res = run_ab(ScriptedSide("a", [100.0] * 24), ScriptedSide("b", [100.0 * r for r in faster]), rounds=5,
                 warmup_rounds=0, max_rounds=24)
    assert decide(faster[:5]).verdict == "no regression" and res.cells[0].stats.verdict == "improvement"
    assert len(res.order) > 5


def test_parsers_register_on_a_segbench_style_command_line():
    import argparse

    from harness.history.cli import add_parsers

    p = argparse.ArgumentParser(prog="segbench")
    sub = p.add_subparsers(dest="command", required=True)
    ab.add_parser(sub)
    add_parsers(sub.add_parser("history").add_subparsers(dest="history_command", required=True))
    args = p.parse_args(["ab", "suite.yaml", "--rounds", "5", "--max-rounds", "9"])
    assert args.func is ab.cmd_ab and (args.rounds, args.max_rounds, args.suites) == (5, 9, ["suite.yaml"])
    args = p.parse_args(["history", "check", "--recent", "3", "--quantity", "mIoU"])
    assert args.func.__name__ == "cmd_check" and args.recent == 3 and args.quantity == ["mIoU"]
