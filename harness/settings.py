"""The values a cell's settings may take, declared once for the suite validator, the model
adapters and the runtimes."""

from __future__ import annotations

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
"""fp32; tf32 (TF32 tensor cores for fp32 matmuls and convolutions, CUDA only); fp16 and bf16."""

AMP_MODES = ("autocast", "cast")
"""How fp16/bf16 is applied: ``autocast`` runs fp32 weights under torch.autocast, ``cast`` casts
the module and its inputs."""

UPSAMPLE_MODES = ("bilinear", "bicubic")
"""Interpolation of logits (or depth) back to the label's size (align_corners=False)."""

HALF_PRECISIONS = ("fp16", "bf16")
