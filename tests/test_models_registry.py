"""Registry facts (parameter counts on the meta device vs published figures, configs vs the published
checkpoints), random-weight builds, provenance, precision/variant settings and runtime dispatch."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import save_tiny_dpt, save_tiny_segformer, save_tiny_upernet

import harness
from harness.errors import ConfigError, WeightsError
from harness.models import ALIASES, MODELS, count_params, missing_weights, model_infos
from harness.models.torchvision_models import torchvision_available

HF_MODELS = [n for n, s in MODELS.items() if s.kind == "hf"]
TV_MODELS = [n for n, s in MODELS.items() if s.kind == "torchvision"]


def images(seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(50, 70), (64, 64)]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    return {"dpt": save_tiny_dpt(tmp / "dpt"), "upernet": save_tiny_upernet(tmp / "upernet"),
            "segformer": save_tiny_segformer(tmp / "segformer")}


@pytest.mark.parametrize("name", HF_MODELS)
def test_meta_device_count_equals_the_registry_count(name):
    assert count_params(name) == MODELS[name].params


@pytest.mark.parametrize("name,published_m", [("dpt-large", 344), ("dpt-hybrid", 123), ("upernet-convnext-tiny", 60),
                                              ("segformer-b0", 3.8), ("deeplabv3-mobilenetv2", 2.5)])
def test_parameter_counts_match_published_figures(name, published_m):
    counted = {r["name"]: r["params"] for r in model_infos()}[name]
    assert abs(counted - published_m * 1e6) / (published_m * 1e6) < 0.03, (name, counted)


def test_every_published_figure_is_within_3_percent():
    for name, spec in MODELS.items():
        if spec.published_params_m:
            assert abs(spec.params - spec.published_params_m * 1e6) / (spec.published_params_m * 1e6) < 0.03, name


def test_listing_has_the_facts():
    rows = {r["name"]: r for r in model_infos()}
    assert set(MODELS) <= set(rows)
    large = rows["dpt-large"]
    assert (large["family"], large["input_size"], large["label_set"], large["hub_id"]) == \
        ("dpt", [480, 480], "ade20k", "Intel/dpt-large-ade")
    assert large["present"] is False  # no hub cache on this machine
    assert rows["dpt-swinv2-tiny"]["aliases"] == ["dpt-swin"]
    assert rows["deeplabv3-mobilenetv2"]["label_set"] == "voc"
    assert rows["segformer-b0"]["family"] == "transformer" and rows["upernet-convnext-tiny"]["family"] == "cnn"
    assert rows["fcn-resnet50"]["params"] == 35_322_218


def test_dpt_large_is_the_architecture_of_intel_dpt_large_ade():
    cfg = MODELS["dpt-large"].config_dict()
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["patch_size"]) == \
        (1024, 24, 16, 16)
    assert cfg["backbone_out_indices"] == [5, 11, 17, 23] and cfg["neck_hidden_sizes"] == [256, 512, 1024, 1024]
    assert cfg["use_batch_norm_in_fusion_residual"] is True and len(cfg["id2label"]) == 150
    assert cfg["id2label"]["0"] == "wall" and cfg["id2label"]["149"] == "flag"
    proc = MODELS["dpt-large"].processor_dict()
    assert proc["size"] == {"height": 480, "width": 480} and proc["image_mean"] == [0.5] * 3
    assert proc["resample"] == 2 and proc["image_std"] == [0.5] * 3


def test_dpt_hybrid_config_runs_at_its_image_size():
    cfg = MODELS["dpt-hybrid"].config_dict()
    assert cfg["is_hybrid"] is True and cfg["image_size"] == 384
    assert MODELS["dpt-hybrid"].processor_dict()["size"] == {"height": 384, "width": 384}


def test_segformer_variants_and_labels():
    for b in range(6):
        spec = MODELS[f"segformer-b{b}"]
        assert spec.hub_id.startswith(f"nvidia/segformer-b{b}-finetuned-ade-") and spec.label_set == "ade20k"
        assert len(spec.config_dict()["id2label"]) == 150


def test_random_weights_are_seeded_and_recorded(tiny):
    a = harness.load_model(str(tiny["upernet"]), weights="random")
    b = harness.load_model(str(tiny["upernet"]), weights="random")
    assert a.weights == {"source": "random", "seed": 0}
    for p, q in zip(a.module.parameters(), b.module.parameters(), strict=True):
        assert torch.equal(p, q)


def test_registry_model_with_random_weights_builds_offline():
    m = harness.load_model("deeplabv3-mobilenetv2", weights="random")
    assert (m.family, m.label_set, m.num_labels, m.input_size) == ("cnn", "voc", 21, (513, 513))
    assert m.id2label[15] == "person" and m.weights["source"] == "random"
    assert m.params() == MODELS["deeplabv3-mobilenetv2"].params


def test_local_directory_provenance_has_the_weights_sha256(tiny):
    import hashlib

    m = harness.load_model(str(tiny["segformer"]))
    expected = hashlib.sha256((tiny["segformer"] / "model.safetensors").read_bytes()).hexdigest()
    assert m.weights == {"source": "local", "path": str(tiny["segformer"].resolve()), "sha256": expected,
                         "files": ["model.safetensors"]}
    named = harness.load_model("segformer-b0", weights=str(tiny["segformer"]))
    assert named.weights["sha256"] == expected and named.family == "transformer" and named.label_set == "ade20k"
    assert named.input_size == (64, 64)  # the directory's own processor, not the registry's


def test_weights_of_another_architecture_are_refused(tiny):
    with pytest.raises(WeightsError, match="does not match the registry architecture"):
        harness.load_model("segformer-b0", weights=str(tiny["upernet"]))
    with pytest.raises(WeightsError, match="no such file or directory"):
        harness.load_model("segformer-b0", weights="/nonexistent/dir")


def test_unknown_names_suggest_registry_names():
    with pytest.raises(ConfigError, match="did you mean: dpt-large"):
        harness.load_model("dpt-lrage")
    with pytest.raises(ConfigError, match="no such directory"):
        harness.load_model("./not-here")


def test_dpt_hybrid_needs_a_checkpoint_or_random():
    with pytest.raises(WeightsError, match="no published checkpoint in transformers format"):
        harness.load_model("dpt-hybrid")


def test_precision_cast_and_autocast(tiny):
    ims = images()[:1]
    ref = harness.load_model(str(tiny["segformer"]))
    cast = harness.load_model(str(tiny["segformer"]), precision="bf16", amp="cast")
    auto = harness.load_model(str(tiny["segformer"]), precision="bf16", amp="autocast")
    assert next(cast.module.parameters()).dtype == torch.bfloat16
    assert next(auto.module.parameters()).dtype == torch.float32
    assert cast.forward(ref.preprocess(ims)).dtype == torch.bfloat16
    assert auto.forward(ref.preprocess(ims)).dtype == torch.bfloat16
    assert np.mean(ref.predict(ims)[0] == auto.predict(ims)[0]) > 0.5  # same network, lower precision
    with pytest.raises(ConfigError, match="precision 'fp64'"):
        harness.load_model(str(tiny["segformer"]), precision="fp64")


def test_variants_channels_last_and_attention(tiny):
    ims = images()[:1]
    ref = harness.load_model(str(tiny["upernet"]))
    cl = harness.load_model(str(tiny["upernet"]), channels_last=True)
    assert np.array_equal(ref.predict(ims)[0], cl.predict(ims)[0])
    eager = harness.load_model(str(tiny["dpt"]), attn_implementation="eager")
    sdpa = harness.load_model(str(tiny["dpt"]), attn_implementation="sdpa")
    assert eager.module.config._attn_implementation == "eager"
    x = eager.preprocess(ims)
    assert torch.allclose(eager.forward(x), sdpa.forward(x), atol=1e-4)


@pytest.mark.parametrize("target", ["upernet-convnext-tiny", "deeplabv3-mobilenetv2", "tiny-upernet"])
def test_attention_implementation_for_a_cnn_is_a_config_error(tiny, target):
    name = str(tiny["upernet"]) if target == "tiny-upernet" else target
    with pytest.raises(ConfigError, match="is a CNN"):
        harness.load_model(name, weights="random", attn_implementation="eager")


def test_unknown_attention_implementation_is_refused(tiny):
    with pytest.raises(ConfigError, match="attn_implementation 'fast'"):
        harness.load_model(str(tiny["dpt"]), attn_implementation="fast")


def test_dpt_swin_is_composed_and_runs():
    m = harness.load_model("dpt-swin", weights="random")
    assert ALIASES["dpt-swin"] == "dpt-swinv2-tiny"
    assert m.family == "dpt" and m.input_size == (256, 256) and m.name == "dpt-swin"
    assert type(m.module).__name__ == "DPTSwinForSemanticSegmentation"
    assert type(m.module.backbone).__name__ == "Swinv2Backbone"
    out = m.forward(m.preprocess(images()[:1]))
    assert out.shape == (1, 150, 256, 256)


def test_dpt_hybrid_accepts_sizes_that_are_multiples_of_16_and_refuses_others():
    from harness.models.dpt import check_input_size
    from harness.models.hf import config_from_dict

    cfg = config_from_dict(MODELS["dpt-hybrid"].config_dict())
    check_input_size(cfg, (384, 384), "dpt-hybrid")
    check_input_size(cfg, (480, 640), "dpt-hybrid")
    with pytest.raises(ConfigError, match=r"multiples of 16 .*, but the input is 390x384"):
        check_input_size(cfg, (390, 384), "dpt-hybrid")
    check_input_size(config_from_dict(MODELS["dpt-large"].config_dict()), (390, 384), "dpt-large")


def test_pytorch_runtime_refuses_options(tiny):
    with pytest.raises(ConfigError, match="unknown option"):
        harness.load_model(str(tiny["dpt"]), num_threads=2)
    with pytest.raises(ConfigError, match="runtime 'tensorrt'"):
        harness.load_model(str(tiny["dpt"]), runtime="tensorrt")


def test_onnxruntime_dispatch_receives_the_torch_adapter_and_options(tiny, monkeypatch):
    seen = {}
    onnx = pytest.importorskip("harness.models.onnx")

    def load_onnx_model(torch_model, **options):
        seen.update(model=torch_model, options=options)
        return "onnx-adapter"

    monkeypatch.setattr(onnx, "load_onnx_model", load_onnx_model)
    out = harness.load_model(str(tiny["dpt"]), runtime="onnxruntime", opset=17)
    assert out == "onnx-adapter" and seen["options"] == {"opset": 17}
    assert isinstance(seen["model"], harness.models.SegmentationModel) and seen["model"].family == "dpt"


def test_onnxruntime_without_its_module_is_a_config_error(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "harness.models.onnx", None)  # import of the module fails
    with pytest.raises(ConfigError, match="onnxruntime runtime is not available"):
        harness.load_model(str(tiny["dpt"]), runtime="onnxruntime")


def test_tflite_paths_go_to_the_litert_adapter(monkeypatch, tmp_path):
    seen = {}
    litert = pytest.importorskip("harness.models.litert")

    def load_litert_model(path, device="cpu", precision="fp32", **options):
        seen.update(path=path, device=device, precision=precision, options=options)
        return "litert-adapter"

    monkeypatch.setattr(litert, "load_litert_model", load_litert_model)
    out = harness.load_model(str(tmp_path / "m.tflite"), num_threads=2)
    assert out == "litert-adapter"
    assert seen == {"path": str(tmp_path / "m.tflite"), "device": "cpu", "precision": "fp32",
                    "options": {"upsample": "bilinear", "num_threads": 2}}


def test_missing_weights_reasons(tiny):
    assert missing_weights("segformer-b0", "random") is None
    assert missing_weights("segformer-b0", str(tiny["segformer"])) is None
    assert "not in the Hugging Face cache" in missing_weights("segformer-b0")
    assert "no checkpoint in transformers format" in missing_weights("dpt-swin")


@pytest.mark.skipif(torchvision_available(), reason="checks the message shown when torchvision is absent")
def test_torchvision_models_say_how_to_install_the_extra():
    with pytest.raises(ConfigError, match=r"segbench\[vision\]"):
        harness.load_model("fcn-resnet50", weights="random")
    assert "needs torchvision" in missing_weights("lraspp-mobilenetv3")


@pytest.mark.skipif(not torchvision_available(), reason="torchvision is not installed (the vision extra)")
@pytest.mark.parametrize("name", TV_MODELS)
def test_torchvision_models_build_and_count(name):
    assert count_params(name) == MODELS[name].params
    if name == "lraspp-mobilenetv3":
        m = harness.load_model(name, weights="random")
        assert (m.family, m.label_set, m.num_labels) == ("cnn", "voc", 21)
        assert m.forward(m.preprocess(images()[1:])).shape == (1, 21, 520, 520)


@pytest.mark.skipif(not torchvision_available(), reason="torchvision is not installed (the vision extra)")
def test_torchvision_preprocessing_equals_the_weights_transform():
    from torchvision.models.segmentation import LRASPP_MobileNet_V3_Large_Weights

    from harness.models.torchvision_models import preprocessor

    ref = LRASPP_MobileNet_V3_Large_Weights.DEFAULT.transforms()
    for im in images(2):
        assert torch.allclose(preprocessor()([im])[0], ref(im), atol=1e-6, rtol=0)
