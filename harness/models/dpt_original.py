"""Original DPT checkpoints (``dpt_large-ade20k-*.pt``, ``dpt_hybrid-ade20k-*.pt``, the release of
the DPT paper) loaded into transformers' DPTForSemanticSegmentation by an explicit key mapping.

The original model is ``DPTSegmentationModel``: a timm ViT (``pretrained.model.*``; for the
hybrid, a BiT ResNet-50 stem under ``pretrained.model.patch_embed.backbone``), reassemble
blocks ``pretrained.act_postprocess{1..4}``, ``scratch.layer{1..4}_rn`` convolutions,
fusion blocks ``scratch.refinenet{1..4}`` (refinenet4 fuses first), the head
``scratch.output_conv`` and ``auxlayer``. The file is read with ``torch.load(...,
weights_only=True)``: a pickle that needs arbitrary code is refused.

The network is built with the numerics those checkpoints were trained with (timm 0.4.5, which
the original code pins), where they differ from transformers' hub-format DPT:

- ViT LayerNorm epsilon 1e-6 (timm's ``partial(nn.LayerNorm, eps=1e-6)``), not the config's 1e-12;
- the hybrid's ResNet weight standardisation ``(w - mean) / (std + 1e-5)`` with the biased std
  (timm's ``StdConv2dSame``), not transformers' BiT ``(w - mean) / sqrt(var + 1e-8)``.

Everything else (GroupNorm and BatchNorm epsilons, SAME padding, GELU, attention) already agrees.
Hub-format models keep transformers' own numerics.
"""

from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers.models.bit.modeling_bit import WeightStandardizedConv2d

from harness.errors import WeightsError

ORIGINAL_LAYER_NORM_EPS = 1e-6  # timm 0.4.5 VisionTransformer
ORIGINAL_STD_CONV_EPS = 1e-5  # timm 0.4.5 StdConv2dSame
ORIGINAL_NUMERICS = {"layer_norm_eps": ORIGINAL_LAYER_NORM_EPS,
                     "weight_standardization": f"(w - mean) / (std + {ORIGINAL_STD_CONV_EPS:g}), biased std"}

IGNORED = (re.compile(r"^pretrained\.model\.head\."), re.compile(r"^pretrained\.model\.fc_norm\."))

_RULES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^pretrained\.model\.cls_token$"), "dpt.embeddings.cls_token"),
    (re.compile(r"^pretrained\.model\.pos_embed$"), "dpt.embeddings.position_embeddings"),
    (re.compile(r"^pretrained\.model\.patch_embed\.backbone\.stem\.conv\.weight$"),
     "dpt.embeddings.backbone.bit.embedder.convolution.weight"),
    (re.compile(r"^pretrained\.model\.patch_embed\.backbone\.stem\.norm\.(weight|bias)$"),
     r"dpt.embeddings.backbone.bit.embedder.norm.\1"),
    (re.compile(r"^pretrained\.model\.patch_embed\.backbone\.stages\.(\d+)\.blocks\.(\d+)\.(.+)$"),
     r"dpt.embeddings.backbone.bit.encoder.stages.\1.layers.\2.\3"),
    (re.compile(r"^pretrained\.model\.blocks\.(\d+)\.norm1\.(weight|bias)$"), r"dpt.encoder.layer.\1.layernorm_before.\2"),
    (re.compile(r"^pretrained\.model\.blocks\.(\d+)\.norm2\.(weight|bias)$"), r"dpt.encoder.layer.\1.layernorm_after.\2"),
    (re.compile(r"^pretrained\.model\.blocks\.(\d+)\.attn\.proj\.(weight|bias)$"),
     r"dpt.encoder.layer.\1.attention.output.dense.\2"),
    (re.compile(r"^pretrained\.model\.blocks\.(\d+)\.mlp\.fc1\.(weight|bias)$"), r"dpt.encoder.layer.\1.intermediate.dense.\2"),
    (re.compile(r"^pretrained\.model\.blocks\.(\d+)\.mlp\.fc2\.(weight|bias)$"), r"dpt.encoder.layer.\1.output.dense.\2"),
    (re.compile(r"^pretrained\.model\.norm\.(weight|bias)$"), r"dpt.layernorm.\1"),
    (re.compile(r"^scratch\.output_conv\.(\d+)\.(.+)$"), r"head.head.\1.\2"),
    (re.compile(r"^auxlayer\.(\d+)\.(.+)$"), r"auxiliary_head.head.\1.\2"),
]
_QKV = re.compile(r"^pretrained\.model\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)$")
_PATCH = re.compile(r"^pretrained\.model\.patch_embed\.proj\.(weight|bias)$")
_READOUT = re.compile(r"^pretrained\.act_postprocess(\d)\.0\.project\.0\.(weight|bias)$")
_POST = re.compile(r"^pretrained\.act_postprocess(\d)\.([34])\.(weight|bias)$")
_RN = re.compile(r"^scratch\.layer(\d)_rn\.weight$")
_FUSE = re.compile(r"^scratch\.refinenet(\d)\.(out_conv|resConfUnit(\d)\.(conv|bn)(\d))\.(.+)$")


