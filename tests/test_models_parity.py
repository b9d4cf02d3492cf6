"""Preprocessing and post-processing parity with the models' own transformers image processors.

The processors are the PIL-backend classes imported from their modules (in transformers 5 the
top-level SegFormer names ask for torchvision even for the PIL backend), so every comparison
runs here instead of being skipped.
"""

from __future__ import annotations

import importlib
import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import save_tiny_deeplab, save_tiny_dpt, save_tiny_segformer, save_tiny_upernet

import harness
from harness.errors import ConfigError
from harness.models.hf import PROCESSOR_CLASSES, _stem, preprocessor_from_dict
from harness.models.registry import CONFIG_DIR


def images(seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(50, 70), (97, 40), (64, 64)]]


def own_processor(d: dict):
    """The model's own transformers image processor (PIL backend) built from its config dict."""
    module, cls = PROCESSOR_CLASSES[_stem(d)]
    kwargs = {k: v for k, v in d.items() if k not in ("image_processor_type", "feature_extractor_type")}
    return getattr(importlib.import_module(module), cls)(**kwargs)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    return {"dpt": save_tiny_dpt(tmp / "dpt"), "upernet": save_tiny_upernet(tmp / "upernet"),
            "segformer": save_tiny_segformer(tmp / "segformer"), "deeplab": save_tiny_deeplab(tmp / "deeplab")}


REGISTRY_PROCESSORS = sorted(p.name.removesuffix(".preprocessor.json") for p in CONFIG_DIR.glob("*.preprocessor.json"))


@pytest.mark.parametrize("name", REGISTRY_PROCESSORS)
def test_registry_preprocessing_equals_the_models_own_processor(name):
    d = json.loads((CONFIG_DIR / f"{name}.preprocessor.json").read_text())
    ref = own_processor(d)
    ours = preprocessor_from_dict(d, name)
    for im in images():
        a = ours([im]).numpy()
        b = ref(images=[im], return_tensors="pt")["pixel_values"].numpy()
        assert a.dtype == np.float32 and a.shape == b.shape, (a.shape, b.shape)
        assert np.abs(a - b).max() <= 1e-6


@pytest.mark.parametrize("legacy", [
    {"feature_extractor_type": "DPTFeatureExtractor", "size": 48, "image_mean": [0.5] * 3, "image_std": [0.5] * 3},
    {"image_processor_type": "SegformerImageProcessor", "size": {"height": 40, "width": 56}},
    {"image_processor_type": "MobileNetV2ImageProcessor", "size": {"shortest_edge": 45},
     "crop_size": {"height": 45, "width": 45}},
])
def test_absent_keys_take_the_processor_class_defaults(legacy):
    # A DPT processor without "resample" resizes bicubically, SegFormer with ImageNet statistics,
    # MobileNetV2 center-crops: the class's defaults decide, as they do for the model's own processor.
    ref = own_processor(legacy)
    ours = preprocessor_from_dict(legacy, "legacy")
    for im in images(3):
        assert np.abs(ours([im]).numpy() - ref(images=[im], return_tensors="pt")["pixel_values"].numpy()).max() <= 1e-6


def test_dpt_default_resize_is_bicubic_not_bilinear():
    d = {"image_processor_type": "DPTImageProcessor", "size": {"height": 48, "width": 48}}
    assert preprocessor_from_dict(d, "dpt").resample == 3
    assert preprocessor_from_dict({**d, "resample": 2}, "dpt").resample == 2


def test_unsupported_processor_options_are_refused():
    d = {"image_processor_type": "DPTImageProcessor", "size": {"height": 48, "width": 48}, "do_pad": True,
         "size_divisor": 32}
    with pytest.raises(ConfigError, match="do_pad=True is not supported"):
        preprocessor_from_dict(d, "dpt-pad")


@pytest.mark.parametrize("options", [{"keep_aspect_ratio": True, "ensure_multiple_of": 32},
                                     {"keep_aspect_ratio": True, "ensure_multiple_of": 1},
                                     {"keep_aspect_ratio": False, "ensure_multiple_of": 32},
                                     {"keep_aspect_ratio": True, "ensure_multiple_of": 14, "resample": 2}])
