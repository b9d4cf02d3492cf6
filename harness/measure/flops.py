"""Forward FLOPs with ``torch.utils.flop_counter``, attention included.

The stock counter has formulas for the CUDA attention kernels only; on the CPU,
``scaled_dot_product_attention`` dispatches to ``_scaled_dot_product_flash_attention_for_cpu``,
which it would count as zero. We register the same formula (2 matmuls: Q K^T and A V) for it.
One multiply-add counts as 2 FLOPs, as the counter does.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

aten = torch.ops.aten


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _custom_mapping() -> dict:
    mapping = {}
    for name in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_fused_attention_overrideable"):
        op = getattr(aten, name, None)
        if op is not None:
            mapping[op] = _cpu_sdpa_flop
    return mapping


def count_flops(fn, *args, **kwargs) -> int:
    """Total FLOPs of ``fn(*args, **kwargs)`` (one call), attention kernels included."""
    with FlopCounterMode(display=False, custom_mapping=_custom_mapping()) as counter, torch.inference_mode():
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


# Dense peak throughput in TFLOP/s by GPU name fragment and precision (vendor data sheets;
# tensor-core figures without sparsity). Override with SEGBENCH_PEAK_TFLOPS=<number>.
PEAK_TFLOPS = {
    "H200": {"fp32": 67.0, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4},
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "fp16": 756.0, "bf16": 756.0},
    "H100": {"fp32": 67.0, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4},
    "A100": {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0},
    "L40S": {"fp32": 91.6, "tf32": 183.0, "fp16": 362.0, "bf16": 362.0},
    "L4": {"fp32": 30.3, "tf32": 60.0, "fp16": 121.0, "bf16": 121.0},
    "A10": {"fp32": 31.2, "tf32": 62.5, "fp16": 125.0, "bf16": 125.0},
    "V100": {"fp32": 15.7, "tf32": 15.7, "fp16": 125.0, "bf16": None},
    "T4": {"fp32": 8.1, "tf32": 8.1, "fp16": 65.0, "bf16": None},
}


def peak_tflops(gpu_name: str | None, precision: str) -> float | None:
    """The device's dense peak in TFLOP/s for ``precision``, or None when unknown."""
    import os

    override = os.environ.get("SEGBENCH_PEAK_TFLOPS")
    if override:
        return float(override)
    if not gpu_name:
        return None
    for key, peaks in PEAK_TFLOPS.items():  # most specific names first
        if key in gpu_name:
            return peaks.get(precision)
    return None
