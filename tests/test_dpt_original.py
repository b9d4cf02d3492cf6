"""Original DPT checkpoints: the key mapping is checked on state dicts built with the original
release's module names and shapes (DPTSegmentationModel: timm ViT / BiT hybrid, act_postprocess,
scratch.*, auxlayer), small ones loaded for real and full-size ones by name and shape; a pickle
that would run code is refused."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from tiny_models import save_tiny_dpt, tiny_dpt_config, tiny_dpt_hybrid_config
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
        stem = cfg.backbone_config.embedding_size
        t("pretrained.model.patch_embed.backbone.stem.conv.weight", stem, 3, 7, 7)
        t("pretrained.model.patch_embed.backbone.stem.norm.weight", stem)
        t("pretrained.model.patch_embed.backbone.stem.norm.bias", stem)
        cin = stem
        for s, depth in enumerate(cfg.backbone_config.depths):
            out = cfg.backbone_config.hidden_sizes[s]
            mid = max(8, (out // 4 + 4) // 8 * 8)  # timm's Bottleneck: make_div(out * 0.25), divisor 8
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
    return tiny_dpt_config(num_labels=150)


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


# -- original numerics: a forward written here from timm 0.4.5's definitions, on the original keys --

def _pad_same(x: torch.Tensor, k: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """TensorFlow-style SAME padding (timm's pad_same): total max((ceil(i/s)-1)s + k - i, 0), extra on the end."""
    ih, iw = x.shape[-2:]
    ph = max((-(-ih // stride) - 1) * stride + k - ih, 0)
    pw = max((-(-iw // stride) - 1) * stride + k - iw, 0)
    return torch.nn.functional.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2], value=value)


def _std_conv(x: torch.Tensor, w: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """timm StdConv2dSame: weights standardised as (w - mean) / (std + 1e-5), biased std, SAME padding."""
    std, mean = torch.std_mean(w, dim=[1, 2, 3], keepdim=True, unbiased=False)
    return torch.nn.functional.conv2d(_pad_same(x, w.shape[-1], stride), (w - mean) / (std + 1e-5), None, stride)


def _gn(x, sd, prefix, groups, act=True):
    y = torch.nn.functional.group_norm(x, groups, sd[prefix + ".weight"], sd[prefix + ".bias"], 1e-5)
    return torch.relu(y) if act else y


def original_resnet(sd: dict, x: torch.Tensor, cfg: DPTConfig) -> list[torch.Tensor]:
    """timm ResNetV2 (preact=False, stem 'same'): the three stage outputs."""
    p, groups = "pretrained.model.patch_embed.backbone.", cfg.backbone_config.num_groups
    x = _gn(_std_conv(x, sd[p + "stem.conv.weight"], 2), sd, p + "stem.norm", groups)
    x = torch.nn.functional.max_pool2d(_pad_same(x, 3, 2, float("-inf")), 3, 2)
    stages = []
    for s, depth in enumerate(cfg.backbone_config.depths):
        for b in range(depth):
            q = f"{p}stages.{s}.blocks.{b}."
            stride = 2 if (b == 0 and s > 0) else 1
            shortcut = x
            if b == 0:
                shortcut = _gn(_std_conv(x, sd[q + "downsample.conv.weight"], stride), sd, q + "downsample.norm",
                               groups, act=False)
            y = _gn(_std_conv(x, sd[q + "conv1.weight"]), sd, q + "norm1", groups)
            y = _gn(_std_conv(y, sd[q + "conv2.weight"], stride), sd, q + "norm2", groups)
            y = _gn(_std_conv(y, sd[q + "conv3.weight"]), sd, q + "norm3", groups, act=False)
            x = torch.relu(y + shortcut)
        stages.append(x)
    return stages


def original_vit_blocks(sd: dict, tokens: torch.Tensor, cfg: DPTConfig) -> list[torch.Tensor]:
    """timm VisionTransformer blocks (LayerNorm eps 1e-6): the output of every block."""
    p, d, heads = "pretrained.model.", cfg.hidden_size, cfg.num_attention_heads
    ln = torch.nn.functional.layer_norm
    lin = torch.nn.functional.linear
    x, outs = tokens, []
    for i in range(cfg.num_hidden_layers):
        q = f"{p}blocks.{i}."
        b, n, _ = x.shape
        h = ln(x, (d,), sd[q + "norm1.weight"], sd[q + "norm1.bias"], 1e-6)
        qkv = lin(h, sd[q + "attn.qkv.weight"], sd[q + "attn.qkv.bias"]).reshape(b, n, 3, heads, d // heads)
        qq, kk, vv = qkv.permute(2, 0, 3, 1, 4)
        attn = ((qq @ kk.transpose(-2, -1)) * (d // heads) ** -0.5).softmax(-1)
        x = x + lin((attn @ vv).transpose(1, 2).reshape(b, n, d), sd[q + "attn.proj.weight"], sd[q + "attn.proj.bias"])
        h = ln(x, (d,), sd[q + "norm2.weight"], sd[q + "norm2.bias"], 1e-6)
        h = lin(torch.nn.functional.gelu(lin(h, sd[q + "mlp.fc1.weight"], sd[q + "mlp.fc1.bias"])),
                sd[q + "mlp.fc2.weight"], sd[q + "mlp.fc2.bias"])
        x = x + h
        outs.append(x)
    return outs


def original_backbone(sd: dict, x: torch.Tensor, cfg: DPTConfig) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(ResNet stage outputs, ViT block outputs) of the original hybrid at the checkpoint's grid size."""
    stages = original_resnet(sd, x, cfg)
    p = "pretrained.model."
    tokens = torch.nn.functional.conv2d(stages[-1], sd[p + "patch_embed.proj.weight"], sd[p + "patch_embed.proj.bias"])
    tokens = tokens.flatten(2).transpose(1, 2)
    tokens = torch.cat([sd[p + "cls_token"].expand(x.shape[0], -1, -1), tokens], 1) + sd[p + "pos_embed"]
    return stages, original_vit_blocks(sd, tokens, cfg)


def trained_like(*shape):
    """Weights of trained magnitude: small spread, a per-filter offset (where weight standardisation matters)."""
    w = torch.randn(*shape) * 0.03
    return w + 0.01 * torch.randn(shape[0], *([1] * (len(shape) - 1))) if len(shape) > 1 else 1 + 0.1 * w


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_original_hybrid_checkpoint_runs_with_the_original_numerics(tmp_path):
    cfg = tiny_dpt_hybrid_config(num_labels=150)
    torch.manual_seed(3)
    sd = original_state_dict(cfg, hybrid=True, make=trained_like)
    path = tmp_path / "dpt_hybrid-tiny.pt"
    torch.save(sd, path)
    model = load_original_checkpoint(path, cfg)
    assert model.config.layer_norm_eps == 1e-6 and cfg.layer_norm_eps == 1e-12  # the caller's config untouched
    assert model.original_numerics["layer_norm_eps"] == 1e-6
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out = model.dpt(pixel_values=x, output_hidden_states=True)
        stages, blocks = original_backbone(sd, x, cfg)
    for ours, ref in zip(out.intermediate_activations, stages[:2], strict=True):
        assert _relative(ours, ref) < 1e-5
    for ours, ref in zip(out.hidden_states[1:], blocks, strict=True):
        assert _relative(ours, ref) < 1e-5
    print("original numerics, relative error:", _relative(out.intermediate_activations[1], stages[1]),
          _relative(out.hidden_states[-1], blocks[-1]))

    stock = DPTForSemanticSegmentation(cfg).eval()  # transformers' numerics, same weights
    stock.load_state_dict(convert_state_dict(sd, hybrid=True)[0], strict=False)
    with torch.no_grad():
        theirs = stock.dpt(pixel_values=x, output_hidden_states=True)
    print("transformers' numerics, relative error:", _relative(theirs.intermediate_activations[1], stages[1]),
          _relative(theirs.hidden_states[-1], blocks[-1]))
    assert _relative(theirs.intermediate_activations[1], stages[1]) > 1e-4  # what the fix is for
    assert _relative(theirs.hidden_states[-1], blocks[-1]) > 10 * _relative(out.hidden_states[-1], blocks[-1])


def test_hub_format_and_random_dpt_keep_transformers_numerics(tmp_path):
    from transformers.models.bit.modeling_bit import WeightStandardizedConv2d

    from harness.models.dpt_original import OriginalStdConv2d

    m = harness.load_model("dpt-hybrid", weights="random")
    convs = [c for c in m.module.modules() if isinstance(c, WeightStandardizedConv2d)]
    assert convs and not any(isinstance(c, OriginalStdConv2d) for c in convs)
    assert m.module.config.layer_norm_eps == 1e-12
    assert harness.load_model(str(save_tiny_dpt(tmp_path / "dpt"))).module.config.layer_norm_eps == 1e-12


def test_an_original_checkpoint_records_its_format_and_numerics(tmp_path, monkeypatch):
    """Through the registry: the provenance says the file is in the original format, with which numerics."""
    from harness.models import registry

    small = tiny_config()
    path = tmp_path / "dpt_large-tiny.pt"
    torch.save(original_state_dict(small, hybrid=False), path)
    monkeypatch.setattr(registry.ModelSpec, "config_dict", lambda self: small.to_dict())
    monkeypatch.setattr(registry.ModelSpec, "processor_dict", lambda self: {
        "image_processor_type": "DPTImageProcessor", "size": {"height": 64, "width": 64},
        "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "resample": 2})
    m = harness.load_model("dpt-large", weights=str(path))
    assert m.weights["source"] == "file" and m.weights["format"] == "original-dpt"
    assert m.weights["numerics"]["layer_norm_eps"] == 1e-6 and m.module.config.layer_norm_eps == 1e-6
    assert m.forward(torch.randn(1, 3, 64, 64)).shape == (1, 150, 64, 64)
