"""The depth registry, the loader's dispatch and the original DPT depth checkpoints (MiDaS v3.0
``.pt`` files) loaded into DPTForDepthEstimation through the DPT key mapping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_dpt_original import original_state_dict
from tiny_depth_models import save_tiny_depth_anything
from transformers import DPTConfig

from harness.errors import ConfigError, UnsupportedError, WeightsError
from harness.models.cnn import FAMILIES
from harness.models.depth import depth_model_infos, load_depth_model, missing_depth_weights
from harness.models.depth_base import ALIGN_SPACES, DEPTH_KINDS
from harness.models.depth_hf import depth_family, depth_semantics
from harness.models.depth_registry import DEPTH_ALIASES, DEPTH_MODELS, resolve_depth, spec_for_checkpoint
from harness.models.dpt_depth_original import load_original_depth_checkpoint


@pytest.mark.parametrize("name", list(DEPTH_MODELS))
def test_every_entry_declares_what_its_output_means(name):
    spec = DEPTH_MODELS[name]
    assert spec.family in FAMILIES and spec.depth_kind in DEPTH_KINDS and spec.align_space in ALIGN_SPACES
    assert (spec.align_space == "none") == (spec.depth_kind == "metric")
    if spec.depth_kind == "metric" and name != "depth-pro":
        assert spec.max_depth in (10.0, 20.0, 80.0)
    if spec.builder == "hf":
        assert spec.config_path.is_file() and spec.processor_path.is_file()
        assert spec.hub_id or spec.checkpoint
    if spec.builder == "midas-v21":
        assert spec.processor_path.is_file() and spec.checkpoint.startswith("midas_v21")


def test_aliases_and_release_file_names_resolve():
    assert all(resolve_depth(a) is DEPTH_MODELS[t] for a, t in DEPTH_ALIASES.items())
    assert spec_for_checkpoint("/x/midas_v21-f6b98070.pt").name == "midas-v21"
    assert spec_for_checkpoint("midas_v21_small-70d6b9c8.pt").name == "midas-v21-small"
    assert spec_for_checkpoint("dpt_hybrid-midas-0000aaaa.pt").name == "dpt-hybrid-midas"  # another hash
    assert spec_for_checkpoint("weights/dpt_large_384.pt").name == "dpt-large-midas"  # MiDaS v3.1 naming
    assert spec_for_checkpoint("model.pt") is None


def test_model_rows_say_what_each_model_is_and_whether_its_weights_are_here(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("SEGBENCH_WEIGHTS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    rows = {r["name"]: r for r in depth_model_infos()}
    assert set(rows) == set(DEPTH_MODELS)
    da = rows["depth-anything-v2-metric-indoor-small"]
    assert (da["task"], da["depth_kind"], da["align_space"], da["max_depth"], da["params"]) == (
        "depth", "metric", "none", 20.0, 24_800_000)
    assert da["present"] is False and rows["midas-v21"]["weights_from"] == "midas_v21-f6b98070.pt"
    assert rows["pydnet-plusplus-litert"]["runtime"] == "litert" and rows["dpt-hybrid-midas"]["aliases"] == ["dpt-hybrid"]
    assert "hf download Intel/dpt-large" in missing_depth_weights("dpt-large-midas")
    assert "weights: /path/to/midas_v21-f6b98070.pt" in missing_depth_weights("midas-v21")
    assert missing_depth_weights("midas-v21", weights="random") is None


def test_loader_dispatch_errors_name_the_input(tmp_path):
    unnamed = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1)}, unnamed)
    with pytest.raises(ConfigError, match="model.pt: cannot tell which architecture.*midas_v21-f6b98070.pt"):
        load_depth_model(str(unnamed))
    with pytest.raises(ConfigError, match="runtime 'onnxruntime' is not one of pytorch, litert"):
        load_depth_model("dpt-large-midas", runtime="onnxruntime")
    with pytest.raises(ConfigError, match="no such directory"):
        load_depth_model(str(tmp_path / "nowhere"))
    with pytest.raises(WeightsError, match="original checkpoint files are read for the DPT depth registry models"):
        load_depth_model("depth-anything-v2-small", weights=str(unnamed))


def depth_config(hybrid: bool = False) -> DPTConfig:
    return DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=64,
                     patch_size=16, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[16, 16, 32, 32],
                     fusion_hidden_size=16, readout_type="project")


def original_depth_state_dict(cfg: DPTConfig) -> dict[str, torch.Tensor]:
    """Keys and shapes of the original DPTDepthModel: the DPT encoder/neck of the segmentation release without
    auxlayer and with fusion residual units without batch norm (so their convolutions have biases:
    ``bias=not bn`` in blocks.ResidualConvUnit_custom), and the depth head ``scratch.output_conv``
    (conv F -> F/2, interpolate, conv -> 32, ReLU, conv -> 1, ReLU)."""
    sd = {k: v for k, v in original_state_dict(cfg, hybrid=False).items()
          if not k.startswith(("auxlayer.", "scratch.output_conv.")) and ".bn" not in k}
    F = cfg.fusion_hidden_size
    for n in range(1, 5):
        for u in (1, 2):
            for j in (1, 2):
                sd[f"scratch.refinenet{n}.resConfUnit{u}.conv{j}.bias"] = torch.randn(F) * 0.1
    for i, shape in ((0, (F // 2, F, 3, 3)), (2, (32, F // 2, 3, 3)), (4, (1, 32, 1, 1))):
        sd[f"scratch.output_conv.{i}.weight"] = torch.randn(*shape) * 0.3
        sd[f"scratch.output_conv.{i}.bias"] = torch.randn(shape[0]) * 0.1
    return sd


def test_original_depth_checkpoint_lands_in_dpt_for_depth_estimation(tmp_path):
    cfg = depth_config()
    torch.manual_seed(0)
    original = original_depth_state_dict(cfg)
    path = tmp_path / "dpt_large-midas-2f21e586.pt"
    torch.save({"model": original, "optimizer": {}}, path)
    model = load_original_depth_checkpoint(path, cfg)
    sd = model.state_dict()
    D = cfg.hidden_size
    assert torch.equal(sd["dpt.encoder.layer.1.attention.attention.key.weight"],
                       original["pretrained.model.blocks.1.attn.qkv.weight"][D:2 * D])
    assert torch.equal(sd["neck.fusion_stage.layers.3.residual_layer1.convolution2.weight"],
                       original["scratch.refinenet1.resConfUnit1.conv2.weight"])
    for i in (0, 2, 4):
        assert torch.equal(sd[f"head.head.{i}.weight"], original[f"scratch.output_conv.{i}.weight"])
    # the head, computed by hand from the original tensors on the neck's last feature map
    seen = {}
    model.head.register_forward_hook(lambda mod, args, out: seen.update(features=args[0][-1], out=out))
    with torch.no_grad():
        depth = model(pixel_values=torch.randn(1, 3, 64, 64)).predicted_depth
        f = torch.nn.functional
        x = f.conv2d(seen["features"], original["scratch.output_conv.0.weight"], original["scratch.output_conv.0.bias"],
                     padding=1)
        x = f.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        x = f.relu(f.conv2d(x, original["scratch.output_conv.2.weight"], original["scratch.output_conv.2.bias"],
                            padding=1))
        x = f.relu(f.conv2d(x, original["scratch.output_conv.4.weight"], original["scratch.output_conv.4.bias"]))
    assert depth.shape == (1, 64, 64) and torch.allclose(depth, x[:, 0], atol=1e-5)


def test_original_depth_checkpoint_that_does_not_fit_is_refused(tmp_path):
    cfg = depth_config()
    original = original_depth_state_dict(cfg)
    original["scratch.output_conv.9.weight"] = torch.zeros(1)
    del original["scratch.layer2_rn.weight"]
    path = tmp_path / "dpt_broken.pt"
    torch.save(original, path)
    with pytest.raises(WeightsError, match=r"dpt_broken.pt: does not fit the DPT \(ViT\) depth architecture: 1 model "
                                           r"keys missing from the checkpoint: neck.convs.1.weight; 1 mapped keys the "
                                           r"model does not have: head.head.9.weight"):
        load_original_depth_checkpoint(path, cfg)


def test_registry_name_and_hub_id_load_from_a_cached_snapshot_offline(tmp_path):
    """A hub cache entry laid out as huggingface_hub writes it (refs/main -> snapshots/<revision>/) holding a
    tiny Depth Anything: the registry name and any hub id load from it offline, with the snapshot's processor."""
    cache, revision = tmp_path / "hf" / "hub", "89abcdef0123456789abcdef0123456789abcdef"
    for repo_id in ("depth-anything/Depth-Anything-V2-Small-hf", "acme/tiny-depth"):
        repo = cache / f"models--{repo_id.replace('/', '--')}"
        save_tiny_depth_anything(repo / "snapshots" / revision)
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(revision)
    script = ("import json\nfrom harness.models.depth import load_depth_model\n"
              "rows = []\n"
              "for name in ('depth-anything-v2-small', 'acme/tiny-depth'):\n"
              "    m = load_depth_model(name)\n"
              "    rows.append({'weights': m.weights, 'input_size': list(m.input_size), 'kind': m.depth_kind})\n"
              "print(json.dumps(rows))\n")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    small, anyid = json.loads(out.stdout.strip().splitlines()[-1])
    assert small["weights"] == {"source": "hub", "id": "depth-anything/Depth-Anything-V2-Small-hf",
                                "revision": revision}
    assert small["input_size"] == [56, 56]  # the snapshot's processor, not the registry's 518
    assert anyid["weights"]["id"] == "acme/tiny-depth" and anyid["kind"] == "disparity"


