"""Latency timer (with a fake clock), summaries against numpy, memory readings, fingerprint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.measure import latency, memory
from harness.measure.env import comparable_keys, fingerprint


class FakeClock:
    """A nanosecond clock that advances by a scripted amount on each call to the timed function."""

    def __init__(self, durations_ms):
        self.now = 0
        self.durations = list(durations_ms)
        self.calls = 0

    def __call__(self) -> int:
        return self.now

    def work(self, _x) -> None:
        self.now += int(self.durations[self.calls % len(self.durations)] * 1e6)
        self.calls += 1


def test_warmup_is_not_timed_and_samples_are_exact():
    clock = FakeClock([100.0, 50.0, 10.0, 20.0, 30.0, 40.0])
    samples = latency.time_iterations(clock.work, [1, 2], warmup=2, iters=4, clock=clock)
    assert samples == pytest.approx([10.0, 20.0, 30.0, 40.0])
    assert clock.calls == 6


def test_min_time_extends_the_loop():
    clock = FakeClock([100.0])
    samples = latency.time_iterations(clock.work, [1], warmup=0, iters=2, min_time_s=1.0, clock=clock)
    assert len(samples) == 10  # 10 x 100 ms reach 1 s


def test_inputs_rotate():
    seen = []
    latency.time_iterations(seen.append, ["a", "b", "c"], warmup=1, iters=5)
    assert seen == ["a", "b", "c", "a", "b", "c"]


def test_no_inputs_is_an_error():
    with pytest.raises(ValueError):
        latency.time_iterations(lambda x: x, [], warmup=0, iters=1)


def test_summary_matches_numpy():
    rng = np.random.default_rng(0)
    xs = rng.gamma(3.0, 2.0, size=257)
    s = latency.summarize(xs)
    assert s["n"] == 257 and s["samples"] == pytest.approx(list(xs))
    assert s["p50"] == pytest.approx(np.median(xs))
    assert s["p90"] == pytest.approx(np.percentile(xs, 90))
    assert s["p99"] == pytest.approx(np.percentile(xs, 99))
    assert s["mean"] == pytest.approx(xs.mean())
    assert s["std"] == pytest.approx(xs.std(ddof=1))
    assert s["cv"] == pytest.approx(xs.std(ddof=1) / xs.mean())
    assert s["min"] == pytest.approx(xs.min())


def test_summary_of_nothing_and_of_one():
    assert latency.summarize([])["n"] == 0
    one = latency.summarize([5.0])
    assert one["std"] == 0.0 and one["p99"] == 5.0


def test_real_clock_measures_sleep():
    import time

    samples = latency.time_iterations(lambda _: time.sleep(0.01), [0], warmup=0, iters=3)
    assert all(9.0 <= s < 200.0 for s in samples)


def test_host_peak_rss_grows_with_allocation():
    before = memory.host_peak_rss_mib()
    block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB touched
    after = memory.host_peak_rss_mib()
    assert block.sum() > 0
    assert after >= before and after > 0


def test_cuda_readings_are_none_off_cuda():
    assert memory.cuda_peaks_mib(torch.device("cpu")) == (None, None)


def test_fingerprint_has_the_essentials():
    env = fingerprint()
    for key in ("python", "torch", "transformers", "cpu", "torch_threads", "cuda_available", "git_sha"):
        assert key in env
    assert env["torch"] == torch.__version__
    assert set(comparable_keys(env)) == {"torch", "transformers", "cpu", "gpu", "cuda", "torch_threads"}


def test_warmup_until_stable_stops_once_the_window_is_flat():
    # first calls are slow (cold), then it settles at 10 ms
    clock = FakeClock([500.0, 300.0, 200.0, 50.0, 10.0, 10.0, 10.0, 10.0, 10.0] + [10.0] * 20)
    info: dict = {}
    samples = latency.time_iterations(clock.work, [0], warmup=1, iters=3, clock=clock, warmup_cv=0.05,
                                      warmup_window=4, info=info)
    assert info == {"warmup_iters": 8, "warmup_stable": True}
    assert samples == pytest.approx([10.0, 10.0, 10.0])


def test_warmup_until_stable_gives_up_at_the_cap():
    clock = FakeClock([10.0, 30.0])  # never stable
    info: dict = {}
    latency.time_iterations(clock.work, [0], warmup=0, iters=1, clock=clock, warmup_cv=0.01,
                            warmup_window=3, max_warmup=7, info=info)
    assert info == {"warmup_iters": 7, "warmup_stable": False}
