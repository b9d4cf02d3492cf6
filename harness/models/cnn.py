"""Family rules: which architectures count as CNNs, and the settings that do not apply to them.

Reports group models by family: ``"dpt"`` (DPT variants), ``"cnn"`` (UperNet-ConvNeXt,
DeepLab, FCN, LRASPP, MobileNet...) and ``"transformer"`` (SegFormer, BEiT and other
attention-based encoders). A CNN has no attention, so an attention implementation is a
configuration error for it rather than a silent no-op.
"""

from __future__ import annotations

from harness.errors import ConfigError, UnsupportedError

FAMILIES = ("dpt", "cnn", "transformer")
CNN_MODEL_TYPES = frozenset({"mobilenet_v1", "mobilenet_v2", "mobilevit", "mobilevitv2", "convnext", "convnextv2",
                             "resnet", "bit", "regnet", "efficientnet"})
TRANSFORMER_MODEL_TYPES = frozenset({"segformer", "beit", "data2vec-vision", "mask2former", "maskformer", "oneformer",
                                     "dinat", "swin", "swinv2", "vit", "dinov2"})
ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")


def family_of(config) -> str:
    """Family of a transformers config: ``"dpt"``, ``"cnn"`` or ``"transformer"``.

    UperNet takes the family of its backbone (ConvNeXt -> cnn, Swin/BEiT -> transformer).
    """
    model_type = getattr(config, "model_type", "")
    if model_type == "dpt":
        return "dpt"
    if model_type == "upernet":
        backbone = getattr(getattr(config, "backbone_config", None), "model_type", "")
        return "transformer" if backbone in TRANSFORMER_MODEL_TYPES else "cnn"
    if model_type in TRANSFORMER_MODEL_TYPES:
        return "transformer"
    return "cnn"


def check_attention_setting(name: str, family: str, attn_implementation: str | None) -> None:
    """Refuse ``attn_implementation`` for a CNN and unknown implementation names (ConfigError with the reason)."""
    if attn_implementation is None:
        return
    if family == "cnn":
        raise UnsupportedError(f"model {name!r} is a CNN: attn_implementation={attn_implementation!r} does not apply "
                          "(it has no attention layers); drop the setting for this model")
    if attn_implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ConfigError(f"model {name!r}: attn_implementation {attn_implementation!r} is not one of "
                          f"{', '.join(ATTENTION_IMPLEMENTATIONS)}")
