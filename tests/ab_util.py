"""Cheap A/B sides for tests: a synthetic compute process that writes a cell result, and a busy neighbour.

``compute_side(tmp, scale)`` is a command side whose process times a pure-Python loop of
``scale`` x a fixed amount of work (single-threaded, no imports beyond the standard library)
and writes a cell result with the latency samples, as a cell process would. The same scale on
both sides is an A/A check; 1.15 is a 15% slowdown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from harness.ab import CommandSide

WORK_SCRIPT = r'''
import json, sys, time
out, scale, iters = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
n = int(200_000 * scale)
def work():
    s = 0
    for i in range(n):
        s += i * i
    return s
samples = []
for k in range(iters + 1):
    t = time.perf_counter()
    work()
    samples.append((time.perf_counter() - t) * 1000.0)
samples = samples[1:]
srt = sorted(samples)
cell = {"schema_version": 1, "cell_id": "compute", "status": "ok", "model": "synthetic-compute",
        "weights": {"source": "random"}, "dataset": "none", "device": "cpu", "precision": "fp32",
        "amp": "autocast", "batch_size": 1, "runtime": "pytorch", "variant": {},
        "protocol": {"mode": "whole", "upsample": "bilinear"},
        "latency_ms": {"p50": srt[len(srt) // 2], "mean": sum(samples) / len(samples), "samples": samples},
        "throughput_ips": 1000.0 * len(samples) / sum(samples)}
with open(out + "/cell.json", "w") as f:
    json.dump(cell, f)
'''
SPIN = "import time\nt = time.time()\nwhile time.time() - t < 600: pass\n"


def compute_side(tmp: Path, scale: float, iters: int = 7, name: str | None = None) -> CommandSide:
    script = Path(tmp) / "ab_work.py"
    if not script.exists():
        script.write_text(WORK_SCRIPT)
    return CommandSide([sys.executable, str(script), "{out}", str(scale), str(iters)], name or f"compute x{scale:g}")


class Neighbour:
    """A CPU-bound process pinned to one core, started and stopped on request (by its pid)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if self.proc is None:
            self.proc = subprocess.Popen([sys.executable, "-c", SPIN])
            try:
                os.sched_setaffinity(self.proc.pid, {max(os.sched_getaffinity(0))})
            except (AttributeError, OSError):
                pass

    def stop(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def between_rounds(self, start_at: int, stop_at: int):
        """A ``run_ab`` callback: the neighbour runs from round ``start_at`` until round ``stop_at``."""
        def hook(i: int) -> None:
            if i == start_at:
                self.start()
            elif i == stop_at:
                self.stop()
        return hook
