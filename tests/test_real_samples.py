"""The accuracy path end to end on real trained weights and real data: the three LiteRT models on
the real samples in ../shared, checked against an independent reference computation written here
(numpy letterbox, the interpreter called directly, numpy nearest resize, float64 metrics)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import harness
from harness.models.litert import load_litert_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CASES = {
    "ade20k": ("deeplabv3-mnv2-ade20k-litert", "deeplabv3_mnv2_ade20k_uint8.tflite",
               "data/ade20k/ADEChallengeData2016", {}, 150),
    "voc": ("deeplabv3-mnv2-voc-litert", "deeplabv3_mnv2_pascal_quant.tflite",
            "data/voc2012/VOCdevkit/VOC2012", {"split": "all"}, 21),
    "cityscapes": ("deeplabv3-edgetpu-cityscapes-litert", "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite",
                   "data/cityscapes", {}, 19),
}


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not present (real samples and weights live in ../shared beside the repository)")
    return path


def reference_labels(tflite: Path, image: Image.Image, dataset: str) -> np.ndarray:
    """Letterbox by hand, run the interpreter directly, crop, nearest-resize, map labels."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(tflite))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    size = int(inp["shape"][1])
    scale, zp = inp["quantization"]
    h, w = image.height, image.width
    s = size / max(h, w)
    rh, rw = max(1, round(h * s)), max(1, round(w * s))
    small = np.asarray(image.convert("RGB").resize((rw, rh), Image.BILINEAR), dtype=np.float64)
    q = np.clip(np.round(((small - 128.0) / 128.0) / scale + zp), 0, 255)
    canvas = np.full((size, size, 3), zp, dtype=np.uint8)
    canvas[:rh, :rw] = q.astype(np.uint8)
    it.set_tensor(inp["index"], canvas[None])
    it.invoke()
    lab = np.array(it.get_tensor(out["index"]))[0, :rh, :rw].astype(np.int64)
    if dataset == "ade20k":
        lab = np.where(lab == 0, 255, lab - 1)  # 0 = other: a miss for the true class
    rows = np.minimum(((np.arange(h) + 0.5) * rh / h).astype(np.int64), rh - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * rw / w).astype(np.int64), rw - 1)
    return lab[rows][:, cols]


def reference_metrics(preds, targets, C):
    """Dataset-level pixel accuracy and per-class IoU in float64; NaN for a class absent from both."""
    p = np.concatenate([x.ravel() for x in preds])
    t = np.concatenate([x.ravel() for x in targets])
    keep = t != 255
    p, t = p[keep], t[keep]
    iou = []
    for c in range(C):
        union = np.sum((p == c) | (t == c), dtype=np.float64)
        iou.append(np.sum((p == c) & (t == c), dtype=np.float64) / union if union else np.nan)
    return {"aAcc": float(np.sum(p == t, dtype=np.float64) / t.size), "mIoU": float(np.nanmean(iou)),
            "IoU": np.array(iou)}


@pytest.mark.parametrize("dataset", list(CASES))
def test_litert_on_real_samples_matches_reference(dataset, capsys):
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (pip install 'segbench[litert]')")
    name, file, root, opts, C = CASES[dataset]
    tflite = need(SHARED / "weights" / file)
    root = need(SHARED / root)
    ds = harness.load_dataset(dataset, root=str(root), **opts)
    model = load_litert_model(str(tflite), label_set=dataset,
                              label_map="ade20k_reduce_zero" if dataset == "ade20k" else None)
    assert model.protocol_note["mode"] == "letterbox" and model.output_kind == "labels"
    metrics = harness.SegmentationMetrics(ds.num_classes, ignore_index=255)
    preds, refs, targets = [], [], []
    for i in range(len(ds)):
        s = ds.load(i)
        pred = model.predict([s.image])[0]
        metrics.update(pred, s.label)
        preds.append(pred)
        refs.append(reference_labels(tflite, s.image, dataset))
        targets.append(s.label)
    for a, b in zip(preds, refs, strict=True):
        assert np.array_equal(a, b)
    ours = metrics.compute()
    ref = reference_metrics(refs, targets, C)
    assert ours["aAcc"] == pytest.approx(ref["aAcc"], abs=1e-9)
    assert ours["mIoU"] == pytest.approx(ref["mIoU"], abs=1e-9)
    iou = np.array([np.nan if v is None else v for v in ours["IoU"]], dtype=np.float64)
    assert np.array_equal(np.isnan(iou), np.isnan(ref["IoU"]))
    assert np.allclose(iou[~np.isnan(iou)], ref["IoU"][~np.isnan(ref["IoU"])], rtol=0, atol=1e-9)
    with capsys.disabled():
        print(f"\n{name} on {len(ds)} real {dataset} sample(s): aAcc {ours['aAcc']:.4f}, mIoU {ours['mIoU']:.4f}")


