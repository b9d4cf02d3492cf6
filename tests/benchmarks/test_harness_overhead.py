"""Harness overhead: segbench's model-only latency vs a bare ``model(x)`` loop timed the same way
in the same process. Target (asserted with --benchmark-enable): within 2%.

Run: .venv/bin/pytest tests/benchmarks/test_harness_overhead.py --benchmark-enable -s
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

import harness
from harness.measure.latency import time_iterations

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_models import save_tiny_segformer  # noqa: E402


def bare_loop(module, inputs, iters: int) -> list[float]:
    """What a user would write: inference_mode, model(x), a monotonic clock around each call (ms)."""
    out = []
    with torch.inference_mode():
        for i in range(iters):
            t0 = time.perf_counter_ns()
            module(pixel_values=inputs[i % len(inputs)])
            out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def test_model_only_latency_matches_a_bare_loop(tmp_path, benchmark, enforce_targets):
    path = save_tiny_segformer(tmp_path / "m", image_size=256)
    model = harness.load_model(str(path))
    g = torch.Generator().manual_seed(0)
    inputs = [torch.rand((1, 3, 256, 256), generator=g) for _ in range(4)]
    iters = 30 if enforce_targets else 3
    ours, bare = [], []
    for _ in range(5 if enforce_targets else 1):  # interleave blocks so drift hits both alike
        ours += time_iterations(model.forward, inputs, warmup=3, iters=iters)
        bare += bare_loop(model.module, inputs, iters)
    benchmark(model.forward, inputs[0])
    ratio = statistics.median(ours) / statistics.median(bare)
    print(f"\nmodel-only latency, tiny SegFormer at 256x256, CPU {torch.get_num_threads()} threads: segbench "
          f"median {statistics.median(ours):.3f} ms, bare loop {statistics.median(bare):.3f} ms, ratio {ratio:.3f}")
    if enforce_targets:
        assert abs(ratio - 1.0) <= 0.02