def test_output_semantics_and_family_of_each_transformers_architecture():
    from types import SimpleNamespace as C

    bins = [{"max_depth": 10.0}, {"max_depth": 80.0}]
    cases = [(C(model_type="dpt"), ("disparity", None), "dpt"),
             (C(model_type="depth_anything", depth_estimation_type="relative"), ("disparity", None), "dpt"),
             (C(model_type="depth_anything", depth_estimation_type="metric", max_depth=20), ("metric", 20.0), "dpt"),
             (C(model_type="zoedepth", bin_configurations=bins), ("metric", 80.0), "dpt"),
             (C(model_type="glpn", max_depth=10), ("metric", 10.0), "transformer"),
             (C(model_type="depth_pro", use_fov_model=True), ("metric", None), "transformer"),
             (C(model_type="depth_pro", use_fov_model=False), ("relative", None), "transformer")]
    for config, semantics, family in cases:
        assert depth_semantics(config, "m") == semantics and depth_family(config) == family
    with pytest.raises(ConfigError, match="model_type 'chmv2'.*pass depth_kind"):
        depth_semantics(C(model_type="chmv2"), "m")
    with pytest.raises(UnsupportedError, match="LiDAR prompt"):
        depth_semantics(C(model_type="prompt_depth_anything"), "m")


