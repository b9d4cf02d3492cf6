"""DPT variants: which module class builds a DPT config, and DPT at any input size.

- ViT (DPT-Large) and ViT-hybrid (DPT-Hybrid, a BiT ResNet-50 stem) configs build
  :class:`DPTAnySizeForSemanticSegmentation`, transformers' ``DPTForSemanticSegmentation`` made to
  run at any input size the way the original DPT code does (isl-org/DPT ``forward_flex``): the
  position embeddings are resized bilinearly (half-pixel centres, ``align_corners=False``) from
  their square training grid to the input's ``(H // 16, W // 16)`` patch grid, and the tokens
  are reshaped to that grid, not to a square. transformers already resizes them for the ViT, but
  its hybrid embedding refuses any size other than ``config.image_size`` and its segmentation
  model reshapes tokens to a square grid (non-square inputs fail). At the native size the
  outputs are bit-identical to ``DPTForSemanticSegmentation``'s (the resize to the same grid is
  the identity).
- A config with a Swin V2 ``backbone_config`` builds the composition in
  :mod:`harness.models.dpt_swin` (backbone + DPT neck + DPT segmentation head), because
  ``DPTForSemanticSegmentation`` only runs the ViT path.

Input sides must be multiples of 16 for the hybrid (its ResNet stem makes ``ceil(H / 16)`` rows
of tokens while the position grid has ``H // 16``); the original DPT code also needs multiples of
32 for its fusion blocks, where transformers resizes the residual instead (sides that are
multiples of 16 but not of 32 run here, unlike in the original).
"""

from __future__ import annotations

from transformers import DPTForDepthEstimation, DPTForSemanticSegmentation
from transformers.models.dpt.modeling_dpt import DPTReassembleStage, DPTViTHybridEmbeddings

from harness.errors import ConfigError

SWIN_BACKBONES = ("swinv2",)
HYBRID_MULTIPLE = 16


def is_dpt_swin(config) -> bool:
    """Whether ``config`` is a DPT config on a Swin V2 backbone (the composed model)."""
    backbone = getattr(config, "backbone_config", None)
    return getattr(config, "model_type", "") == "dpt" and backbone is not None \
        and getattr(backbone, "model_type", "") in SWIN_BACKBONES


def dpt_module_class(config):
    """The class that builds ``config``: the composed DPT-Swin model or the any-size ViT DPT."""
    if is_dpt_swin(config):
        from harness.models.dpt_swin import DPTSwinForSemanticSegmentation

        return DPTSwinForSemanticSegmentation
    return DPTAnySizeForSemanticSegmentation


def check_input_size(config, input_size: tuple[int, int], source: str) -> None:
    """Raise ConfigError when a DPT-Hybrid config cannot run at ``input_size`` (height, width) pixels."""
    if not getattr(config, "is_hybrid", False):
        return
    h, w = (int(v) for v in input_size)
    if h % HYBRID_MULTIPLE or w % HYBRID_MULTIPLE:
        raise ConfigError(f"{source}: DPT-Hybrid needs input sides that are multiples of {HYBRID_MULTIPLE} "
                          f"(its ResNet stem makes ceil(H/16) x ceil(W/16) tokens, its position grid "
                          f"H//16 x W//16), but the input is {h}x{w}; choose a processor size, resize or "
                          f"scales that give multiples of {HYBRID_MULTIPLE}")


class AnySizeHybridEmbeddings(DPTViTHybridEmbeddings):
    """The hybrid embedding with its position embeddings always resized to the input's patch grid."""

    def forward(self, pixel_values, interpolate_pos_encoding: bool = True):
        return super().forward(pixel_values, interpolate_pos_encoding=True)


class GridReassembleStage(DPTReassembleStage):
    """Reassembles tokens onto ``self.grid`` (rows, columns of patches) when the caller gives none."""

    grid: tuple[int, int] | None = None

    def forward(self, hidden_states, patch_height=None, patch_width=None):
        if patch_height is None and self.grid is not None:
            patch_height, patch_width = self.grid
        return super().forward(hidden_states, patch_height, patch_width)


class AnySize:
    """Mixin of a transformers DPT model class: the hybrid embedding and the reassemble stage switched
    to the subclasses above, and each forward reassembling tokens on its input's patch grid."""

    def __init__(self, config):
        super().__init__(config)
        switch_to_any_size(self)

    def forward(self, pixel_values=None, labels=None, **kwargs):
        h, w = pixel_values.shape[-2:]
        check_input_size(self.config, (h, w), "DPT-Hybrid input")
        stage = self.neck.reassemble_stage
        stage.grid = (h // self.config.patch_size, w // self.config.patch_size)
        try:
            return super().forward(pixel_values, labels=labels, **kwargs)
        finally:
            stage.grid = None


def switch_to_any_size(model) -> None:
    """Give a built DPT model the any-size embedding and reassemble stage (same parameters, in place)."""
    if model.config.is_hybrid:
        model.dpt.embeddings.__class__ = AnySizeHybridEmbeddings
    model.neck.reassemble_stage.__class__ = GridReassembleStage


class DPTAnySizeForSemanticSegmentation(AnySize, DPTForSemanticSegmentation):
    """``DPTForSemanticSegmentation`` at any input size, position embeddings resized as the original DPT.

    Same parameters and state-dict keys as the transformers class (checkpoints load either way).
    """


class DPTAnySizeForDepthEstimation(AnySize, DPTForDepthEstimation):
    """``DPTForDepthEstimation`` at any input size, as :class:`DPTAnySizeForSemanticSegmentation`."""


def depth_at_any_size(model) -> DPTAnySizeForDepthEstimation:
    """A built ``DPTForDepthEstimation`` made :class:`DPTAnySizeForDepthEstimation` in place."""
    switch_to_any_size(model)
    model.__class__ = DPTAnySizeForDepthEstimation
    return model
