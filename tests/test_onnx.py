"""ONNX Runtime: export with a dynamic batch axis, cache by model + weights + opset, parity against
PyTorch fp32 recorded, the same measurement path as PyTorch cells, and no accuracy when parity fails."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import yaml
from layouts import write_ade20k
from tiny_models import save_tiny_deeplab, save_tiny_dpt, save_tiny_segformer, save_tiny_upernet

import harness
from harness.errors import ConfigError, UnsupportedError
from harness.models.base import SegmentationModel
from harness.models.onnx import load_onnx_model
from harness.results import load_run
from harness.runner import run_suite

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'segbench[onnx]')")


@pytest.mark.parametrize("save,exporter", [(save_tiny_segformer, "torchscript"), (save_tiny_dpt, "torchscript"),
                                           (save_tiny_dpt, "dynamo"), (save_tiny_upernet, "auto"),
                                           (save_tiny_deeplab, "torchscript")])
def test_export_parity_and_dynamic_batch(tmp_path, save, exporter):
    path = save(tmp_path / "m")
    ref = harness.load_model(str(path))
    m = harness.load_model(str(path), runtime="onnxruntime", cache_dir=str(tmp_path / "cache"), exporter=exporter)
    assert m.runtime == "onnxruntime" and m.parity["passed"] and m.parity["max_abs_diff"] < 1e-3
    assert m.weights["onnx"]["exporter"] == ("dynamo" if exporter == "auto" else exporter)
    assert m.parity["label_agreement"] > 0.99 and m.params() == ref.params()
    rng = np.random.default_rng(0)
    from PIL import Image

    images = [Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 50, 3), dtype=np.uint8)) for i in range(3)]
    ours, theirs = m.predict(images), ref.predict(images)  # batch of 3: not the export's batch size
    agreement = np.mean([np.mean(a == b) for a, b in zip(ours, theirs, strict=True)])
    assert agreement > 0.99


def test_export_is_cached_by_model_weights_and_opset(tmp_path):
    path = save_tiny_segformer(tmp_path / "m")
    cache = tmp_path / "cache"
    load = functools.partial(harness.load_model, str(path), runtime="onnxruntime", cache_dir=str(cache),
                             exporter="torchscript")
    a = load()
    files = sorted(cache.glob("*/model.onnx"))
    assert len(files) == 1 and not a.weights["onnx"]["cached"] and a.weights["onnx"]["opset"] == 17
    assert sorted(p.name for p in cache.iterdir()) == [files[0].parent.name]  # no temporary folder left
    mtime = files[0].stat().st_mtime_ns
    b = load()
    assert b.weights["onnx"]["cached"] and b.weights["onnx"]["exporter"] == "torchscript"
    assert sorted(cache.glob("*/model.onnx")) == files and files[0].stat().st_mtime_ns == mtime
    load(opset=18)
    assert len(list(cache.glob("*/model.onnx"))) == 2
    other = save_tiny_segformer(tmp_path / "other", num_labels=19)  # other weights: another entry
    harness.load_model(str(other), runtime="onnxruntime", cache_dir=str(cache), exporter="torchscript")
    assert len(list(cache.glob("*/model.onnx"))) == 3


class _DictOutput(torch.nn.Module):
    """A module called positionally that returns {"out": logits}, as torchvision's segmentation models do."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 5, 3, padding=1)

    def forward(self, x: torch.Tensor) -> dict:
        return {"out": torch.nn.functional.interpolate(self.conv(x)[:, :, ::2, ::2], size=x.shape[-2:],
                                                       mode="bilinear", align_corners=False)}


class _TinyAdapter(SegmentationModel):
    name, num_labels, input_size, weights = "dict-output", 5, (32, 32), {"source": "random"}

    def __init__(self):
        super().__init__()
        self.module = _DictOutput().eval()
        self.preprocessor = lambda ims: torch.stack([torch.from_numpy(np.asarray(im.resize((32, 32)), np.float32))
                                                     .permute(2, 0, 1) / 255 for im in ims])

    def _run(self, x):
        return self.module(x)["out"]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_modules_returning_a_dict_export(tmp_path, exporter):
    m = load_onnx_model(_TinyAdapter(), cache_dir=str(tmp_path), exporter=exporter)
    assert m.parity["passed"] and m.parity["label_agreement"] == 1.0 and m.weights["onnx"]["exporter"] == exporter
    x = torch.rand(4, 3, 32, 32)
    ref = _TinyAdapter()
    assert torch.allclose(m.forward(x), ref.forward(x), atol=1e-5)


def test_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="exporter 'jit'"):
        load_onnx_model(_TinyAdapter(), cache_dir=str(tmp_path), exporter="jit")
    with pytest.raises(ConfigError, match="unknown option"):
        load_onnx_model(_TinyAdapter(), cache_dir=str(tmp_path), batch=4)


