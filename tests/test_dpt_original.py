"""Original DPT checkpoints: the key mapping is checked on state dicts built with the original
release's module names and shapes (DPTSegmentationModel: timm ViT / BiT hybrid, act_postprocess,
scratch.*, auxlayer), small ones loaded for real and full-size ones by name and shape; a pickle
that would run code is refused."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from transformers import DPTConfig, DPTForSemanticSegmentation

import harness
from harness.errors import WeightsError
from harness.models import MODELS
from harness.models.dpt_original import convert_state_dict, load_original_checkpoint
from harness.models.hf import config_from_dict


def original_state_dict(cfg: DPTConfig, hybrid: bool, make=torch.randn) -> dict[str, torch.Tensor]:
    """Keys and shapes of the original DPTSegmentationModel for ``cfg`` (written from the original code)."""
    D, M, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    F, C = cfg.fusion_hidden_size, cfg.num_labels
    f = cfg.neck_hidden_sizes
    grid = cfg.image_size // cfg.patch_size
    sd = {}

    def t(name, *shape):
        sd[name] = make(*shape).abs() + 0.5 if name.endswith("running_var") else make(*shape)

    t("pretrained.model.cls_token", 1, 1, D)
    t("pretrained.model.pos_embed", 1, 1 + grid * grid, D)
    if hybrid:
        t("pretrained.model.patch_embed.backbone.stem.conv.weight", 64, 3, 7, 7)
        t("pretrained.model.patch_embed.backbone.stem.norm.weight", 64)
        t("pretrained.model.patch_embed.backbone.stem.norm.bias", 64)
        cin = 64
        for s, depth in enumerate(cfg.backbone_config.depths):
            out, mid = 256 * 2**s, 64 * 2**s
            for b in range(depth):
                p = f"pretrained.model.patch_embed.backbone.stages.{s}.blocks.{b}."
                if b == 0:
                    t(p + "downsample.conv.weight", out, cin, 1, 1)
                    t(p + "downsample.norm.weight", out)
                    t(p + "downsample.norm.bias", out)
                t(p + "conv1.weight", mid, cin if b == 0 else out, 1, 1)
                t(p + "conv2.weight", mid, mid, 3, 3)
                t(p + "conv3.weight", out, mid, 1, 1)
                for n, c in (("norm1", mid), ("norm2", mid), ("norm3", out)):
                    t(p + f"{n}.weight", c)
                    t(p + f"{n}.bias", c)
            cin = out
        t("pretrained.model.patch_embed.proj.weight", D, cin, 1, 1)
    else:
        t("pretrained.model.patch_embed.proj.weight", D, 3, cfg.patch_size, cfg.patch_size)
    t("pretrained.model.patch_embed.proj.bias", D)
    for i in range(L):
        p = f"pretrained.model.blocks.{i}."
        for n in ("norm1", "norm2"):
            t(p + f"{n}.weight", D)
            t(p + f"{n}.bias", D)
        t(p + "attn.qkv.weight", 3 * D, D)
        t(p + "attn.qkv.bias", 3 * D)
        t(p + "attn.proj.weight", D, D)
        t(p + "attn.proj.bias", D)
        t(p + "mlp.fc1.weight", M, D)
        t(p + "mlp.fc1.bias", M)
        t(p + "mlp.fc2.weight", D, M)
        t(p + "mlp.fc2.bias", D)
    t("pretrained.model.norm.weight", D)
    t("pretrained.model.norm.bias", D)
    t("pretrained.model.head.weight", 1000, D)  # the ImageNet head timm keeps; unused by DPT
    t("pretrained.model.head.bias", 1000)
    for n in range(1, 5):
        if hybrid and n <= 2:
            continue  # act_postprocess1/2 are identities on the ResNet features
        p = f"pretrained.act_postprocess{n}."
        t(p + "0.project.0.weight", D, 2 * D)
        t(p + "0.project.0.bias", D)
        t(p + "3.weight", f[n - 1], D, 1, 1)
        t(p + "3.bias", f[n - 1])
        factor = cfg.reassemble_factors[n - 1]
        if factor > 1:
            k = int(factor)
            t(p + "4.weight", f[n - 1], f[n - 1], k, k)  # ConvTranspose2d(k, stride k)
            t(p + "4.bias", f[n - 1])
        elif factor < 1:
            t(p + "4.weight", f[n - 1], f[n - 1], 3, 3)  # Conv2d(3, stride 2)
            t(p + "4.bias", f[n - 1])
    for n in range(1, 5):
        t(f"scratch.layer{n}_rn.weight", F, f[n - 1], 3, 3)
        p = f"scratch.refinenet{n}."
        t(p + "out_conv.weight", F, F, 1, 1)
        t(p + "out_conv.bias", F)
        for u in (1, 2):
            for j in (1, 2):
                t(p + f"resConfUnit{u}.conv{j}.weight", F, F, 3, 3)
                for s in ("weight", "bias", "running_mean", "running_var"):
                    t(p + f"resConfUnit{u}.bn{j}.{s}", F)
                sd[p + f"resConfUnit{u}.bn{j}.num_batches_tracked"] = torch.tensor(0)
    for prefix in ("scratch.output_conv.", "auxlayer."):
        t(prefix + "0.weight", F, F, 3, 3)
        for s in ("weight", "bias", "running_mean", "running_var"):
            t(prefix + f"1.{s}", F)
        sd[prefix + "1.num_batches_tracked"] = torch.tensor(0)
        t(prefix + "4.weight", C, F, 1, 1)
        t(prefix + "4.bias", C)
    return sd


def tiny_config() -> DPTConfig:
    return DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=64,
                     patch_size=16, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[16, 16, 32, 32],
                     fusion_hidden_size=16, use_batch_norm_in_fusion_residual=True, use_auxiliary_head=True,
                     num_labels=150)


def test_small_checkpoint_loads_and_every_tensor_lands_where_it_belongs(tmp_path):
    cfg = tiny_config()
    torch.manual_seed(0)
    original = original_state_dict(cfg, hybrid=False)
    path = tmp_path / "dpt_small-ade20k.pt"
    torch.save(original, path)
    model = load_original_checkpoint(path, cfg)
    sd = model.state_dict()
    D = cfg.hidden_size
    qkv = original["pretrained.model.blocks.2.attn.qkv.weight"]
    assert torch.equal(sd["dpt.encoder.layer.2.attention.attention.query.weight"], qkv[:D])
    assert torch.equal(sd["dpt.encoder.layer.2.attention.attention.key.weight"], qkv[D:2 * D])
    assert torch.equal(sd["dpt.encoder.layer.2.attention.attention.value.weight"], qkv[2 * D:])
    assert torch.equal(sd["neck.fusion_stage.layers.0.projection.weight"], original["scratch.refinenet4.out_conv.weight"])
    assert torch.equal(sd["neck.fusion_stage.layers.3.residual_layer2.batch_norm1.running_var"],
                       original["scratch.refinenet1.resConfUnit2.bn1.running_var"])
    assert torch.equal(sd["neck.reassemble_stage.layers.0.resize.weight"], original["pretrained.act_postprocess1.4.weight"])
    assert torch.equal(sd["head.head.4.bias"], original["scratch.output_conv.4.bias"])
    assert torch.equal(sd["auxiliary_head.head.0.weight"], original["auxlayer.0.weight"])
    with torch.no_grad():
        out = model(pixel_values=torch.randn(1, 3, 64, 64)).logits
    assert out.shape[1] == 150 and torch.isfinite(out).all()


def test_release_wrapper_form_is_accepted(tmp_path):
    cfg = tiny_config()
    path = tmp_path / "wrapped.pt"
    torch.save({"model": original_state_dict(cfg, hybrid=False), "optimizer": {}}, path)
    assert isinstance(load_original_checkpoint(path, cfg), DPTForSemanticSegmentation)


@pytest.mark.parametrize("name,hybrid", [("dpt-large", False), ("dpt-hybrid", True)])
def test_full_size_original_keys_map_onto_the_registry_architecture(name, hybrid):
    cfg = config_from_dict(MODELS[name].config_dict())
    meta = lambda *s: torch.empty(*s, device="meta")  # noqa: E731  names and shapes only
    converted, ignored, unmapped = convert_state_dict(original_state_dict(cfg, hybrid, make=meta), hybrid)
    with torch.device("meta"):
        expected = DPTForSemanticSegmentation(cfg).state_dict()
    assert not unmapped and set(ignored) == {"pretrained.model.head.weight", "pretrained.model.head.bias"}
    assert set(converted) == set(expected)
    for k, v in converted.items():
        assert tuple(v.shape) == tuple(expected[k].shape), k


def test_missing_unmapped_and_mismatched_keys_are_listed(tmp_path):
    cfg = tiny_config()
    sd = original_state_dict(cfg, hybrid=False)
    del sd["scratch.layer3_rn.weight"]
    sd["pretrained.model.extra_thing.weight"] = torch.zeros(3)
    sd["auxlayer.4.bias"] = torch.zeros(7)
    path = tmp_path / "bad.pt"
    torch.save(sd, path)
    with pytest.raises(WeightsError) as info:
        load_original_checkpoint(path, cfg)
    msg = str(info.value)
    assert "1 unmapped original keys: pretrained.model.extra_thing.weight" in msg
    assert "neck.convs.2.weight" in msg and "auxiliary_head.head.4.bias: checkpoint (7,) vs model (150,)" in msg


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"model": {"x": _Payload(str(marker))}}, fh)
    with pytest.raises(WeightsError, match="refused to load"):
        load_original_checkpoint(path, tiny_config())
    assert not marker.exists()
    with pytest.raises(WeightsError, match="refused to load"):
        harness.load_model("dpt-hybrid", weights=str(path))
    assert not marker.exists()


def test_registry_model_with_an_original_checkpoint_records_its_sha256(tmp_path):
    cfg = config_from_dict(MODELS["dpt-hybrid"].config_dict())
    assert cfg.is_hybrid
    small = tiny_config()
    path = tmp_path / "ckpt.pt"
    torch.save(original_state_dict(small, hybrid=False), path)
    with pytest.raises(WeightsError, match="does not fit the DPT-Hybrid architecture"):
        harness.load_model("dpt-hybrid", weights=str(path))