def test_registered_names_find_the_shared_files(monkeypatch):
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    weights = need(SHARED / "weights")
    monkeypatch.setenv("SEGBENCH_WEIGHTS", str(weights))
    m = harness.load_model("deeplabv3-mnv2-ade20k-litert")
    assert m.runtime == "litert" and m.input_size == (512, 512) and m.output_kind == "labels"
    assert m.weights["source"] == "file" and len(m.weights["sha256"]) == 64
    assert m.protocol_note["mode"] == "letterbox" and m.label_map == "ade20k_reduce_zero"


def test_a_batch_of_different_sizes_equals_one_image_at_a_time(monkeypatch):
    """Each image of a batch is letterboxed and cropped back with its own valid region."""
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    monkeypatch.setenv("SEGBENCH_WEIGHTS", str(need(SHARED / "weights")))
    ds = harness.load_dataset("ade20k", root=str(need(SHARED / CASES["ade20k"][2])))
    ims = [ds.load(i).image for i in range(len(ds))]
    assert len({im.size for im in ims}) == len(ims) > 1
    model = load_litert_model("deeplabv3-mnv2-ade20k-litert")
    together = model.predict(ims)
    for im, pred in zip(ims, together, strict=True):
        assert pred.shape == (im.height, im.width) and np.array_equal(pred, model.predict([im])[0])


BASELINE = Path(__file__).resolve().parents[1] / "results" / "baselines" / "real-samples-cpu"


def _baseline_cells() -> list[dict]:
    import json

    return [json.loads(p.read_text()) for p in sorted((BASELINE / "cells").glob("*.json"))]


@pytest.mark.parametrize("committed", _baseline_cells(), ids=lambda c: c["cell_id"][:40])
def test_committed_real_sample_accuracies_are_recomputed(committed, tmp_path, monkeypatch):
    """The committed baseline's accuracies, recomputed through the cell's own accuracy loop, to 1e-6.

    The cell is rebuilt from the baseline's run.json (same suite, same cell spec), the weights and
    data are the files the baseline names (their sha256 and data digest must match), and
    harness.stages.accuracy runs as in a measured cell.
    """
    import json

    from harness import stages
    from harness.launchers import Placement
    from harness.suite import Cell
    from harness.tasks import get_task, task_module

    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (pip install 'segbench[litert]')")
    run = json.loads((BASELINE / "run.json").read_text())
    spec = run["cell_specs"][committed["cell_id"]]
    cell = Cell.from_dict(spec)
    repo = BASELINE.parents[2]
    tflite = need(repo / committed["weights"]["path"])
    root = need(repo / cell.dataset_root)
    monkeypatch.setenv("SEGBENCH_WEIGHTS", str(tflite.parent))
    model = harness.load_model(cell.model, weights=cell.weights, device="cpu", runtime=cell.runtime)
    assert model.weights["sha256"] == committed["weights"]["sha256"], "the weights file changed"
    ds = harness.load_dataset(cell.dataset, root=str(root), split=cell.dataset_split, limit=cell.dataset_limit)
    assert ds.digest() == committed["data"]["digest"], "the real samples changed since the baseline"
    cell.measure["samples"] = 0
    outcome = stages.accuracy(model, ds, ds, cell, tmp_path, get_task(cell.task), task_module(cell.task), Placement())
    got, want = outcome.accuracy.metrics, committed["metrics"]
    assert got["num_images"] == want["num_images"]
    for key in ("mIoU", "aAcc", "mAcc", "fwIoU"):
        assert got[key] == pytest.approx(want[key], abs=1e-6), key
    for key in ("IoU", "Acc"):  # NaN (absent class) is written as null in the result files
        ours = np.array([np.nan if v is None else v for v in got[key]], dtype=np.float64)
        theirs = np.array([np.nan if v is None else v for v in want[key]], dtype=np.float64)
        assert np.array_equal(np.isnan(ours), np.isnan(theirs)), key
        assert np.allclose(ours[~np.isnan(ours)], theirs[~np.isnan(theirs)], rtol=0, atol=1e-6), key
