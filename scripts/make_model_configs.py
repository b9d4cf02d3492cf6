"""Regenerate harness/models/configs/*.json: the architectures and processors of the registry.

The values are those of the published checkpoints' config.json and preprocessor_config.json
(Intel/dpt-large-ade, openmmlab/upernet-convnext-*, google/deeplabv3_mobilenet_v2_1.0_513,
nvidia/segformer-b*-finetuned-ade-*, Intel/dpt-swinv2-tiny-256 for the Swin V2 backbone),
so that `weights: random` builds the same architecture offline. Run from the repository root:

    .venv/bin/python scripts/make_model_configs.py
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import (
    BitConfig,
    ConvNextConfig,
    DPTConfig,
    MobileNetV2Config,
    SegformerConfig,
    Swinv2Config,
    UperNetConfig,
)

OUT = Path(__file__).resolve().parents[1] / "harness" / "models" / "configs"
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def ade_labels() -> dict:
    from harness.data.ade20k import ADE20K_CLASSES

    return {"id2label": {str(i): n for i, n in enumerate(ADE20K_CLASSES)},
            "label2id": {n: i for i, n in enumerate(ADE20K_CLASSES)}}


def voc_labels() -> dict:
    from harness.data.voc import CLASSES

    return {"id2label": {str(i): n for i, n in enumerate(CLASSES)}, "label2id": {n: i for i, n in enumerate(CLASSES)}}


def processor(kind: str, size, mean, std, resample: int = 2, **extra) -> dict:
    d = {"image_processor_type": kind, "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255,
         "do_normalize": True, "image_mean": mean, "image_std": std, "resample": resample, "size": size}
    d.update(extra)
    return d


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    models: dict[str, tuple[dict, dict]] = {}
    models["dpt-large"] = (DPTConfig(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        backbone_out_indices=[5, 11, 17, 23], neck_hidden_sizes=[256, 512, 1024, 1024],
        use_batch_norm_in_fusion_residual=True, use_auxiliary_head=True, image_size=384, qkv_bias=True,
        semantic_loss_ignore_index=255, **ade_labels()).to_dict(),
        processor("DPTImageProcessor", {"height": 480, "width": 480}, [0.5] * 3, [0.5] * 3, resample=2,
                  keep_aspect_ratio=False, ensure_multiple_of=1, do_pad=False))
    bit = BitConfig(global_padding="same", layer_type="bottleneck", depths=[3, 4, 9],
                    out_features=["stage1", "stage2", "stage3"], embedding_dynamic_padding=True)
    models["dpt-hybrid"] = (DPTConfig(
        is_hybrid=True, backbone_config=bit.to_dict(), hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, backbone_out_indices=[2, 5, 8, 11], neck_hidden_sizes=[256, 512, 768, 768],
        reassemble_factors=[1, 1, 1, 0.5], backbone_featmap_shape=[1, 1024, 24, 24], neck_ignore_stages=[0, 1],
        image_size=384, use_batch_norm_in_fusion_residual=True, use_auxiliary_head=True, qkv_bias=True,
        semantic_loss_ignore_index=255, **ade_labels()).to_dict(),
        processor("DPTImageProcessor", {"height": 384, "width": 384}, [0.5] * 3, [0.5] * 3, resample=2,
                  keep_aspect_ratio=False, ensure_multiple_of=1, do_pad=False))
    swin = Swinv2Config(image_size=256, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=16,
                        out_features=["stage1", "stage2", "stage3", "stage4"])
    models["dpt-swinv2-tiny"] = (DPTConfig(
        backbone_config=swin.to_dict(), neck_hidden_sizes=[96, 192, 384, 768], reassemble_factors=[4, 2, 1, 0.5],
        fusion_hidden_size=256, head_in_index=-1, use_batch_norm_in_fusion_residual=True, image_size=256,
        **ade_labels()).to_dict(),
        processor("DPTImageProcessor", {"height": 256, "width": 256}, [0.5] * 3, [0.5] * 3, resample=2,
                  keep_aspect_ratio=False, ensure_multiple_of=1, do_pad=False))
    for size, depths, dims in (("tiny", [3, 3, 9, 3], [96, 192, 384, 768]), ("small", [3, 3, 27, 3], [96, 192, 384, 768]),
                               ("base", [3, 3, 27, 3], [128, 256, 512, 1024])):
        backbone = ConvNextConfig(depths=depths, hidden_sizes=dims, out_features=["stage1", "stage2", "stage3", "stage4"],
                                  drop_path_rate=0.4 if size == "base" else 0.3)
        models[f"upernet-convnext-{size}"] = (UperNetConfig(
            backbone_config=backbone.to_dict(), hidden_size=512, auxiliary_in_channels=dims[2], **ade_labels()).to_dict(),
            processor("SegformerImageProcessor", {"height": 512, "width": 512}, *IMAGENET, do_reduce_labels=False))
    models["deeplabv3-mobilenetv2"] = (MobileNetV2Config(
        depth_multiplier=1.0, image_size=513, output_stride=8, semantic_loss_ignore_index=255, **voc_labels()).to_dict(),
        processor("MobileNetV2ImageProcessor", {"shortest_edge": 513}, [0.5] * 3, [0.5] * 3, resample=2,
                  do_center_crop=True, crop_size={"height": 513, "width": 513}))
    variants = {"b0": ([32, 64, 160, 256], [2, 2, 2, 2], 256, 512), "b1": ([64, 128, 320, 512], [2, 2, 2, 2], 256, 512),
                "b2": ([64, 128, 320, 512], [3, 4, 6, 3], 768, 512), "b3": ([64, 128, 320, 512], [3, 4, 18, 3], 768, 512),
                "b4": ([64, 128, 320, 512], [3, 8, 27, 3], 768, 512), "b5": ([64, 128, 320, 512], [3, 6, 40, 3], 768, 640)}
    for name, (hidden, depths, dec, size) in variants.items():
        models[f"segformer-{name}"] = (SegformerConfig(
            hidden_sizes=hidden, depths=depths, decoder_hidden_size=dec,
            num_attention_heads=[1, 2, 5, 8], **ade_labels()).to_dict(),
            processor("SegformerImageProcessor", {"height": size, "width": size}, *IMAGENET, do_reduce_labels=True))
    for name, (cfg, proc) in models.items():
        cfg.pop("transformers_version", None)
        (OUT / f"{name}.json").write_text(json.dumps(cfg, indent=1, sort_keys=True) + "\n")
        (OUT / f"{name}.preprocessor.json").write_text(json.dumps(proc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(models)} architectures to {OUT}")


if __name__ == "__main__":
    main()
