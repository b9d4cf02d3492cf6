"""Tiny random depth models of the real transformers classes, saved with save_pretrained together
with their own image processor (``save_pretrained`` of the processor class, as the published
checkpoints hold theirs), for tests (each runs a 64-pixel forward in milliseconds)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
BEIT = {"image_size": 64, "patch_size": 16, "num_hidden_layers": 4, "hidden_size": 32, "intermediate_size": 64,
        "num_attention_heads": 2, "use_relative_position_bias": True, "reshape_hidden_states": False,
        "out_features": ["stage1", "stage2", "stage3", "stage4"]}


def _save(model, processor, path: Path) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(path)
    if isinstance(processor, dict):
        (path / "preprocessor_config.json").write_text(json.dumps(processor, indent=1))
    else:
        processor.save_pretrained(path)
    return path


def _dpt_processor(**kwargs):
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    return DPTImageProcessorPil(**kwargs)


def save_tiny_dpt_depth(path, image_size: int = 64) -> Path:
    """DPTForDepthEstimation with a plain ViT encoder (the Intel/dpt-large layout), square inputs."""
    from transformers import DPTConfig, DPTForDepthEstimation

    torch.manual_seed(0)
    cfg = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                    image_size=image_size, patch_size=16, backbone_out_indices=[0, 1, 2, 3],
                    neck_hidden_sizes=[16, 16, 32, 32], fusion_hidden_size=16)
    return _save(DPTForDepthEstimation(cfg), _dpt_processor(size={"height": image_size, "width": image_size}), path)


def save_tiny_dpt_beit(path) -> Path:
    """DPTForDepthEstimation on a BEiT backbone (MiDaS v3.1 layout), aspect kept, multiples of 32."""
    from transformers import BeitConfig, DPTConfig, DPTForDepthEstimation

    torch.manual_seed(0)
    cfg = DPTConfig(backbone_config=BeitConfig(**BEIT), neck_hidden_sizes=[16, 16, 32, 32], fusion_hidden_size=16,
                    hidden_size=32)
    proc = _dpt_processor(size={"height": 64, "width": 64}, keep_aspect_ratio=True, ensure_multiple_of=32)
    return _save(DPTForDepthEstimation(cfg), proc, path)


def save_tiny_dpt_swin(path) -> Path:
    """DPTForDepthEstimation on a Swin V2 backbone (Intel/dpt-swinv2-* layout)."""
    from transformers import DPTConfig, DPTForDepthEstimation, Swinv2Config

    torch.manual_seed(0)
    sw = Swinv2Config(image_size=64, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4,
                      out_features=["stage1", "stage2", "stage3", "stage4"])
    cfg = DPTConfig(backbone_config=sw, neck_hidden_sizes=[8, 16, 32, 64], reassemble_factors=[4, 2, 1, 0.5],
                    fusion_hidden_size=16, head_in_index=-1)
    return _save(DPTForDepthEstimation(cfg), _dpt_processor(size={"height": 64, "width": 64}, resample=2), path)


def save_tiny_depth_anything(path, kind: str = "relative", max_depth: int = 20) -> Path:
    """DepthAnythingForDepthEstimation (DINOv2 + DPT head), the V2 processor (518 -> 56, multiples of 14)."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(0)
    dino = Dinov2Config(image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                        intermediate_size=64, out_indices=[1, 2, 3, 4], reshape_hidden_states=False,
                        apply_layernorm=True)
    cfg = DepthAnythingConfig(backbone_config=dino, neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
                              reassemble_hidden_size=32, patch_size=14, head_hidden_size=8,
                              depth_estimation_type=kind, max_depth=max_depth if kind == "metric" else 1)
    proc = _dpt_processor(size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
                          **IMAGENET)
    return _save(DepthAnythingForDepthEstimation(cfg), proc, path)


def save_tiny_zoedepth(path) -> Path:
    """ZoeDepthForDepthEstimation with two domain heads (the Intel/zoedepth-nyu-kitti layout), its processor
    with reflect padding, aspect kept, multiples of 32."""
    from transformers import BeitConfig, ZoeDepthConfig, ZoeDepthForDepthEstimation
    from transformers.models.zoedepth.image_processing_pil_zoedepth import ZoeDepthImageProcessorPil

    torch.manual_seed(0)
    bins = [{"n_bins": 8, "min_depth": 1e-3, "max_depth": 10.0, "name": "nyu"},
            {"n_bins": 8, "min_depth": 1e-3, "max_depth": 80.0, "name": "kitti"}]
    cfg = ZoeDepthConfig(backbone_config=BeitConfig(**BEIT), neck_hidden_sizes=[16, 16, 32, 32], fusion_hidden_size=16,
                         bottleneck_features=16, num_relative_features=8, bin_configurations=bins,
                         num_patch_transformer_layers=4, patch_transformer_hidden_size=128,
                         patch_transformer_intermediate_size=128, patch_transformer_num_attention_heads=4)
    proc = ZoeDepthImageProcessorPil(size={"height": 64, "width": 96}, ensure_multiple_of=32, keep_aspect_ratio=True)
    return _save(ZoeDepthForDepthEstimation(cfg), proc, path)


def save_tiny_glpn(path, max_depth: int = 10) -> Path:
    """GLPNForDepthEstimation with its processor (sizes floored to multiples of 32, no normalisation)."""
    from transformers import GLPNConfig, GLPNForDepthEstimation
    from transformers.models.glpn.image_processing_pil_glpn import GLPNImageProcessorPil

    torch.manual_seed(0)
    cfg = GLPNConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 2],
                     decoder_hidden_size=16, max_depth=max_depth)
    return _save(GLPNForDepthEstimation(cfg), GLPNImageProcessorPil(), path)


def save_tiny_depth_pro(path, size: int = 64) -> Path:
    """DepthProForDepthEstimation with its field-of-view model (transformers' own test configuration).

    DepthProImageProcessor needs torchvision, so its preprocessor_config.json is written as the
    class saves it (its attributes and type name)."""
    from transformers import DepthProConfig, DepthProForDepthEstimation

    torch.manual_seed(0)
    cfg = DepthProConfig(patch_size=16, fusion_hidden_size=16, intermediate_hook_ids=[1, 0],
                         intermediate_feature_dims=[10, 8], scaled_images_ratios=[0.5, 1.0],
                         scaled_images_overlap_ratios=[0.0, 0.2], scaled_images_feature_dims=[12, 12],
                         use_fov_model=True,
                         image_model_config={"model_type": "dinov2", "num_hidden_layers": 2, "hidden_size": 16,
                                             "num_attention_heads": 1, "patch_size": 4},
                         patch_model_config={"model_type": "vit", "num_hidden_layers": 2, "hidden_size": 24,
                                             "num_attention_heads": 2, "patch_size": 6},
                         fov_model_config={"model_type": "vit", "num_hidden_layers": 2, "hidden_size": 32,
                                           "num_attention_heads": 4, "patch_size": 8})
    proc = {"image_processor_type": "DepthProImageProcessor", "do_resize": True, "do_rescale": True,
            "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5], "resample": 2, "size": {"height": size, "width": size}}
    return _save(DepthProForDepthEstimation(cfg), proc, path)
