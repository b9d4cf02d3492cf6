"""torch.distributed support: accuracy cells split their data across ranks under torchrun.

Launched as ``torchrun --nproc-per-node N -m harness run SUITE``, every rank expands the same
suite; each accuracy cell evaluates a disjoint share of the samples (rank r takes samples
r, r+N, r+2N, ...: no sample twice, none dropped, no padding), the confusion matrices are
summed with an all-reduce, and rank 0 writes the cell's result with the world size recorded.
Latency and memory are measured on rank 0 only (a single process), and the result says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """Rank, world size and local rank from torchrun's environment variables (1 process otherwise)."""
    return DistInfo(rank=int(os.environ.get("RANK", 0)), world_size=int(os.environ.get("WORLD_SIZE", 1)),
                    local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def init() -> DistInfo:
    """Join the process group torchrun set up (gloo for CPU tensors, nccl as well when CUDA exists)."""
    info = env_info()
    if info.active and not dist.is_initialized():
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(info.local_rank)
    return info


def current() -> DistInfo:
    """The running process's place in the group (rank 0 of 1 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(),
                        local_rank=int(os.environ.get("LOCAL_RANK", 0)))
    return DistInfo()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over all ranks (returns ``t`` unchanged when not distributed)."""
    if not current().active:
        return t
    if t.device.type == "cuda":
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t
    out = t.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def gather_objects(obj) -> list:
    """Every rank's ``obj``, in rank order (``[obj]`` when not distributed)."""
    if not current().active:
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank."""
    if not current().active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if current().active:
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
