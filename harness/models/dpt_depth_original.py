"""Original DPT depth checkpoints (MiDaS v3.0 format: ``dpt_large-midas-2f21e586.pt``,
``dpt_hybrid-midas-501f0c75.pt``, the release of the DPT paper) loaded into transformers'
``DPTForDepthEstimation``.

The original ``DPTDepthModel`` shares its encoder, reassemble and fusion modules with the
segmentation model, so the key mapping is :func:`harness.models.dpt_original.convert_state_dict`
unchanged; its depth head ``scratch.output_conv`` (conv, interpolate, conv, ReLU, conv, ReLU)
maps index for index onto transformers' ``head.head``, and it has no auxiliary head. The file
is read with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from harness.errors import WeightsError
from harness.models.dpt_original import convert_state_dict, fit_problems, read_checkpoint
from harness.models.hf import config_from_dict


def original_depth_config(spec, path: Path, attn_implementation: str | None = None):
    """The DPT config of depth registry entry ``spec`` for original file ``path`` (WeightsError if not a DPT entry)."""
    if spec is None or spec.builder not in ("hf", "dpt-finetuned") or not spec.config_path.is_file() \
            or spec.config_dict().get("model_type") != "dpt":
        raise WeightsError(f"{path}: original checkpoint files are read for the DPT depth registry models "
                           "(dpt-large-midas, dpt-hybrid-midas, dpt-hybrid-nyu, dpt-hybrid-kitti); name one of them as "
                           "the model")
    config = config_from_dict(spec.config_dict(), str(spec.config_path))
    if attn_implementation:
        config._attn_implementation = attn_implementation
    return config


def load_original_depth_checkpoint(path: Path, config) -> torch.nn.Module:
    """``DPTForDepthEstimation(config)`` with the weights of the original file ``path``.

    WeightsError naming the file and every key that does not fit otherwise.
    """
    from transformers import DPTForDepthEstimation

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        original = load_file(str(path))
    else:
        original = read_checkpoint(path)
    hybrid = bool(getattr(config, "is_hybrid", False))
    converted, _, unmapped = convert_state_dict(original, hybrid)
    model = DPTForDepthEstimation(config)
    problems = fit_problems(converted, unmapped, model.state_dict())
    if problems:
        kind = "DPT-Hybrid" if hybrid else "DPT (ViT)"
        raise WeightsError(f"{path}: does not fit the {kind} depth architecture: " + "; ".join(problems))
    model.load_state_dict(converted, strict=False)
    return model.eval()
