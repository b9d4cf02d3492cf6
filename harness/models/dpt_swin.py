"""DPT with a Swin V2 backbone for semantic segmentation, composed from transformers' parts.

transformers' DPTForSemanticSegmentation only runs its ViT path; its DPTForDepthEstimation
accepts a Swin V2 backbone. This module puts the same backbone and DPT neck under DPT's
semantic-segmentation head: backbone feature maps (4 stages) -> neck (convs + fusion) ->
head -> logits at the input resolution / 2.
"""

from __future__ import annotations

import torch
from transformers import DPTConfig, PreTrainedModel
from transformers.modeling_outputs import SemanticSegmenterOutput
from transformers.models.dpt.modeling_dpt import DPTNeck, DPTSemanticSegmentationHead

try:  # transformers >= 5
    from transformers.backbone_utils import load_backbone
except ImportError:  # transformers 4.x
    from transformers.utils.backbone_utils import load_backbone


class DPTSwinForSemanticSegmentation(PreTrainedModel):
    """Swin V2 backbone + DPT neck + DPT semantic head (``config.backbone_config.model_type == "swinv2"``)."""

    config_class = DPTConfig
    base_model_prefix = "dpt"
    main_input_name = "pixel_values"

    def __init__(self, config: DPTConfig):
        super().__init__(config)
        bb = getattr(config, "backbone_config", None)
        if bb is None or bb.model_type != "swinv2":
            raise ValueError("DPTSwinForSemanticSegmentation needs a swinv2 backbone_config")
        self.backbone = load_backbone(config)
        self.neck = DPTNeck(config)
        self.head = DPTSemanticSegmentationHead(config)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, **kwargs) -> SemanticSegmenterOutput:
        features = self.backbone(pixel_values).feature_maps
        hidden = self.neck(list(features))
        logits = self.head(hidden)
        return SemanticSegmenterOutput(logits=logits)
