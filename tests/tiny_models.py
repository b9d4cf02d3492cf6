"""Tiny random models of the real transformers classes, saved with save_pretrained plus a
preprocessor_config.json written as the published checkpoints write theirs, for tests and
end-to-end runs (each runs a 64x64 forward in milliseconds)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
HALF = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}


def _save(model, processor: dict, path: Path) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    base = {"do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "resample": 2}
    (path / "preprocessor_config.json").write_text(json.dumps({**base, **processor}, indent=1))
    return path


def _labels(num_labels: int) -> dict:
    return {"num_labels": num_labels, "id2label": {i: f"class_{i}" for i in range(num_labels)},
            "label2id": {f"class_{i}": i for i in range(num_labels)}}


def tiny_dpt_config(num_labels: int = 150, image_size: int = 64):
    """DPT-Large's structure (ViT, 4 reassembled layers, project readout) at toy widths."""
    from transformers import DPTConfig

    return DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                     image_size=image_size, patch_size=16, backbone_out_indices=[0, 1, 2, 3],
                     neck_hidden_sizes=[16, 16, 32, 32], fusion_hidden_size=16,
                     use_batch_norm_in_fusion_residual=True, use_auxiliary_head=True, **_labels(num_labels))


def tiny_dpt_hybrid_config(num_labels: int = 150, image_size: int = 64):
    """DPT-Hybrid's structure (BiT stem + 3 stages, SAME padding, ViT on stage 3) at toy widths."""
    from transformers import BitConfig, DPTConfig

    bit = BitConfig(global_padding="SAME", layer_type="bottleneck", depths=[1, 1, 1], hidden_sizes=[16, 32, 64],
                    embedding_size=8, num_groups=2, out_features=["stage1", "stage2", "stage3"],
                    embedding_dynamic_padding=True)
    grid = image_size // 16
    return DPTConfig(is_hybrid=True, backbone_config=bit, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                     intermediate_size=64, image_size=image_size, patch_size=16, backbone_out_indices=[0, 1, 2, 3],
                     backbone_featmap_shape=[1, 64, grid, grid], neck_hidden_sizes=[16, 32, 32, 32],
                     fusion_hidden_size=16, reassemble_factors=[1, 1, 1, 0.5], neck_ignore_stages=[0, 1],
                     readout_type="project", use_batch_norm_in_fusion_residual=True, use_auxiliary_head=True,
                     **_labels(num_labels))


def save_tiny_dpt(path, num_labels: int = 150, image_size: int = 64, hybrid: bool = False) -> Path:
    """A tiny DPT (ViT, or with ``hybrid`` the BiT-stem DPT-Hybrid) and the DPT processor at ``image_size``."""
    from transformers import DPTForSemanticSegmentation

    torch.manual_seed(0)
    cfg = (tiny_dpt_hybrid_config if hybrid else tiny_dpt_config)(num_labels, image_size)
    proc = {"image_processor_type": "DPTImageProcessor", "size": {"height": image_size, "width": image_size},
            "keep_aspect_ratio": False, "ensure_multiple_of": 1, "do_pad": False, **HALF}
    return _save(DPTForSemanticSegmentation(cfg).eval(), proc, path)


def save_tiny_dpt_hybrid(path, num_labels: int = 150, image_size: int = 64) -> Path:
    return save_tiny_dpt(path, num_labels, image_size, hybrid=True)


def save_tiny_upernet(path, num_labels: int = 150, image_size: int = 64) -> Path:
    from transformers import ConvNextConfig, UperNetConfig, UperNetForSemanticSegmentation

    torch.manual_seed(0)
    bb = ConvNextConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 32, 64],
                        out_features=["stage1", "stage2", "stage3", "stage4"])
    cfg = UperNetConfig(backbone_config=bb, hidden_size=16, auxiliary_in_channels=32, auxiliary_channels=16,
                        **_labels(num_labels))
    proc = {"image_processor_type": "SegformerImageProcessor", "size": {"height": image_size, "width": image_size},
            "do_reduce_labels": False, **IMAGENET}
    return _save(UperNetForSemanticSegmentation(cfg).eval(), proc, path)


def save_tiny_segformer(path, num_labels: int = 150, image_size: int = 64) -> Path:
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    torch.manual_seed(0)
    cfg = SegformerConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 2],
                          decoder_hidden_size=16, **_labels(num_labels))
    proc = {"image_processor_type": "SegformerImageProcessor", "size": {"height": image_size, "width": image_size},
            "do_reduce_labels": True, **IMAGENET}
    return _save(SegformerForSemanticSegmentation(cfg).eval(), proc, path)


def save_tiny_deeplab(path, num_labels: int = 21, image_size: int = 65) -> Path:
    from transformers import MobileNetV2Config, MobileNetV2ForSemanticSegmentation

    torch.manual_seed(0)
    cfg = MobileNetV2Config(depth_multiplier=0.35, image_size=image_size, output_stride=8, **_labels(num_labels))
    proc = {"image_processor_type": "MobileNetV2ImageProcessor", "size": {"shortest_edge": image_size},
            "do_center_crop": True, "crop_size": {"height": image_size, "width": image_size}, **HALF}
    return _save(MobileNetV2ForSemanticSegmentation(cfg).eval(), proc, path)