@pytest.mark.parametrize("target", [48, 480])
def test_dpt_keep_aspect_ratio_equals_the_dpt_processor(options, target):
    """DPTImageProcessor's keep_aspect_ratio / ensure_multiple_of, no longer refused, on non-square images."""
    d = {"image_processor_type": "DPTImageProcessor", "size": {"height": target, "width": target}, **options}
    ref = own_processor(d)
    ours = preprocessor_from_dict(d, "dpt-keep-aspect")
    assert ours.fixed_size == (not options["keep_aspect_ratio"] and options["ensure_multiple_of"] == 1)
    rng = np.random.default_rng(5)
    for h, w in [(50, 70), (97, 40), (375, 500), (512, 683), (33, 33)]:
        im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        a = ours([im]).numpy()
        b = ref(images=[im], return_tensors="pt")["pixel_values"].numpy()
        assert a.shape == b.shape, (h, w, a.shape, b.shape)
        assert np.abs(a - b).max() <= 1e-6


@pytest.mark.parametrize("kind", ["dpt", "deeplab", "upernet", "segformer"])
def test_predict_equals_the_processors_post_processing(tiny, kind):
    path = tiny[kind]
    model = harness.load_model(str(path))
    ref_proc = own_processor(json.loads((path / "preprocessor_config.json").read_text()))
    ims = images(1)
    pixel_values = ref_proc(images=ims, return_tensors="pt")["pixel_values"]
    assert torch.allclose(model.preprocess(ims), pixel_values, atol=1e-6, rtol=0)
    with torch.no_grad():
        outputs = model.module(pixel_values=pixel_values)
    ref_maps = ref_proc.post_process_semantic_segmentation(outputs, target_sizes=[(im.height, im.width) for im in ims])
    ours = model.predict(ims)
    for a, b in zip(ours, ref_maps, strict=True):
        assert a.dtype == np.int64 and np.array_equal(a, b.numpy())


def test_bicubic_upsampling_is_a_setting(tiny):
    bil = harness.load_model(str(tiny["dpt"]), upsample="bilinear")
    bic = harness.load_model(str(tiny["dpt"]), upsample="bicubic")
    im = images()[:1]
    logits = bil.forward(bil.preprocess(im))
    ref = torch.nn.functional.interpolate(logits, size=(50, 70), mode="bicubic", align_corners=False)[0].argmax(0)
    assert np.array_equal(bic.predict(im)[0], ref.numpy())
    assert bic.upsample == "bicubic"
    with pytest.raises(ConfigError, match="upsample 'nearest'"):
        harness.load_model(str(tiny["dpt"]), upsample="nearest")


def test_preprocessor_is_picklable_and_holds_no_network(tiny):
    model = harness.load_model(str(tiny["segformer"]))
    blob = pickle.dumps(model.preprocessor)
    assert len(blob) < 4096  # parameters would make it far larger
    again = pickle.loads(blob)
    ims = images()
    assert torch.equal(again(ims[:1]), model.preprocess(ims[:1]))
    assert not any(isinstance(v, torch.nn.Module) for v in vars(model.preprocessor).values())


def test_adapter_attributes(tiny):
    m = harness.load_model(str(tiny["upernet"]))
    assert (m.family, m.num_labels, m.input_size, m.runtime) == ("cnn", 150, (64, 64), "pytorch")
    assert m.id2label[3] == "class_3" and not m.module.training
    assert m.image_mean == (0.485, 0.456, 0.406)
    assert harness.load_model(str(tiny["dpt"])).family == "dpt"
    assert harness.load_model(str(tiny["segformer"])).family == "transformer"


@pytest.mark.parametrize("flags", [{}, {"do_rescale": False}, {"do_normalize": False}, {"rescale_factor": 0.5}])
def test_table_lookup_equals_the_elementwise_computation(flags):
    """ResizeNormalize looks each uint8 value up in a table of ``scale``'s floats: the same bits as
    computing them pixel by pixel (float64 rescale, float32 cast, float32 normalisation)."""
    from harness.models.preprocess import ResizeNormalize

    pre = ResizeNormalize(size={"height": 37, "width": 53}, image_mean=[0.485, 0.456, 0.406],
                          image_std=[0.229, 0.224, 0.225], **flags)
    rng = np.random.default_rng(7)
    image = Image.fromarray(rng.integers(0, 256, (61, 90, 3), dtype=np.uint8))
    arr = np.asarray(image.resize((53, 37), resample=Image.Resampling.BILINEAR))
    assert np.array_equal(pre.one(image).view(np.int32), np.ascontiguousarray(pre.scale(arr)).view(np.int32))
    copy = pickle.loads(pickle.dumps(pre))  # as sent to a data worker, table built or not
    assert np.array_equal(copy.one(image), pre.one(image))