def test_depth_dpt_at_any_size_feeds_the_head_the_segmentation_models_features():
    """DPTAnySizeForDepthEstimation: at the native size identical to transformers' class; at a non-square
    size its neck gives the features of the any-size segmentation DPT (tested against the original
    algorithm in test_dpt_any_size) with the same encoder and neck weights."""
    from tiny_models import tiny_dpt_hybrid_config
    from transformers import DPTForDepthEstimation

    from harness.models.dpt import DPTAnySizeForSemanticSegmentation, depth_at_any_size

    cfg = tiny_dpt_hybrid_config(num_labels=3)
    torch.manual_seed(0)
    stock = DPTForDepthEstimation(cfg).eval()
    ours = depth_at_any_size(DPTForDepthEstimation(cfg).eval())
    ours.load_state_dict(stock.state_dict())
    x = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        assert torch.equal(ours(pixel_values=x).predicted_depth, stock(pixel_values=x).predicted_depth)
        seg = DPTAnySizeForSemanticSegmentation(cfg).eval()
        seg.load_state_dict({k: v for k, v in stock.state_dict().items() if not k.startswith("head.")},
                            strict=False)  # the encoder and the neck
        seen = {}
        ours.head.register_forward_hook(lambda mod, args, out: seen.update(depth=args[0]))
        seg.head.register_forward_hook(lambda mod, args, out: seen.update(seg=args[0]))
        wide = torch.randn(1, 3, cfg.image_size, cfg.image_size + 32)
        depth = ours(pixel_values=wide).predicted_depth
        seg(pixel_values=wide)
    assert depth.shape == (1, cfg.image_size, cfg.image_size + 32)
    for a, b in zip(seen["depth"], seen["seg"], strict=True):
        assert torch.equal(a, b)


def test_dpt_papers_metric_fine_tunes_as_run_monodepth_runs_them():
    from PIL import Image

    from harness.models.depth_preprocess import depth_preprocess_from_dict
    from harness.models.dpt_finetuned import INVERSE_DEPTH, MIN_INVERSE

    assert spec_for_checkpoint("dpt_hybrid_nyu-2ce69ec7.pt").name == "dpt-hybrid-nyu"
    assert spec_for_checkpoint("dpt_hybrid_kitti-cb926ef4.pt").name == "dpt-hybrid-kitti"
    assert spec_for_checkpoint("dpt_hybrid-midas-501f0c75.pt").name == "dpt-hybrid-midas"
    with pytest.raises(WeightsError, match="dpt_hybrid_nyu-2ce69ec7.pt"):
        load_depth_model("dpt-hybrid-nyu")
    m = load_depth_model("dpt-hybrid-nyu", weights="random")
    assert (m.depth_kind, m.align_space, m.max_depth, m.input_size) == ("metric", "none", 10.0, (480, 640))
    assert m.preprocessor.output_size(480, 640) == (480, 640)  # NYU's images are not resized
    kitti = depth_preprocess_from_dict(DEPTH_MODELS["dpt-hybrid-kitti"].processor_dict(), "dpt-hybrid-kitti")
    assert kitti.output_size(352, 1216) == (352, 1216)  # nor, for the KITTI model, the kb crop
    x = m.preprocess([Image.new("RGB", (640, 480), (120, 60, 30))])
    with torch.no_grad():
        inverse = type(m).__mro__[1]._run(m, x)  # the network's own output
        depth = m.forward(x)
    scale, shift = INVERSE_DEPTH["dpt-hybrid-nyu"]
    torch.testing.assert_close(depth, 1.0 / torch.clamp(scale * inverse + shift, min=MIN_INVERSE))
    assert depth.shape == (1, 480, 640) and bool((depth > 0).all())
    assert "invert" in m.describe()["output"]
