"""DPT variants: which module class builds a DPT config, and the checks DPT needs.

- ViT (DPT-Large) and ViT-hybrid (DPT-Hybrid, a BiT ResNet-50 stem) configs build
  transformers' ``DPTForSemanticSegmentation``.
- A config with a Swin V2 ``backbone_config`` builds the composition in
  :mod:`harness.models.dpt_swin` (backbone + DPT neck + DPT segmentation head), because
  ``DPTForSemanticSegmentation`` only runs the ViT path.
- The hybrid embedding does not interpolate position embeddings: its input must be
  ``config.image_size`` square, so the processor's output size must equal it.
"""

from __future__ import annotations

from harness.errors import ConfigError

SWIN_BACKBONES = ("swinv2",)


def is_dpt_swin(config) -> bool:
    """Whether ``config`` is a DPT config on a Swin V2 backbone (the composed model)."""
    backbone = getattr(config, "backbone_config", None)
    return getattr(config, "model_type", "") == "dpt" and backbone is not None \
        and getattr(backbone, "model_type", "") in SWIN_BACKBONES


def dpt_module_class(config):
    """The class that builds ``config``: the composed DPT-Swin model or ``DPTForSemanticSegmentation``."""
    if is_dpt_swin(config):
        from harness.models.dpt_swin import DPTSwinForSemanticSegmentation

        return DPTSwinForSemanticSegmentation
    from transformers import DPTForSemanticSegmentation

    return DPTForSemanticSegmentation


def check_input_size(config, input_size: tuple[int, int], source: str) -> None:
    """Raise ConfigError when a DPT-Hybrid config cannot run at ``input_size`` (height, width) pixels."""
    if not getattr(config, "is_hybrid", False):
        return
    size = config.image_size
    expected = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(input_size) != tuple(expected):
        raise ConfigError(f"{source}: DPT-Hybrid runs only at its config image_size {expected[0]}x{expected[1]} "
                          f"(its hybrid embedding does not interpolate position embeddings), but the preprocessing "
                          f"makes {input_size[0]}x{input_size[1]} inputs; set image_size in config.json or the "
                          f"processor size to the same value")
