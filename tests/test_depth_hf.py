"""Depth models of transformers: preprocessing equal to each model's own image processor, and
``predict`` equal to the model's own forward + ``post_process_depth_estimation`` on tiny random
models saved with save_pretrained and loaded back through the real from_pretrained path."""

from __future__ import annotations

import importlib
import json
import pickle
import types

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_depth_models import (
    save_tiny_depth_anything,
    save_tiny_depth_pro,
    save_tiny_dpt_beit,
    save_tiny_dpt_depth,
    save_tiny_dpt_swin,
    save_tiny_glpn,
    save_tiny_zoedepth,
)

from harness.errors import ConfigError, WeightsError
from harness.models.depth import depth_param_count, load_depth_model
from harness.models.depth_preprocess import PROCESSOR_KINDS, depth_preprocess_from_dict, processor_stem
from harness.models.depth_registry import CONFIG_DIR, DEPTH_MODELS

SIZES = [(50, 70), (97, 40), (64, 64), (120, 160)]


def images(seed: int = 0, sizes=SIZES) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def own_processor(d: dict):
    """The model's own transformers image processor (PIL backend) built from its config dict."""
    _, module, cls = PROCESSOR_KINDS[processor_stem(d)]
    kwargs = {k: v for k, v in d.items() if k not in ("image_processor_type", "feature_extractor_type")}
    return getattr(importlib.import_module(module), cls)(**kwargs)


def own_pixels(proc, im: Image.Image) -> np.ndarray:
    return proc(images=[im], return_tensors="pt")["pixel_values"].numpy()


def _distinct_registry_processors() -> list[str]:
    """Registry entries with a transformers processor, one per distinct processor config."""
    seen: dict[str, str] = {}
    for p in sorted(CONFIG_DIR.glob("*.preprocessor.json")):
        if processor_stem(json.loads(p.read_text())) in ("DPT", "GLPN", "ZoeDepth"):
            seen.setdefault(p.read_text(), p.name.removesuffix(".preprocessor.json"))
    return sorted(seen.values())


REGISTRY = _distinct_registry_processors()


@pytest.mark.parametrize("name", REGISTRY)
def test_registry_preprocessing_equals_the_models_own_processor(name):
    d = json.loads((CONFIG_DIR / f"{name}.preprocessor.json").read_text())
    ref, ours = own_processor(d), depth_preprocess_from_dict(d, name)
    for im in images(sizes=[(97, 40), (120, 160)]):
        a, b = ours([im]).numpy(), own_pixels(ref, im)
        assert a.dtype == np.float32 and a.shape == b.shape, (a.shape, b.shape)
        assert np.abs(a - b).max() <= 1e-6
        assert ours.output_size(im.height, im.width) == b.shape[2:]


@pytest.mark.parametrize("d", [
    {"image_processor_type": "DPTImageProcessor", "size": {"height": 64, "width": 64}, "keep_aspect_ratio": True,
     "ensure_multiple_of": 7, "do_pad": True, "size_divisor": 32},
    {"image_processor_type": "DPTImageProcessor", "size": {"height": 40, "width": 72}, "resample": 2},
    {"image_processor_type": "GLPNImageProcessor", "size_divisor": 16, "do_normalize": True,
     "image_mean": [0.4, 0.5, 0.6], "image_std": [0.2, 0.3, 0.4]},
    {"image_processor_type": "ZoeDepthImageProcessor"},  # the class defaults (ensure_multiple_of 1/32)
    {"image_processor_type": "ZoeDepthImageProcessor", "do_pad": False, "keep_aspect_ratio": False,
     "size": {"height": 32, "width": 64}, "resample": 3},
], ids=["dpt-pad", "dpt-squash", "glpn-norm", "zoe-defaults", "zoe-nopad"])
def test_processor_options_equal_the_models_own_processor(d):
    ref, ours = own_processor(d), depth_preprocess_from_dict(d, "test")
    for im in images(1):
        a, b = ours([im]).numpy(), own_pixels(ref, im)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1e-6, (d, im.size)


def test_depth_pro_preprocessing_follows_its_processor_algorithm():
    """DepthProImageProcessor needs torchvision: compared with its algorithm written here in float64/float32:
    pixels (0..255) minus mean x 255 over std x 255, then a bilinear resize without antialiasing."""
    d = {"image_processor_type": "DepthProImageProcessor", "size": {"height": 48, "width": 40},
         "image_mean": [0.4, 0.5, 0.6], "image_std": [0.2, 0.25, 0.3]}
    ours = depth_preprocess_from_dict(d, "test")
    for im in images(2):
        x = np.asarray(im).astype(np.float64).transpose(2, 0, 1)
        x = (x - np.array(d["image_mean"])[:, None, None] * 255) / (np.array(d["image_std"])[:, None, None] * 255)
        ref = torch.nn.functional.interpolate(torch.from_numpy(x)[None], (48, 40), mode="bilinear",
                                              align_corners=False)[0].numpy()
        assert np.abs(ours([im]).numpy()[0] - ref).max() <= 3e-5  # float32 arithmetic, values up to ~4


