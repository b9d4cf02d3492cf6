"""Model registry and adapters: processor parity, post-processing parity, parameter counts vs the
published figures, weights provenance, fast offline failures, precision and variant handling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import save_tiny_deeplab, save_tiny_dpt, save_tiny_segformer, save_tiny_upernet

import harness
from harness.errors import ConfigError, WeightsError
from harness.models import MODELS, model_infos
from harness.models.hf import preprocessor_from_dict
from harness.models.registry import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]


def images(seed: int = 0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(50, 70), (97, 40), (64, 64)]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    return {"dpt": save_tiny_dpt(tmp / "dpt"), "upernet": save_tiny_upernet(tmp / "upernet"),
            "segformer": save_tiny_segformer(tmp / "segformer"), "deeplab": save_tiny_deeplab(tmp / "deeplab")}


PROCESSOR_CLASSES = {"DPTImageProcessor": "DPTImageProcessorPil", "MobileNetV2ImageProcessor": "MobileNetV2ImageProcessorPil",
                     "SegformerImageProcessor": "SegformerImageProcessorPil"}


def transformers_processor(d: dict):
    """The model's own transformers image processor, or skip when it cannot run here (needs torchvision)."""
    import transformers

    d = dict(d)
    name = PROCESSOR_CLASSES[d.pop("image_processor_type")]
    try:
        return getattr(transformers, name)(**d)
    except ImportError as e:
        pytest.skip(f"{name} cannot be instantiated in this environment: {str(e).strip().splitlines()[0]}")


@pytest.mark.parametrize("name", sorted(p.name.removesuffix(".preprocessor.json")
                                        for p in CONFIG_DIR.glob("*.preprocessor.json")))
def test_registry_preprocessing_equals_the_models_own_processor(name):
    d = json.loads((CONFIG_DIR / f"{name}.preprocessor.json").read_text())
    ref = transformers_processor(d)
    ours = preprocessor_from_dict(d, name)
    for im in images():
        a = ours([im]).numpy()
        b = ref(images=[im], return_tensors="pt")["pixel_values"].numpy()
        assert a.shape == b.shape and np.abs(a - b).max() <= 1e-6


@pytest.mark.parametrize("kind", ["dpt", "deeplab", "upernet", "segformer"])
def test_predict_equals_the_processors_post_processing(tiny, kind):
    path = tiny[kind]
    model = harness.load_model(str(path))
    d = json.loads((path / "preprocessor_config.json").read_text())
    ims = images(1)
    ref_proc = transformers_processor(d)
    pixel_values = ref_proc(images=ims, return_tensors="pt")["pixel_values"]
    assert torch.allclose(model.preprocess(ims), pixel_values, atol=1e-6)
    with torch.no_grad():
        outputs = model.module(pixel_values=pixel_values)
    ref_maps = ref_proc.post_process_semantic_segmentation(outputs, target_sizes=[(im.height, im.width) for im in ims])
    ours = model.predict(ims)
    for a, b in zip(ours, ref_maps, strict=True):
        assert np.array_equal(a, b.numpy())


def test_bicubic_upsampling_is_a_setting(tiny):
    bil = harness.load_model(str(tiny["dpt"]), upsample="bilinear")
    bic = harness.load_model(str(tiny["dpt"]), upsample="bicubic")
    im = images()[:1]
    logits = bil.forward(bil.preprocess(im))
    ref = torch.nn.functional.interpolate(logits, size=(50, 70), mode="bicubic", align_corners=False)[0].argmax(0)
    assert np.array_equal(bic.predict(im)[0], ref.numpy())
    with pytest.raises(ConfigError, match="upsample 'nearest'"):
        harness.load_model(str(tiny["dpt"]), upsample="nearest")


@pytest.mark.parametrize("name", [n for n, s in MODELS.items() if s.published_params_m])
def test_parameter_counts_match_published_figures(name):
    counted = {r["name"]: r["params"] for r in model_infos()}[name]
    published = MODELS[name].published_params_m * 1e6
    assert abs(counted - published) / published < 0.03, (name, counted)


def test_registry_listing_has_the_facts():
    rows = {r["name"]: r for r in model_infos()}
    assert rows["dpt-large"]["input_size"] == [480, 480] and rows["dpt-large"]["family"] == "dpt"
    assert rows["deeplabv3-mobilenetv2"]["label_set"] == "voc"
    assert rows["upernet-convnext-tiny"]["weights_from"] == "openmmlab/upernet-convnext-tiny"