def test_other_precisions_are_unsupported(tmp_path):
    path = save_tiny_segformer(tmp_path / "m")
    with pytest.raises(UnsupportedError, match="fp32 export"):
        harness.load_model(str(path), runtime="onnxruntime", precision="bf16")


def _suite(tmp_path, atol):
    model = save_tiny_segformer(tmp_path / "m")
    ade = write_ade20k(tmp_path / "data", n=2)
    p = tmp_path / f"s{atol}.yaml"
    p.write_text(yaml.safe_dump({
        "name": "onnx", "models": [{"name": str(model), "label": "tiny",
                                    "options": {"cache_dir": str(tmp_path / "cache"), "parity_atol": atol,
                                                "exporter": "torchscript"}}],
        "datasets": [{"name": "ade20k", "root": str(ade)}], "runtimes": ["onnxruntime"],
        "measure": {"iters": 2, "flops": False}}))
    return p


def test_onnx_cells_are_measured_like_pytorch_cells(tmp_path):
    summary = run_suite(_suite(tmp_path, 1e-3), out_dir=tmp_path / "r", echo=False)
    cell = next(iter(load_run(summary.run_dir).cells.values()))
    assert cell.status == "ok" and cell.identity.runtime == "onnxruntime"
    assert cell.provenance.parity["passed"] and cell.accuracy.metrics["mIoU"] is not None
    assert cell.latency.forward_ms["n"] == 2 and cell.latency.stages_ms["end_to_end"]["n"] >= 1


def test_failed_parity_shows_no_accuracy(tmp_path):
    summary = run_suite(_suite(tmp_path, 0.0), out_dir=tmp_path / "r", echo=False)
    cell = next(iter(load_run(summary.run_dir).cells.values()))
    assert cell.status == "ok" and cell.provenance.parity["passed"] is False
    assert cell.accuracy.metrics is None and "parity" in cell.accuracy.note
    assert cell.latency.forward_ms["n"] == 2


def test_depth_model_export_parity_and_the_adapters_postprocess(tmp_path):
    """A depth adapter's network on ONNX Runtime: parity relative to the prediction's scale, the PyTorch
    adapter's own resize to each image, its facts; aspect-keeping preprocessing and Depth Pro refused."""
    from PIL import Image
    from tiny_depth_models import save_tiny_depth_anything, save_tiny_depth_pro, save_tiny_dpt_depth

    path = save_tiny_dpt_depth(tmp_path / "d")
    ref = harness.load_model(str(path), task="depth")
    m = harness.load_model(str(path), task="depth", runtime="onnxruntime", cache_dir=str(tmp_path / "cache"),
                           exporter="torchscript")
    assert m.runtime == "onnxruntime" and m.task == "depth" and m.parity["passed"], m.parity
    assert m.parity["max_rel_diff"] <= 1e-4 and m.depth_kind == ref.depth_kind == "disparity"
    assert m.describe() == ref.describe() and m.params() == ref.params() and m.weights["onnx"]["bytes"] > 0
    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 50, 3), dtype=np.uint8)) for i in range(3)]
    ours, theirs = m.predict(images), ref.predict(images)
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape and a.dtype == np.float32
        assert np.abs(a - b).max() <= 1e-4 * np.abs(b).max()
    with pytest.raises(UnsupportedError, match="fixed image size"):
        harness.load_model(str(save_tiny_depth_anything(tmp_path / "da")), task="depth", runtime="onnxruntime",
                           cache_dir=str(tmp_path / "cache"))
    with pytest.raises(UnsupportedError, match="field-of-view"):
        harness.load_model(str(save_tiny_depth_pro(tmp_path / "dp")), task="depth", runtime="onnxruntime",
                           cache_dir=str(tmp_path / "cache"))


def test_a_depth_cell_runs_on_onnxruntime(tmp_path):
    from tiny_depth_models import save_tiny_dpt_depth

    model = save_tiny_dpt_depth(tmp_path / "d")
    p = tmp_path / "depth.yaml"
    p.write_text(yaml.safe_dump({
        "name": "onnx-depth", "models": [{"name": str(model), "task": "depth", "label": "tiny-depth",
                                          "options": {"cache_dir": str(tmp_path / "cache"), "exporter": "torchscript"}}],
        "datasets": [{"name": "synthetic-depth", "options": {"num_samples": 2, "image_size": [40, 56]}}],
        "runtimes": ["onnxruntime"], "measure": {"iters": 2, "flops": False}}))
    summary = run_suite(p, out_dir=tmp_path / "r", echo=False)
    cell = next(iter(load_run(summary.run_dir).cells.values()))
    assert cell.status == "ok" and cell.identity.runtime == "onnxruntime", cell.error
    assert cell.provenance.parity["passed"] and cell.accuracy.metrics["abs_rel"] is not None
    assert cell.latency.forward_ms["n"] == 2
