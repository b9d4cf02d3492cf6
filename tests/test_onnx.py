"""ONNX Runtime: export with a dynamic batch axis, cache by model + weights + opset, parity against
PyTorch fp32 recorded, the same measurement path as PyTorch cells, and no accuracy when parity fails."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from layouts import write_ade20k
from tiny_models import save_tiny_dpt, save_tiny_segformer, save_tiny_upernet

import harness
from harness.errors import UnsupportedError
from harness.results import load_run
from harness.runner import run_suite

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'segbench[onnx]')")


@pytest.mark.parametrize("save", [save_tiny_segformer, save_tiny_dpt, save_tiny_upernet])
def test_export_parity_and_dynamic_batch(tmp_path, save):
    path = save(tmp_path / "m")
    ref = harness.load_model(str(path))
    m = harness.load_model(str(path), runtime="onnxruntime", cache_dir=str(tmp_path / "cache"))
    assert m.runtime == "onnxruntime" and m.parity["passed"] and m.parity["max_abs_diff"] < 1e-3
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
    a = harness.load_model(str(path), runtime="onnxruntime", cache_dir=str(cache))
    files = list(cache.glob("*.onnx"))
    assert len(files) == 1 and a.weights["onnx"]["exporter"] in ("torchscript", "dynamo")
    b = harness.load_model(str(path), runtime="onnxruntime", cache_dir=str(cache))
    assert b.weights["onnx"]["exporter"] == "cached" and list(cache.glob("*.onnx")) == files
    harness.load_model(str(path), runtime="onnxruntime", cache_dir=str(cache), opset=18)
    assert len(list(cache.glob("*.onnx"))) == 2


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
                                    "options": {"cache_dir": str(tmp_path / "cache"), "parity_atol": atol}}],
        "datasets": [{"name": "ade20k", "root": str(ade)}], "runtimes": ["onnxruntime"],
        "measure": {"iters": 2, "flops": False}}))
    return p


def test_onnx_cells_are_measured_like_pytorch_cells(tmp_path):
    summary = run_suite(_suite(tmp_path, 1e-3), out_dir=tmp_path / "r", echo=False)
    cell = next(iter(load_run(summary.run_dir).cells.values()))
    assert cell["status"] == "ok" and cell["runtime"] == "onnxruntime"
    assert cell["parity"]["passed"] and cell["metrics"]["mIoU"] is not None
    assert cell["latency_ms"]["n"] == 2 and cell["stages_ms"]["end_to_end"]["n"] >= 1


def test_failed_parity_shows_no_accuracy(tmp_path):
    summary = run_suite(_suite(tmp_path, 0.0), out_dir=tmp_path / "r", echo=False)
    cell = next(iter(load_run(summary.run_dir).cells.values()))
    assert cell["status"] == "ok" and cell["parity"]["passed"] is False
    assert cell["metrics"] is None and "parity" in cell["metrics_note"]
    assert cell["latency_ms"]["n"] == 2
