"""Memory readings in MiB: host peak RSS of this process, CUDA peak allocated/reserved."""

from __future__ import annotations

import resource
import sys

import torch

MIB = 1024 * 1024


def host_peak_rss_mib() -> float:
    """Peak resident set size of the current process since it started, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def reset_cuda_peak(device: torch.device) -> None:
    """Reset CUDA peak statistics so the next reading covers only what follows."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def cuda_peaks_mib(device: torch.device) -> tuple[float | None, float | None]:
    """(peak allocated, peak reserved) in MiB on ``device`` since the last reset; (None, None) off CUDA."""
    if device.type != "cuda":
        return None, None
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / MIB, torch.cuda.max_memory_reserved(device) / MIB


def nvml_used_mib(device: torch.device) -> float | None:
    """Device-level used memory in MiB from NVML (all processes), or None without NVML or CUDA."""
    if device.type != "cuda":
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        index = device.index if device.index is not None else torch.cuda.current_device()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        return pynvml.nvmlDeviceGetMemoryInfo(handle).used / MIB
    except Exception:
        return None
