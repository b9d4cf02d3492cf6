"""Forward FLOPs with ``torch.utils.flop_counter``, attention included.

The stock counter has formulas for the CUDA attention kernels only; on the CPU,
``scaled_dot_product_attention`` dispatches to ``_scaled_dot_product_flash_attention_for_cpu``,
which it would count as zero. We register the same formula (2 matmuls: Q K^T and A V) for it.
One multiply-add counts as 2 FLOPs, as the counter does.
"""

from __future__ import annotations

import re

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


# Dense peak throughput in TFLOP/s per GPU model and form factor (vendor data sheets; tensor-core
# figures without sparsity, i.e. half the data sheets' starred "with sparsity" values). Keys are
# exact model names as CUDA reports them (upper case); "" is a model sold in one form. tf32 on
# GPUs without TF32 (V100, T4) runs fp32 matmuls, so it takes the fp32 figure. Models not listed
# (A10G, H100 NVL, V100S, consumer GeForce cards...) have no peak: the share of peak stays null.
# Override with SEGBENCH_PEAK_TFLOPS=<number>.
_H100_SXM = {"fp32": 67.0, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4}
_A100 = {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0}
PEAK_TFLOPS: dict[str, dict[str, dict[str, float | None]]] = {
    "H200": {"SXM": _H100_SXM},
    "H100": {"SXM": _H100_SXM, "PCIe": {"fp32": 51.2, "tf32": 378.0, "fp16": 756.0, "bf16": 756.0}},
    "A100": {"SXM": _A100, "PCIe": _A100},
    "L40S": {"": {"fp32": 91.6, "tf32": 183.0, "fp16": 362.0, "bf16": 362.0}},
    "L40": {"": {"fp32": 90.5, "tf32": 90.5, "fp16": 181.0, "bf16": 181.0}},
    "L4": {"": {"fp32": 30.3, "tf32": 60.0, "fp16": 121.0, "bf16": 121.0}},
    "A10": {"": {"fp32": 31.2, "tf32": 62.5, "fp16": 125.0, "bf16": 125.0}},
    "V100": {"SXM": {"fp32": 15.7, "tf32": 15.7, "fp16": 125.0, "bf16": None},
             "PCIe": {"fp32": 14.0, "tf32": 14.0, "fp16": 112.0, "bf16": None}},
    "T4": {"": {"fp32": 8.1, "tf32": 8.1, "fp16": 65.0, "bf16": None}},
}
_VENDOR_WORDS = ("NVIDIA", "TESLA")


def gpu_model(gpu_name: str) -> tuple[str, str]:
    """(model, form factor) of a CUDA device name: "NVIDIA A100-PCIE-40GB" -> ("A100", "PCIe").

    The model is the first word after the vendor words, matched exactly later (L4 is not L40,
    A10 is not A10G). The form is "PCIe", "NVL" or "SXM" when the name says so, else "".
    """
    words = [w for w in re.split(r"[\s_-]+", gpu_name.strip()) if w]
    words = [w for w in words if w.upper() not in _VENDOR_WORDS]
    if not words:
        return "", ""
    rest = {w.upper() for w in words[1:]}
    form = "PCIe" if "PCIE" in rest else "NVL" if "NVL" in rest else \
        "SXM" if any(w.startswith("SXM") for w in rest) else ""
    return words[0].upper(), form


def peak_tflops(gpu_name: str | None, precision: str) -> float | None:
    """The device's dense peak in TFLOP/s for ``precision``, or None when the model is not in the table.

    A model sold in several forms defaults to SXM when the name gives none (CUDA names SXM parts
    "NVIDIA H100 80GB HBM3", "NVIDIA H200"); a form the table lacks (H100 NVL) has no peak.
    """
    import os

    override = os.environ.get("SEGBENCH_PEAK_TFLOPS")
    if override:
        return float(override)
    if not gpu_name:
        return None
    model, form = gpu_model(gpu_name)
    forms = PEAK_TFLOPS.get(model)
    if forms is None:
        return None
    peaks = forms[""] if "" in forms else forms.get(form or "SXM")
    return None if peaks is None else peaks.get(precision)