def test_dpt_large_architecture_is_intel_dpt_large_ade():
    cfg = MODELS["dpt-large"].config_dict()
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["patch_size"]) == (1024, 24, 16, 16)
    assert cfg["backbone_out_indices"] == [5, 11, 17, 23] and cfg["neck_hidden_sizes"] == [256, 512, 1024, 1024]
    assert cfg["use_batch_norm_in_fusion_residual"] is True and len(cfg["id2label"]) == 150
    proc = MODELS["dpt-large"].processor_dict()
    assert proc["size"] == {"height": 480, "width": 480} and proc["image_mean"] == [0.5] * 3


def test_random_weights_provenance_and_determinism(tiny):
    a = harness.load_model(str(tiny["upernet"]), weights="random")
    b = harness.load_model(str(tiny["upernet"]), weights="random")
    assert a.weights == {"source": "random", "seed": 0}
    for p, q in zip(a.module.parameters(), b.module.parameters(), strict=True):
        assert torch.equal(p, q)


def test_local_directory_provenance_has_sha256(tiny):
    m = harness.load_model(str(tiny["segformer"]))
    assert m.weights["source"] == "local" and len(m.weights["sha256"]) == 64
    assert m.weights["path"] == str(tiny["segformer"].resolve())
    m2 = harness.load_model("segformer-b0", weights=str(tiny["segformer"]))
    assert m2.weights["sha256"] == m.weights["sha256"] and m2.family == "transformer"


def test_missing_hub_weights_fail_fast_with_a_clear_message(tmp_path):
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    env.pop("HF_HUB_CACHE", None)
    out = subprocess.run([sys.executable, "-m", "harness", "eval", "upernet-convnext-tiny", "synthetic"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1
    assert "WeightsError" in out.stderr and "openmmlab/upernet-convnext-tiny" in out.stderr
    assert str(tmp_path / "hf") in out.stderr and "weights: /path/to/dir" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_weights_in_process_is_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    t0 = time.perf_counter()
    with pytest.raises(WeightsError, match="not in the local cache and HF_HUB_OFFLINE is set"):
        harness.load_model("segformer-b0")
    assert time.perf_counter() - t0 < 1.0


def test_dpt_hybrid_needs_a_checkpoint_or_random():
    with pytest.raises(WeightsError, match="no published checkpoint in transformers format"):
        harness.load_model("dpt-hybrid")


def test_unknown_model_suggests_names():
    with pytest.raises(ConfigError, match="did you mean: dpt-large"):
        harness.load_model("dpt-lrage")


def test_precision_cast_and_autocast(tiny):
    ims = images()[:1]
    ref = harness.load_model(str(tiny["segformer"]))
    cast = harness.load_model(str(tiny["segformer"]), precision="bf16", amp="cast")
    auto = harness.load_model(str(tiny["segformer"]), precision="bf16", amp="autocast")
    assert next(cast.module.parameters()).dtype == torch.bfloat16
    assert next(auto.module.parameters()).dtype == torch.float32
    x = ref.preprocess(ims)
    assert cast.forward(x).dtype == torch.bfloat16
    agree = np.mean(ref.predict(ims)[0] == auto.predict(ims)[0])
    assert agree > 0.5  # same network, lower precision
    with pytest.raises(ConfigError, match="precision 'fp64'"):
        harness.load_model(str(tiny["segformer"]), precision="fp64")


def test_variants(tiny):
    ims = images()[:1]
    ref = harness.load_model(str(tiny["upernet"]))
    cl = harness.load_model(str(tiny["upernet"]), channels_last=True)
    assert np.array_equal(ref.predict(ims)[0], cl.predict(ims)[0])
    eager = harness.load_model(str(tiny["dpt"]), attn_implementation="eager")
    sdpa = harness.load_model(str(tiny["dpt"]), attn_implementation="sdpa")
    x = eager.preprocess(ims)
    assert torch.allclose(eager.forward(x), sdpa.forward(x), atol=1e-4)
    with pytest.raises(ConfigError, match="is a CNN"):
        harness.load_model("upernet-convnext-tiny", weights="random", attn_implementation="eager")


def test_dpt_swin_architecture_runs():
    m = harness.load_model("dpt-swinv2-tiny", weights="random")
    assert m.family == "dpt" and m.input_size == (256, 256)
    out = m.forward(m.preprocess(images()[:1]))
    assert out.shape == (1, 150, 256, 256)
