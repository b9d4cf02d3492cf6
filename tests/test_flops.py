"""FLOP counting: attention is counted on the CPU; figures match the analytic formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.measure.flops import count_flops, peak_tflops


def test_linear_matches_formula():
    lin = torch.nn.Linear(64, 32, bias=False)
    x = torch.randn(5, 64)
    assert count_flops(lin, x) == 2 * 5 * 64 * 32


def test_cpu_sdpa_is_counted():
    b, h, n, d = 2, 4, 50, 16
    q, k, v = (torch.randn(b, h, n, d) for _ in range(3))
    expected = 2 * (2 * b * h * n * n * d)  # Q K^T and A V
    assert count_flops(F.scaled_dot_product_attention, q, k, v) == expected


def test_sdpa_equals_eager_attention_matmuls():
    q, k, v = (torch.randn(1, 2, 33, 8) for _ in range(3))

    def eager(q, k, v):
        return torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, -1) @ v

    assert count_flops(F.scaled_dot_product_attention, q, k, v) == count_flops(eager, q, k, v)


# Device names as torch.cuda.get_device_name reports them, with the data-sheet figures written here
# (dense, no sparsity), independently of the table in harness/measure/flops.py.
DATASHEET = [
    ("NVIDIA H200", "bf16", 989.4),
    ("NVIDIA H100 80GB HBM3", "bf16", 989.4),
    ("NVIDIA H100 80GB HBM3", "fp32", 67.0),
    ("NVIDIA H100 PCIe", "fp32", 51.2),
    ("NVIDIA H100 PCIe", "fp16", 756.0),
    ("NVIDIA A100-SXM4-80GB", "tf32", 156.0),
    ("NVIDIA A100-PCIE-40GB", "fp16", 312.0),
    ("NVIDIA A100 80GB PCIe", "fp32", 19.5),
    ("NVIDIA L40S", "fp16", 362.0),
    ("NVIDIA L40", "fp16", 181.0),
    ("NVIDIA L40", "fp32", 90.5),
    ("NVIDIA L4", "fp16", 121.0),
    ("NVIDIA L4", "fp32", 30.3),
    ("NVIDIA A10", "fp16", 125.0),
    ("Tesla V100-SXM2-16GB", "fp16", 125.0),
    ("Tesla V100-PCIE-32GB", "fp32", 14.0),
    ("Tesla T4", "fp16", 65.0),
]


@pytest.mark.parametrize("name,precision,tflops", DATASHEET)
def test_peak_matches_the_data_sheet_for_the_exact_model(name, precision, tflops):
    assert peak_tflops(name, precision) == pytest.approx(tflops)


@pytest.mark.parametrize("name", ["NVIDIA A10G", "NVIDIA H100 NVL", "Tesla V100S-PCIE-32GB",
                                  "NVIDIA GeForce RTX 4090", "NVIDIA L40G", "Unknown GPU", "NVIDIA", ""])
def test_models_not_in_the_table_have_no_peak_instead_of_a_neighbours(name):
    """A10G must not borrow A10's peak, L40G not L40's, H100 NVL not the SXM part's."""
    assert peak_tflops(name, "fp16") is None


def test_no_bf16_peak_on_gpus_without_bf16_and_the_override(monkeypatch):
    assert peak_tflops("Tesla T4", "bf16") is None and peak_tflops(None, "fp32") is None
    monkeypatch.setenv("SEGBENCH_PEAK_TFLOPS", "123")
    assert peak_tflops("anything", "fp16") == 123.0
