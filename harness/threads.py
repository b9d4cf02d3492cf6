"""Running small per-image tensor work in the calling thread on the CPU.

Whole-tensor ATen kernels on the CPU start an OpenMP team once a tensor passes ~32k elements.
For the metric engines' work on label-sized maps (a few hundred thousand elements, microseconds
per kernel) a team gains little on an idle machine and costs far more on a busy one, where the
team's barriers wait for a core held by another process (docs/PERFORMANCE.md has the figures).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def one_thread_on(device: torch.device):
    """Within the block, torch uses one intra-op thread when ``device`` is the CPU; restored after."""
    if device.type != "cpu":
        yield
        return
    saved = torch.get_num_threads()
    if saved == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
