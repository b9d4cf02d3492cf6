"""A/B verdicts over repetitions: A/A beside a busy neighbour, a 15% slowdown, a 15% speed-up.

Run: .venv/bin/pytest tests/benchmarks/test_ab_verdicts.py --benchmark-enable -s
Each repetition is a full ``run_ab`` of 10 measured rounds (1 warm-up), going on up to 60 while
undecided, of a pure-Python compute process (tests/ab_util.py) on each side. Asserted with --benchmark-enable, over 10 repetitions:
the A/A check with a CPU-bound neighbour on one core for rounds 4-8 is never a regression (flags
and "could not compare" are fine); B at 1.15x the work is a regression in every repetition and
B at 1/1.15 an improvement in every one. Without it, one short repetition of each checks that
no verdict is the opposite one.
"""

from __future__ import annotations

import collections

import pytest
from ab_util import Neighbour, compute_side

from harness.ab import markdown_summary, run_ab

REPEATS = 10


def _repeat(tmp_path, enforce: bool, a: float, b: float, neighbour: bool = False) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    flagged = 0
    for k in range(REPEATS if enforce else 1):
        n = Neighbour()
        try:
            res = run_ab(compute_side(tmp_path, a), compute_side(tmp_path, b), rounds=10 if enforce else 4,
                         max_rounds=60 if enforce else 4, warmup_rounds=1, work_dir=tmp_path / f"{a:g}-{b:g}-{k}",
                         between_rounds=n.between_rounds(4, 9) if neighbour else None)
        finally:
            n.stop()
        counts[res.cells[0].stats.verdict] += 1
        flagged += sum(res.flagged_rounds.values())
        ci = res.cells[0].stats.ci
        print(f"A x{a:g} / B x{b:g}{' + neighbour' if neighbour else ''} #{k}: {res.cells[0].stats.verdict} "
              f"after {len(res.order)} rounds, ratio {res.cells[0].stats.ratio:.3f}, interval "
              f"[{ci[0]:.3f}, {ci[1]:.3f}], flagged rounds {res.flagged_rounds}")
        if not enforce:
            print(markdown_summary(res))
    print(f"verdicts {dict(counts)}; {flagged} flagged round(s) in all")
    return counts


def test_a_a_beside_a_busy_neighbour_is_never_a_regression(tmp_path, enforce_targets):
    counts = _repeat(tmp_path, enforce_targets, 1.0, 1.0, neighbour=True)
    assert counts["regression"] == 0


def test_fifteen_percent_slowdown_is_a_regression_every_time(tmp_path, enforce_targets):
    counts = _repeat(tmp_path, enforce_targets, 1.0, 1.15)
    assert counts["improvement"] == counts["no regression"] == 0
    if enforce_targets:
        assert counts["regression"] == REPEATS


def test_fifteen_percent_speedup_is_an_improvement_every_time(tmp_path, enforce_targets):
    counts = _repeat(tmp_path, enforce_targets, 1.15, 1.0)
    assert counts["regression"] == 0
    if enforce_targets:
        assert counts["improvement"] == REPEATS


@pytest.fixture(autouse=True)
def _needs_proc():
    import os

    if not os.path.exists("/proc/stat"):
        pytest.skip("needs Linux /proc/stat for the round flags")
