"""Shared helpers for the performance benchmarks (run with --benchmark-enable)."""

from __future__ import annotations

import time

import pytest


@pytest.fixture
def enforce_targets(request) -> bool:
    """True when benchmarks are enabled: only then are speed ratios asserted (a smoke run otherwise)."""
    return bool(request.config.getoption("benchmark_enable"))


def best_of(fn, repeats: int = 5) -> float:
    """Fastest of ``repeats`` calls of ``fn``, in seconds (after one untimed call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
