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


def test_peak_table_and_override(monkeypatch):
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(989.4)
    assert peak_tflops("NVIDIA H100 PCIe", "fp32") == pytest.approx(51.2)
    assert peak_tflops("Unknown GPU", "fp32") is None and peak_tflops(None, "fp32") is None
    monkeypatch.setenv("SEGBENCH_PEAK_TFLOPS", "123")
    assert peak_tflops("anything", "fp16") == 123.0