def test_unknown_processor_type_is_refused_with_the_file_named():
    with pytest.raises(ConfigError, match="cfg.json.*SegformerImageProcessor.*not a depth processor"):
        depth_preprocess_from_dict({"image_processor_type": "SegformerImageProcessor"}, "cfg.json")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny_depth")
    return {"dpt": save_tiny_dpt_depth(tmp / "dpt"), "dpt-beit": save_tiny_dpt_beit(tmp / "beit"),
            "dpt-swin": save_tiny_dpt_swin(tmp / "swin"), "da": save_tiny_depth_anything(tmp / "da"),
            "da-metric": save_tiny_depth_anything(tmp / "dam", "metric", 20), "zoe": save_tiny_zoedepth(tmp / "zoe"),
            "glpn": save_tiny_glpn(tmp / "glpn"), "depth-pro": save_tiny_depth_pro(tmp / "pro")}


def reference(path, ims, **post) -> list[np.ndarray]:
    """The model's own pipeline: its processor, from_pretrained forward, post_process_depth_estimation."""
    from transformers import AutoModelForDepthEstimation

    proc = own_processor(json.loads((path / "preprocessor_config.json").read_text()))
    model = AutoModelForDepthEstimation.from_pretrained(path).eval()
    out = []
    for im in ims:  # one by one: aspect-kept inputs of different sizes do not stack
        pixels = proc(images=[im], return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            outputs = model(pixel_values=pixels)
            if post.get("flip"):
                post = {**post, "outputs_flipped": model(pixel_values=torch.flip(pixels, dims=[3]))}
        kwargs = {k: v for k, v in post.items() if k != "flip"}
        if "source_sizes" in kwargs:
            kwargs["source_sizes"] = [(im.height, im.width)]
        res = proc.post_process_depth_estimation(outputs, target_sizes=[(im.height, im.width)], **kwargs)
        out.append(res[0]["predicted_depth"].numpy())
    return out


def assert_close(ours: list[np.ndarray], ref: list[np.ndarray], ims) -> None:
    for a, b, im in zip(ours, ref, ims, strict=True):
        assert a.dtype == np.float32 and a.shape == (im.height, im.width) == b.shape
        assert np.isfinite(a).all()
        assert np.abs(a - b).max() <= 1e-5 * max(1.0, float(np.abs(b).max())), np.abs(a - b).max()


@pytest.mark.parametrize("key,kind,space,family", [
    ("dpt", "disparity", "disparity", "dpt"), ("dpt-beit", "disparity", "disparity", "dpt"),
    ("dpt-swin", "disparity", "disparity", "dpt"), ("da", "disparity", "disparity", "dpt"),
    ("da-metric", "metric", "none", "dpt"), ("glpn", "metric", "none", "transformer")])
def test_predict_equals_the_models_own_post_process(tiny, key, kind, space, family):
    ims = images(3, sizes=[(50, 70), (97, 40)])
    model = load_depth_model(str(tiny[key]))
    assert (model.depth_kind, model.align_space, model.family, model.task) == (kind, space, family, "depth")
    assert_close(model.predict(ims), reference(tiny[key], ims), ims)
    assert model.weights["source"] == "local" and len(model.weights["sha256"]) == 64
    pickle.loads(pickle.dumps(model.preprocessor))  # DataLoader workers can run it


def test_depth_anything_metric_declares_its_range(tiny):
    model = load_depth_model(str(tiny["da-metric"]))
    assert model.max_depth == 20.0
    maps = model.predict(images(4)[:2])
    assert all(float(m.min()) >= 0 and float(m.max()) <= 20.0 for m in maps)  # sigmoid x max_depth


@pytest.fixture
def zoe_processor_resize(monkeypatch):
    """ZoeDepth's post-processing calls torchvision's ``resize`` (absent here). On a float tensor that
    is ``F.interpolate(mode, align_corners=False, antialias=False)``; this stand-in does exactly that,
    and the processor's own padding removal and flip averaging run unchanged."""
    module = importlib.import_module("transformers.models.zoedepth.image_processing_pil_zoedepth")
    modes = types.SimpleNamespace(BICUBIC="bicubic", BILINEAR="bilinear")

    def resize(x, size, interpolation, antialias=False):
        return torch.nn.functional.interpolate(x[None], size=list(size), mode=interpolation, align_corners=False,
                                               antialias=antialias)[0]

    monkeypatch.setattr(module, "tvF", types.SimpleNamespace(resize=resize, InterpolationMode=modes), raising=False)


@pytest.mark.parametrize("flip", [True, False])
def test_zoedepth_predict_equals_its_post_process_with_padding_and_flip(tiny, zoe_processor_resize, flip):
    ims = images(5, sizes=[(97, 40)] if flip else [(50, 70)])
    model = load_depth_model(str(tiny["zoe"]), flip=flip)
    assert model.describe()["flip"] is flip and model.depth_kind == "metric" and model.max_depth == 80.0
    ref = reference(tiny["zoe"], ims, source_sizes=True, flip=flip)
    assert_close(model.predict(ims), ref, ims)


def test_depth_pro_predict_follows_its_post_process(tiny):
    """DepthProImageProcessor needs torchvision; its post-processing written here from its source:
    focal = W / 2 / tan(fov / 2), depth x W / focal, bilinear resize, 1 / clamp(., 1e-4, 1e4)."""
    from transformers import AutoModelForDepthEstimation

    ims = images(6, sizes=[(50, 70)])
    model = load_depth_model(str(tiny["depth-pro"]))
    net = AutoModelForDepthEstimation.from_pretrained(tiny["depth-pro"]).eval()
    details = model.predict_details(ims)
    for im, row in zip(ims, details, strict=True):
        with torch.no_grad():
            out = net(pixel_values=model.preprocess([im]))
        focal = 0.5 * im.width / torch.tan(0.5 * torch.deg2rad(out.field_of_view[0]))
        d = out.predicted_depth[0] * im.width / focal
        d = torch.nn.functional.interpolate(d[None, None], size=(im.height, im.width), mode="bilinear")[0, 0]
        ref = (1.0 / torch.clamp(d, min=1e-4, max=1e4)).numpy()
        assert row["depth"].shape == ref.shape and np.abs(row["depth"] - ref).max() <= 1e-5 * float(ref.max())
        assert row["field_of_view"] == pytest.approx(float(out.field_of_view[0]), rel=1e-6)
        assert row["focal_length"] == pytest.approx(float(focal), rel=1e-5)


def test_batches_of_mixed_sizes_run_grouped_and_keep_order(tiny):
    model = load_depth_model(str(tiny["da"]))
    ims = images(7, sizes=[(50, 70), (97, 40), (50, 70)])
    with pytest.raises(ConfigError, match="cannot form one batch"):
        model.preprocess(ims)
    one_by_one = [model.predict([im])[0] for im in ims]
    for a, b in zip(model.predict(ims), one_by_one, strict=True):
        assert a.shape == b.shape and np.abs(a - b).max() <= 1e-5 * float(np.abs(b).max())


def test_precisions_run_and_stay_close_to_fp32(tiny):
    ims = images(8, sizes=[(50, 70)])
    ref = load_depth_model(str(tiny["dpt-swin"])).predict(ims)
    for precision, amp in (("bf16", "autocast"), ("bf16", "cast")):
        maps = load_depth_model(str(tiny["dpt-swin"]), precision=precision, amp=amp).predict(ims)
        for a, b in zip(maps, ref, strict=True):
            assert a.dtype == np.float32 and np.isfinite(a).all()
            assert np.abs(a - b).max() <= 0.05 * float(np.abs(b).max()) + 1e-3


def test_bad_inputs_name_what_is_wrong(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="unknown depth model 'dpt-larg'.*did you mean"):
        load_depth_model("dpt-larg")
    with pytest.raises(WeightsError, match="someone/missing-depth.*not available"):
        load_depth_model("someone/missing-depth")
    with pytest.raises(ConfigError, match="flip applies to ZoeDepth"):
        load_depth_model(str(tiny["dpt"]), flip=True)
    with pytest.raises(ConfigError, match="unknown option.*colour"):
        load_depth_model(str(tiny["dpt"]), colour=1)
    with pytest.raises(ConfigError, match="depth_kind 'inverse'"):
        load_depth_model(str(tiny["dpt"]), depth_kind="inverse")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((tiny["dpt"] / "config.json").read_text())
    with pytest.raises(WeightsError, match="no preprocessor_config.json"):
        load_depth_model(str(bare), weights="random")
    square = json.loads((tiny["dpt"] / "preprocessor_config.json").read_text())
    aspect = tmp_path / "aspect"
    aspect.mkdir()
    (aspect / "config.json").write_text((tiny["dpt"] / "config.json").read_text())
    (aspect / "preprocessor_config.json").write_text(json.dumps({**square, "keep_aspect_ratio": True}))
    with pytest.raises(ConfigError, match="square inputs only"):
        load_depth_model(str(aspect), weights="random")
    with pytest.raises(WeightsError, match="no such file or directory"):
        load_depth_model("dpt-hybrid-midas", weights=str(tmp_path / "nope.pt"))


def test_random_weights_build_the_architecture_seeded(tiny):
    a = load_depth_model(str(tiny["glpn"]), weights="random")
    b = load_depth_model(str(tiny["glpn"]), weights="random")
    assert a.weights == {"source": "random", "seed": 0}
    ims = images(9, sizes=[(60, 90)])
    assert np.array_equal(a.predict(ims)[0], b.predict(ims)[0])  # same seed, same weights


@pytest.mark.parametrize("name", [n for n, s in DEPTH_MODELS.items() if s.builder == "hf"])
def test_registry_architectures_have_their_published_size(name):
    """Built on the meta device from configs/depth/<name>.json: parameters within 3% of the published count
    (the MiDaS v3.1 table rounds to millions and counts the backbones' unused classifier heads)."""
    spec = DEPTH_MODELS[name]
    counted = depth_param_count(spec)
    assert counted > 1e6
    if spec.published_params_m:
        assert abs(counted / 1e6 - spec.published_params_m) <= 0.03 * spec.published_params_m
