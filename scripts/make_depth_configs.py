"""Regenerate harness/models/configs/depth/*.json: the architectures and processors of the depth registry.

The values are those the published checkpoints were converted with (transformers' conversion
scripts for DPT, DPT-BEiT, DPT-Swin V2, Depth Anything V2, ZoeDepth, GLPN and Depth Pro; the
MiDaS run.py settings for MiDaS v2.1), so that ``weights: random`` builds the same architecture
offline and a registry model without a cached hub snapshot preprocesses as its checkpoint does.
Run from the repository root:

    .venv/bin/python scripts/make_depth_configs.py
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import (
    BeitConfig,
    BitConfig,
    DepthAnythingConfig,
    DepthProConfig,
    Dinov2Config,
    DPTConfig,
    GLPNConfig,
    Swinv2Config,
    ZoeDepthConfig,
)

OUT = Path(__file__).resolve().parents[1] / "harness" / "models" / "configs" / "depth"
IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
HALF = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
BASE = {"do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True}


def dpt_processor(size: int, keep_aspect_ratio: bool = False, multiple: int = 1, resample: int = 3,
                  norm: dict = HALF) -> dict:
    return {"image_processor_type": "DPTImageProcessor", **BASE, **norm, "resample": resample,
            "size": {"height": size, "width": size}, "keep_aspect_ratio": keep_aspect_ratio,
            "ensure_multiple_of": multiple, "do_pad": False}


def dpt_vit(large: bool) -> dict:
    if large:
        return DPTConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                         backbone_out_indices=[5, 11, 17, 23], neck_hidden_sizes=[256, 512, 1024, 1024],
                         image_size=384, qkv_bias=True).to_dict()
    bit = BitConfig(global_padding="same", layer_type="bottleneck", depths=[3, 4, 9],
                    out_features=["stage1", "stage2", "stage3"], embedding_dynamic_padding=True)
    return DPTConfig(is_hybrid=True, backbone_config=bit.to_dict(), hidden_size=768, num_hidden_layers=12,
                     num_attention_heads=12, intermediate_size=3072, backbone_out_indices=[2, 5, 8, 11],
                     neck_hidden_sizes=[256, 512, 768, 768], reassemble_factors=[1, 1, 1, 0.5],
                     backbone_featmap_shape=[1, 1024, 24, 24], neck_ignore_stages=[0, 1], image_size=384,
                     readout_type="project", qkv_bias=True).to_dict()


def dpt_beit(large: bool, size: int) -> dict:
    dims = (1024, 24, 16, 4096, [6, 12, 18, 24]) if large else (768, 12, 12, 3072, [3, 6, 9, 12])
    beit = BeitConfig(image_size=size, hidden_size=dims[0], num_hidden_layers=dims[1], num_attention_heads=dims[2],
                      intermediate_size=dims[3], use_relative_position_bias=True, reshape_hidden_states=False,
                      out_features=[f"stage{i}" for i in dims[4]])
    return DPTConfig(backbone_config=beit.to_dict(),
                     neck_hidden_sizes=[256, 512, 1024, 1024] if large else [96, 192, 384, 768]).to_dict()


def dpt_swin(kind: str) -> tuple[dict, int]:
    embed, depths, heads, window, size, pretrained = {
        "tiny": (96, [2, 2, 6, 2], [3, 6, 12, 24], 16, 256, [0, 0, 0, 0]),
        "base": (128, [2, 2, 18, 2], [4, 8, 16, 32], 24, 384, [12, 12, 12, 6]),
        "large": (192, [2, 2, 18, 2], [6, 12, 24, 48], 24, 384, [12, 12, 12, 6])}[kind]
    swin = Swinv2Config(image_size=size, embed_dim=embed, depths=depths, num_heads=heads, window_size=window,
                        pretrained_window_sizes=pretrained, out_features=["stage1", "stage2", "stage3", "stage4"])
    neck = [embed, embed * 2, embed * 4, embed * 8]
    return DPTConfig(backbone_config=swin.to_dict(), neck_hidden_sizes=neck, reassemble_factors=[4, 2, 1, 0.5],
                     fusion_hidden_size=256, head_in_index=-1, image_size=size).to_dict(), size


def depth_anything(size: str, metric: str | None) -> dict:
    hidden, layers, heads, out, fusion, neck = {
        "small": (384, 12, 6, [3, 6, 9, 12], 64, [48, 96, 192, 384]),
        "base": (768, 12, 12, [3, 6, 9, 12], 128, [96, 192, 384, 768]),
        "large": (1024, 24, 16, [5, 12, 18, 24], 256, [256, 512, 1024, 1024])}[size]
    dino = Dinov2Config(image_size=518, patch_size=14, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, out_indices=out, apply_layernorm=True, reshape_hidden_states=False)
    extra = {"depth_estimation_type": "metric", "max_depth": 20 if metric == "indoor" else 80} if metric else {}
    return DepthAnythingConfig(backbone_config=dino.to_dict(), reassemble_hidden_size=hidden, patch_size=14,
                               fusion_hidden_size=fusion, neck_hidden_sizes=neck, **extra).to_dict()


def zoedepth(kind: str) -> dict:
    beit = BeitConfig(image_size=384, num_hidden_layers=24, hidden_size=1024, intermediate_size=4096,
                      num_attention_heads=16, use_relative_position_bias=True, reshape_hidden_states=False,
                      out_features=["stage6", "stage12", "stage18", "stage24"])
    bins = [{"name": "nyu", "n_bins": 64, "min_depth": 1e-3, "max_depth": 10.0}]
    extra: dict = {}
    if kind == "nyu-kitti":
        bins.append({"name": "kitti", "n_bins": 64, "min_depth": 1e-3, "max_depth": 80.0})
        extra = {"num_patch_transformer_layers": 4, "patch_transformer_hidden_size": 128,
                 "patch_transformer_intermediate_size": 1024, "patch_transformer_num_attention_heads": 4}
    elif kind == "kitti":
        bins = [{"name": "kitti", "n_bins": 64, "min_depth": 1e-3, "max_depth": 80.0}]
    return ZoeDepthConfig(backbone_config=beit.to_dict(), neck_hidden_sizes=[256, 512, 1024, 1024],
                          bin_centers_type="normed" if kind == "kitti" else "softplus", bin_configurations=bins,
                          **extra).to_dict()


ZOE_PROCESSOR = {"image_processor_type": "ZoeDepthImageProcessor", **BASE, **HALF, "resample": 2,
                 "size": {"height": 384, "width": 512}, "keep_aspect_ratio": True, "ensure_multiple_of": 32,
                 "do_pad": True}


def midas_processor(size: int) -> dict:
    return {"kind": "midas", "size": {"height": size, "width": size}, **IMAGENET, "keep_aspect_ratio": True,
            "ensure_multiple_of": 32, "resize_method": "upper_bound"}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    models: dict[str, tuple[dict | None, dict]] = {
        "dpt-large-midas": (dpt_vit(True), dpt_processor(384)),
        "dpt-hybrid-midas": (dpt_vit(False), dpt_processor(384)),
        "dpt-beit-large-512": (dpt_beit(True, 512), dpt_processor(512, multiple=32)),
        "dpt-beit-large-384": (dpt_beit(True, 384), dpt_processor(384, multiple=32)),
        "dpt-beit-base-384": (dpt_beit(False, 384), dpt_processor(384, multiple=32)),
        "midas-v21": (None, midas_processor(384)),
        "midas-v21-small": (None, midas_processor(256)),
    }
    for kind in ("tiny", "base", "large"):
        cfg, size = dpt_swin(kind)
        models[f"dpt-swinv2-{kind}-{size}"] = (cfg, dpt_processor(size, multiple=32))
    for size in ("small", "base", "large"):
        proc = dpt_processor(518, keep_aspect_ratio=True, multiple=14, norm=IMAGENET)
        models[f"depth-anything-v2-{size}"] = (depth_anything(size, None), proc)
        for scene in ("indoor", "outdoor"):
            models[f"depth-anything-v2-metric-{scene}-{size}"] = (depth_anything(size, scene), proc)
    for kind in ("nyu", "kitti", "nyu-kitti"):
        models[f"zoedepth-{kind}"] = (zoedepth(kind), ZOE_PROCESSOR)
    for kind, max_depth in (("nyu", 10), ("kitti", 80)):
        cfg = GLPNConfig(hidden_sizes=[64, 128, 320, 512], depths=[3, 8, 27, 3], num_attention_heads=[1, 2, 5, 8],
                         decoder_hidden_size=64, max_depth=max_depth).to_dict()
        models[f"glpn-{kind}"] = (cfg, {"image_processor_type": "GLPNImageProcessor", "do_resize": True,
                                        "do_rescale": True, "rescale_factor": 1 / 255, "size_divisor": 32,
                                        "resample": 2})
    vit_l = {"model_type": "dinov2", "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
             "patch_size": 16, "image_size": 384}  # apple/DepthPro: three DINOv2 ViT-L/16 encoders at 384
    models["depth-pro"] = (DepthProConfig(use_fov_model=True, image_model_config=dict(vit_l),
                                          patch_model_config=dict(vit_l), fov_model_config=dict(vit_l)).to_dict(),
                           {"image_processor_type": "DepthProImageProcessor", **BASE, **HALF, "resample": 2,
                            "size": {"height": 1536, "width": 1536}})
    for name, (cfg, proc) in models.items():
        if cfg is not None:
            cfg.pop("transformers_version", None)
            (OUT / f"{name}.json").write_text(json.dumps(cfg, indent=1, sort_keys=True) + "\n")
        (OUT / f"{name}.preprocessor.json").write_text(json.dumps(proc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(models)} depth models to {OUT}")


if __name__ == "__main__":
    main()
