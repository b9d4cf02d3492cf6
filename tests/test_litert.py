"""LiteRT adapter: letterbox geometry, quantization, label maps, errors, and the whole adapter on tiny
.tflite models written here (a 1x1 convolution, optionally strided, optionally followed by ARG_MAX),
checked against a numpy computation of the same network and of the letterbox protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.errors import ConfigError, UnsupportedError, WeightsError
from harness.models.letterbox import LetterboxQuantize, quantize, valid_region
from harness.models.litert import (
    LITERT_MODELS,
    MISS,
    apply_lut,
    label_lut,
    litert_model_infos,
    load_litert_model,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


# -- pieces that need no model file ------------------------------------------------------
def test_valid_region_keeps_aspect():
    assert valid_region(512, 683, 512) == (384, 512)
    assert valid_region(683, 512, 512) == (512, 384)
    assert valid_region(100, 100, 513) == (513, 513)
    assert valid_region(364, 500, 513) == (373, 513)  # 364 * 513 / 500 = 373.464
    assert valid_region(100, 100, (64, 32)) == (32, 32)  # non-square input: the narrower side decides
    assert valid_region(1, 10000, 512) == (1, 512)  # never an empty region


def test_letterbox_quantizes_raw_pixels_and_pads_with_zero_point():
    pre = LetterboxQuantize(64, dtype="uint8", scale=1 / 128, zero_point=128)
    img = Image.fromarray(np.arange(32 * 64 * 3, dtype=np.uint32).reshape(32, 64, 3).astype(np.uint8))
    x = pre([img]).numpy()[0]
    assert x.dtype == np.uint8 and x.shape == (64, 64, 3)
    assert np.array_equal(x[:32], np.asarray(img))  # real = (p - 128) / 128 quantized back to p
    assert (x[32:] == 128).all()  # padding dequantizes to 0


def test_letterbox_int8_and_float_inputs():
    img = Image.fromarray(np.full((10, 20, 3), 200, dtype=np.uint8))
    x = LetterboxQuantize((16, 16), "int8", scale=1 / 255, zero_point=-128, input_mean=0, input_std=255)([img])
    assert x.dtype == torch.int8 and int(x[0, 0, 0, 0]) == 200 - 128 and int(x[0, 15, 0, 0]) == -128
    f = LetterboxQuantize((16, 16), "float32", input_mean=0, input_std=255)([img])
    assert f.dtype == torch.float32 and float(f[0, 0, 0, 0]) == pytest.approx(200 / 255) and float(f[0, 15, 0, 0]) == 0
    assert list(quantize(np.array([-2.0, 0.0, 2.0]), 1 / 128, 0, "int8")) == [-128, 0, 127]  # clipped


def test_label_maps():
    lut = label_lut("ade20k_reduce_zero", 151)
    assert lut[0] == MISS and lut[1] == 0 and lut[150] == 149
    assert label_lut(None, 10) is None
    assert list(label_lut({0: None, 1: 5}, 3)) == [MISS, 5, MISS]
    assert apply_lut(torch.tensor([0, 1, 2, 7, -1]), label_lut({1: 5}, 3)).tolist() == [MISS, 5, MISS, MISS, MISS]
    with pytest.raises(ConfigError, match="ade20k_reduce_zero"):
        label_lut("nonsense", 3)
    with pytest.raises(ConfigError, match="outside the model's labels"):
        label_lut({9: 1}, 3)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(WeightsError, match="no such .tflite file"):
        load_litert_model(str(tmp_path / "nope.tflite"))
    with pytest.raises(UnsupportedError, match="precision 'bf16' does not apply"):
        load_litert_model("deeplabv3-mnv2-ade20k-litert", precision="bf16")
    with pytest.raises(UnsupportedError, match="CPU"):
        load_litert_model("deeplabv3-mnv2-ade20k-litert", device="cuda")
    with pytest.raises(UnsupportedError, match="random"):
        load_litert_model("deeplabv3-mnv2-ade20k-litert", weights="random")
    with pytest.raises(ConfigError, match="unknown option"):
        load_litert_model("deeplabv3-mnv2-ade20k-litert", stride=3)
    with pytest.raises(ConfigError, match="label_set 'coco'"):
        load_litert_model("deeplabv3-mnv2-ade20k-litert", label_set="coco")


def test_missing_registered_file_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGBENCH_WEIGHTS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsError, match="SEGBENCH_WEIGHTS"):
        load_litert_model("deeplabv3-mnv2-voc-litert")
    rows = {r["name"]: r for r in litert_model_infos()}
    assert set(rows) == set(LITERT_MODELS) and not any(r["present"] for r in rows.values())
    assert rows["deeplabv3-mnv2-voc-litert"]["input_size"] == [513, 513]


# -- tiny .tflite models -----------------------------------------------------------------
def write_tflite(path: Path, in_hw=(8, 8), in_dtype="uint8", scale=1 / 128, zero_point=128, classes=4,
                 stride=1, labels=False, seed=0):
    """A model: image -> (DEQUANTIZE) -> 1x1 CONV_2D (stride, SAME) -> logits (-> ARG_MAX, int64).

    Returns the conv weights (classes, 3) and bias (classes,) as float64 for the reference.
    """
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated", reason="ai-edge-litert is not installed")
    import flatbuffers

    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(classes, 1, 1, 3)).astype(np.float32)
    bias = (rng.normal(size=(classes,)) * 0.1).astype(np.float32)
    types = {"uint8": schema.TensorType.UINT8, "int8": schema.TensorType.INT8, "float32": schema.TensorType.FLOAT32}
    buffers, tensors, ops, codes = [schema.BufferT()], [], [], []

    def buffer(arr: np.ndarray) -> int:
        b = schema.BufferT()
        b.data = np.frombuffer(np.ascontiguousarray(arr).tobytes(), dtype=np.uint8)
        buffers.append(b)
        return len(buffers) - 1

    def tensor(shape, ttype, name, buf=0, quant=None) -> int:
        t = schema.TensorT()
        t.shape, t.type, t.name, t.buffer = list(shape), ttype, name, buf
        if quant:
            q = schema.QuantizationParametersT()
            q.scale, q.zeroPoint = [quant[0]], [quant[1]]
            t.quantization = q
        tensors.append(t)
        return len(tensors) - 1

    def op(code, ins, outs, options_type=0, options=None):
        if code not in codes:
            codes.append(code)
        o = schema.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = codes.index(code), ins, outs
        o.builtinOptionsType, o.builtinOptions = options_type, options
        ops.append(o)

    h, w = in_hw
    image = tensor([1, h, w, 3], types[in_dtype], "image", quant=None if in_dtype == "float32" else (scale, zero_point))
    real = image
    if in_dtype != "float32":
        real = tensor([1, h, w, 3], schema.TensorType.FLOAT32, "real")
        op(schema.BuiltinOperator.DEQUANTIZE, [image], [real])
    oh, ow = -(-h // stride), -(-w // stride)
    logits = tensor([1, oh, ow, classes], schema.TensorType.FLOAT32, "logits")
    conv = schema.Conv2DOptionsT()
    conv.padding, conv.strideH, conv.strideW = schema.Padding.SAME, stride, stride
    conv.dilationHFactor = conv.dilationWFactor = 1
    op(schema.BuiltinOperator.CONV_2D, [real, tensor(weight.shape, schema.TensorType.FLOAT32, "w", buffer(weight)),
                                        tensor(bias.shape, schema.TensorType.FLOAT32, "b", buffer(bias))],
       [logits], schema.BuiltinOptions.Conv2DOptions, conv)
    out = logits
    if labels:
        axis = tensor([1], schema.TensorType.INT32, "axis", buffer(np.array([3], np.int32)))
        out = tensor([1, oh, ow], schema.TensorType.INT64, "labels")
        am = schema.ArgMaxOptionsT()
        am.outputType = schema.TensorType.INT64
        op(schema.BuiltinOperator.ARG_MAX, [logits, axis], [out], schema.BuiltinOptions.ArgMaxOptions, am)
    graph = schema.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators, graph.name = tensors, [image], [out], ops, "main"
    model = schema.ModelT()
    model.version, model.subgraphs, model.buffers, model.description = 3, [graph], buffers, "test model"
    model.operatorCodes = [schema.OperatorCodeT(deprecatedBuiltinCode=min(c, 127), builtinCode=c, version=1)
                           for c in codes]
    fb = flatbuffers.Builder(1024)
    fb.Finish(model.Pack(fb), file_identifier=b"TFL3")
    path.write_bytes(bytes(fb.Output()))
    return weight[:, 0, 0, :].astype(np.float64), bias.astype(np.float64)


def ref_letterbox(image: Image.Image, in_hw, scale, zero_point, dtype, mean=128.0, std=128.0):
    """The letterboxed input and its valid (rows, cols), written independently of the adapter."""
    h, w = image.height, image.width
    s = min(in_hw[0] / h, in_hw[1] / w)
    rows, cols = max(1, int(np.floor(h * s + 0.5))), max(1, int(np.floor(w * s + 0.5)))
    real = (np.asarray(image.resize((cols, rows), Image.BILINEAR), dtype=np.float64) - mean) / std
    if dtype == "float32":
        canvas = np.zeros((*in_hw, 3), np.float32)
        canvas[:rows, :cols] = real
    else:
        lo, hi = (0, 255) if dtype == "uint8" else (-128, 127)
        canvas = np.full((*in_hw, 3), zero_point, dtype=dtype)
        canvas[:rows, :cols] = np.clip(np.round(real / scale + zero_point), lo, hi)
    return canvas, rows, cols


def ref_logits(canvas, weight, bias, scale, zero_point, stride):
    """The network in float64: dequantize, take every ``stride``-th pixel, 1x1 convolution."""
    real = (canvas.astype(np.float64) - zero_point) * scale if scale else canvas.astype(np.float64)
    return real[::stride, ::stride] @ weight.T + bias  # (oh, ow, classes)


def ref_nearest(arr, h, w):
    """Nearest-neighbour resize by pixel centres."""
    rows = np.minimum(((np.arange(h) + 0.5) * arr.shape[0] / h).astype(np.int64), arr.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * arr.shape[1] / w).astype(np.int64), arr.shape[1] - 1)
    return arr[rows][:, cols]


def ref_bilinear(arr, h, w):
    """Bilinear resize of (H, W, C) with half-pixel centres and edge clamping, float64."""
    def axis(n_out, n_in):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0)
        lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    r0, r1, fr = axis(h, arr.shape[0])
    c0, c1, fc = axis(w, arr.shape[1])
    top = arr[r0][:, c0] * (1 - fc)[None, :, None] + arr[r0][:, c1] * fc[None, :, None]
    bottom = arr[r1][:, c0] * (1 - fc)[None, :, None] + arr[r1][:, c1] * fc[None, :, None]
    return top * (1 - fr)[:, None, None] + bottom * fr[:, None, None]


def images(seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(10, 15), (13, 6), (8, 8)]]


@pytest.mark.parametrize("in_dtype,zero_point,stride,in_hw", [("uint8", 128, 1, (8, 8)), ("int8", 0, 1, (8, 8)),
                                                               ("uint8", 128, 2, (9, 9))])
def test_label_map_model_matches_reference(tmp_path, in_dtype, zero_point, stride, in_hw):
    path = tmp_path / "labels.tflite"
    weight, bias = write_tflite(path, in_hw=in_hw, in_dtype=in_dtype, zero_point=zero_point, stride=stride, labels=True)
    model = load_litert_model(str(path), label_map={0: None, 1: 0, 2: 1, 3: 2})
    assert model.output_kind == "labels" and model.input_size == in_hw and model.runtime == "litert"
    assert model.protocol_note["mode"] == "letterbox" and model.protocol_note["pad_value"] == zero_point
    ims = images()
    preds = model.predict(ims)  # a batch of 3 on a model with a fixed batch of 1
    for im, pred in zip(ims, preds, strict=True):
        canvas, rows, cols = ref_letterbox(im, in_hw, 1 / 128, zero_point, in_dtype)
        lab = ref_logits(canvas, weight, bias, 1 / 128, zero_point, stride).argmax(-1)
        lab = ref_nearest(lab, *in_hw)[:rows, :cols]  # a coarser output is first brought to the input's size
        expected = np.array([MISS, 0, 1, 2])[ref_nearest(lab, im.height, im.width)]
        assert pred.dtype == np.int64 and np.array_equal(pred, expected)
    assert (np.concatenate([p.ravel() for p in preds]) == MISS).any()  # label 0 occurs and becomes a miss


@pytest.mark.parametrize("stride,in_hw", [(1, (8, 8)), (2, (8, 12))])
def test_logits_model_matches_reference(tmp_path, stride, in_hw):
    path = tmp_path / "logits.tflite"
    weight, bias = write_tflite(path, in_hw=in_hw, classes=5, stride=stride)
    model = load_litert_model(str(path))
    assert model.output_kind == "logits" and model.num_labels == 5 and model.input_size == in_hw
    ims = images(1)
    x = model.preprocess(ims)
    out = model.forward(x)
    assert out.dtype == torch.float32 and out.shape == (3, 5, -(-in_hw[0] // stride), -(-in_hw[1] // stride))
    agree = []
    for i, (im, pred) in enumerate(zip(ims, model.postprocess(out, [(m.height, m.width) for m in ims]), strict=True)):
        canvas, rows, cols = ref_letterbox(im, in_hw, 1 / 128, 128, "uint8")
        assert np.array_equal(x[i].numpy(), canvas)
        logits = ref_logits(canvas, weight, bias, 1 / 128, 128, stride)
        assert np.allclose(out[i].permute(1, 2, 0).numpy(), logits, atol=1e-5)
        full = ref_bilinear(logits, *in_hw) if stride > 1 else logits  # to the input's resolution first
        expected = ref_bilinear(full[:rows, :cols], im.height, im.width).argmax(-1)
        agree.append(np.mean(pred.numpy() == expected))
    assert min(agree) > 0.98  # float32 vs float64 only differ at near-ties


def test_float_input_model(tmp_path):
    path = tmp_path / "float.tflite"
    weight, bias = write_tflite(path, in_dtype="float32", labels=True)
    model = load_litert_model(str(path), input_mean=0.0, input_std=255.0)  # inputs in [0, 1]
    im = images(2)[0]
    canvas, rows, cols = ref_letterbox(im, (8, 8), 0, 0, "float32", mean=0.0, std=255.0)
    lab = ref_logits(canvas, weight, bias, 0, 0, 1).argmax(-1)[:rows, :cols]
    assert np.array_equal(model.predict([im])[0], ref_nearest(lab, im.height, im.width))


def test_foreign_batches_are_refused(tmp_path):
    path = tmp_path / "labels.tflite"
    write_tflite(path, labels=True)
    model = load_litert_model(str(path))
    with pytest.raises(UnsupportedError, match="letterbox preprocessor"):
        model.forward(torch.zeros(1, 3, 8, 8))  # a normalised NCHW float batch, as slide windows are


def test_registered_sizes_match_the_files(monkeypatch):
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (pip install 'segbench[litert]')")
    weights = SHARED / "weights"
    if not weights.is_dir():
        pytest.skip(f"{weights} is not present (the real LiteRT models live in ../shared/weights)")
    monkeypatch.setenv("SEGBENCH_WEIGHTS", str(weights))
    for name, spec in LITERT_MODELS.items():
        model = load_litert_model(name)
        assert model.input_size == tuple(spec["input_size"]) and model.output_kind == "labels", name
        assert model.label_set == spec["label_set"] and model.weights["source"] == "file"
    assert all(r["present"] for r in litert_model_infos())