def map_key(key: str, hybrid: bool) -> list[str] | None:
    """transformers key(s) for an original key (three for a fused qkv), or None when unknown."""
    m = _QKV.match(key)
    if m:
        return [f"dpt.encoder.layer.{m[1]}.attention.attention.{p}.{m[2]}" for p in ("query", "key", "value")]
    m = _PATCH.match(key)
    if m:
        return [f"dpt.embeddings.projection.{m[1]}" if hybrid else f"dpt.embeddings.patch_embeddings.projection.{m[1]}"]
    m = _READOUT.match(key)
    if m:
        return [f"neck.reassemble_stage.readout_projects.{int(m[1]) - 1}.0.{m[2]}"]
    m = _POST.match(key)
    if m:
        part = "projection" if m[2] == "3" else "resize"
        return [f"neck.reassemble_stage.layers.{int(m[1]) - 1}.{part}.{m[3]}"]
    m = _RN.match(key)
    if m:
        return [f"neck.convs.{int(m[1]) - 1}.weight"]
    m = _FUSE.match(key)
    if m:
        layer = 4 - int(m[1])  # refinenet4 is the first fusion layer
        if m[2] == "out_conv":
            return [f"neck.fusion_stage.layers.{layer}.projection.{m[6]}"]
        kind = "convolution" if m[4] == "conv" else "batch_norm"
        return [f"neck.fusion_stage.layers.{layer}.residual_layer{m[3]}.{kind}{m[5]}.{m[6]}"]
    for pattern, target in _RULES:
        if pattern.match(key):
            return [pattern.sub(target, key)]
    return None


def convert_state_dict(original: dict[str, torch.Tensor], hybrid: bool) -> tuple[dict, list[str], list[str]]:
    """(transformers state dict, ignored keys, unmapped keys) for an original DPT state dict."""
    out, ignored, unmapped = {}, [], []
    for key, value in original.items():
        if any(p.match(key) for p in IGNORED):
            ignored.append(key)
            continue
        targets = map_key(key, hybrid)
        if targets is None:
            unmapped.append(key)
        elif len(targets) == 3:
            for t, part in zip(targets, value.chunk(3, dim=0), strict=True):
                out[t] = part.clone()
        else:
            out[targets[0]] = value
    return out, ignored, unmapped


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, read without running code from the file."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise WeightsError(f"{path}: refused to load: the checkpoint needs Python objects beyond tensors and plain "
                           f"containers, and loading them could run code from the file ({str(e).splitlines()[0]}). "
                           "Re-save it as a plain state dict (or safetensors) in a trusted environment.") from None
    except (RuntimeError, OSError, EOFError) as e:
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({e})") from None
    if isinstance(data, dict) and "model" in data and isinstance(data["model"], dict):
        data = data["model"]  # the original release's {"model": ..., "optimizer": ...} form
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors")
    return data


class OriginalStdConv2d(WeightStandardizedConv2d):
    """transformers' BiT convolution with timm 0.4.5's weight standardisation: (w - mean) / (std + eps)."""

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            hidden_state = self.pad(hidden_state)
        std, mean = torch.std_mean(self.weight, dim=[1, 2, 3], keepdim=True, unbiased=False)
        weight = (self.weight - mean) / (std + self.eps)
        return F.conv2d(hidden_state, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


def original_numerics_config(config):
    """A copy of ``config`` with the original ViT LayerNorm epsilon."""
    config = copy.deepcopy(config)
    config.layer_norm_eps = ORIGINAL_LAYER_NORM_EPS
    return config


def use_original_weight_standardization(model: torch.nn.Module) -> int:
    """Switch every BiT weight-standardised convolution of ``model`` to timm's formula; returns how many."""
    n = 0
    for module in model.modules():
        if isinstance(module, WeightStandardizedConv2d):
            module.__class__ = OriginalStdConv2d
            module.eps = ORIGINAL_STD_CONV_EPS
            n += 1
    return n


def load_original_checkpoint(path: Path, config) -> torch.nn.Module:
    """The any-size DPT (:mod:`harness.models.dpt`) with the weights of the original checkpoint ``path``.

    Built with the original numerics (module docstring); ``model.original_numerics`` records them.
    """
    from harness.models.dpt import DPTAnySizeForSemanticSegmentation

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        original = load_file(str(path))
    else:
        original = read_checkpoint(path)
    hybrid = bool(getattr(config, "is_hybrid", False))
    converted, _, unmapped = convert_state_dict(original, hybrid)
    model = DPTAnySizeForSemanticSegmentation(original_numerics_config(config))
    _check_fit(path, hybrid, converted, unmapped, model.state_dict())
    model.load_state_dict(converted, strict=False)
    use_original_weight_standardization(model)
    model.original_numerics = dict(ORIGINAL_NUMERICS)
    return model.eval()


def fit_problems(converted: dict, unmapped: list[str], expected: dict) -> list[str]:
    """What keeps a converted state dict from fitting ``expected``: unmapped original keys, model keys
    missing from the checkpoint, shape mismatches, mapped keys the model does not have (empty: it fits)."""
    missing = [k for k in expected if k not in converted and not k.endswith("num_batches_tracked")]
    mismatched = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
                  for k, v in converted.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    unexpected = [k for k in converted if k not in expected]
    problems = []
    for title, items in (("unmapped original keys", unmapped), ("model keys missing from the checkpoint", missing),
                         ("shape mismatches", mismatched), ("mapped keys the model does not have", unexpected)):
        if items:
            problems.append(f"{len(items)} {title}: " + ", ".join(items[:12]) + (" ..." if len(items) > 12 else ""))
    return problems


def _check_fit(path: Path, hybrid: bool, converted: dict, unmapped: list[str], expected: dict) -> None:
    """WeightsError listing unmapped, missing, mis-shaped and unexpected keys, if any."""
    problems = fit_problems(converted, unmapped, expected)
    if problems:
        kind = "DPT-Hybrid" if hybrid else "DPT (ViT)"
        raise WeightsError(f"{path}: does not fit the {kind} architecture: " + "; ".join(problems))
