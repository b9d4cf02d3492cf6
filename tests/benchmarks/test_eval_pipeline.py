"""Evaluation pipeline speed on the CPU: segbench's accuracy loop (decode + preprocess in DataLoader
workers, batched forward, batched resize + argmax, fused-bincount metrics) against
(a) the model-only throughput of the same model, and (b) the naive per-image loop a user writes
(open, image processor, forward, upsample, argmax, numpy metric update). Same metrics required.

Run: .venv/bin/pytest tests/benchmarks/test_eval_pipeline.py --benchmark-enable -s
The process is set up as a cell's is (harness.pipeline: retained heap, data workers from a fork
server started before the model loads); the naive loop and the model-only forward run in it too.
Targets (asserted with --benchmark-enable): end to end >= 2x the naive loop; the forward inside the
loop within 10% of the same forward alone. Printed beside them: end to end as a share of
model-only (target >= 70%), and the postprocess share on trained-like logits (the synthetic
coherent 150-class logits of tests/benchmarks/test_postprocess_speed.py at the same image sizes),
whose shortcut a random network's noisy logits do not take. Both loops start warm: one untimed first inference each, as segbench's cell runs one (timed as
``first_inference_ms``) before evaluating accuracy. Both compute the confusion-matrix metrics
only: the cell's Boundary IoU and calibration engines are switched off here (their cost is
tests/benchmarks/test_robustness_overhead.py's).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import harness
from harness import stages
from harness.launchers import Placement
from harness.measure.latency import time_iterations
from harness.pipeline import set_heap, start_worker_server
from harness.suite import DEFAULT_MEASURE, DEFAULT_PROTOCOL, Cell
from harness.tasks import get_task, task_module

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from layouts import write_ade20k  # noqa: E402
from tiny_models import save_tiny_segformer  # noqa: E402


def naive_loop(model_dir: Path, root: Path, C: int = 150) -> tuple[dict, float]:
    """One image at a time with the transformers processor and a numpy per-class metric."""
    import json

    from transformers import DPTImageProcessorPil, SegformerForSemanticSegmentation

    d = json.loads((model_dir / "preprocessor_config.json").read_text())
    processor = DPTImageProcessorPil(size=d["size"], image_mean=d["image_mean"], image_std=d["image_std"],
                                     resample=d["resample"])  # the same resize/rescale/normalise as the model's
    net = SegformerForSemanticSegmentation.from_pretrained(model_dir).eval()
    inter, union, correct, total = np.zeros(C), np.zeros(C), 0, 0
    images = sorted((root / "images" / "validation").glob("*.jpg"))
    with torch.no_grad():  # first inference untimed, as segbench's cell does it before evaluating
        net(**processor(images=Image.open(images[0]).convert("RGB"), return_tensors="pt"))
    t0 = time.perf_counter()
    for img_path in images:
        image = Image.open(img_path).convert("RGB")
        raw = np.asarray(Image.open(root / "annotations" / "validation" / f"{img_path.stem}.png")).astype(np.int64)
        label = np.where(raw == 0, 255, raw - 1)
        with torch.no_grad():
            logits = net(**processor(images=image, return_tensors="pt")).logits
        logits = F.interpolate(logits, size=label.shape, mode="bilinear", align_corners=False)
        pred = logits[0].argmax(0).numpy()
        valid = label != 255
        for c in range(C):
            p, t = (pred == c) & valid, (label == c) & valid
            inter[c] += np.sum(p & t)
            union[c] += np.sum(p | t)
        correct += np.sum((pred == label) & valid)
        total += np.sum(valid)
    seconds = time.perf_counter() - t0
    with np.errstate(invalid="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    return {"mIoU": float(np.nanmean(iou)), "aAcc": correct / total}, seconds


def test_pipeline_vs_model_only_and_naive_loop(tmp_path, benchmark, enforce_targets):
    import json

    n = 16 if enforce_targets else 2
    start_worker_server()  # as a cell does before loading its model
    heap = set_heap("retained", torch.device("cpu"))
    if enforce_targets:  # the real SegFormer-B0 architecture (random weights, saved so both loops load them)
        from harness.models import MODELS

        model_dir = tmp_path / "segformer-b0"
        harness.load_model("segformer-b0", weights="random").module.save_pretrained(model_dir)
        (model_dir / "preprocessor_config.json").write_text(json.dumps(MODELS["segformer-b0"].processor_dict()))
    else:
        model_dir = save_tiny_segformer(tmp_path / "m", image_size=512)
    root = write_ade20k(tmp_path / "data", n=n, sizes=[(512, 683), (480, 640)])
    model = harness.load_model(str(model_dir))
    dataset = harness.load_dataset("ade20k", root=str(root))
    cell = Cell(model=str(model_dir), weights=None, dataset="ade20k", dataset_root=str(root),
                dataset_split="validation", dataset_limit=None, dataset_options={}, device="cpu", precision="fp32",
                amp="autocast", batch_size=4, runtime="pytorch", variant={}, protocol=dict(DEFAULT_PROTOCOL),
                measure=dict(DEFAULT_MEASURE, num_workers=1, samples=0, boundary=False, calibration=False))
    model.forward(model.preprocess([dataset.load(i).image for i in range(min(4, n))]))  # the cell's first inference
    # the same forward alone: the loop's own batches, preprocessed in memory
    batches = [model.preprocess([dataset.load(j).image for j in range(i, min(i + 4, n))]) for i in range(0, n, 4)]
    rounds = 5 if enforce_targets else 1
    loops, alone = [], []
    for _ in range(rounds):  # interleaved: the machine's drift reaches both alike
        alone.append(sum(time_iterations(model.forward, batches, warmup=0, iters=len(batches))) / 1000.0)
        t0 = time.perf_counter()
        outcome = stages.accuracy(model, dataset, dataset, cell, tmp_path, get_task("segmentation"),
                                  task_module("segmentation"), Placement())
        loops.append((time.perf_counter() - t0, outcome))
    ours_s, outcome = sorted(loops, key=lambda x: x[0])[len(loops) // 2]  # the median round
    alone_s = float(np.median(alone))
    metrics = outcome.accuracy.metrics
    naive_metrics, naive_s = naive_loop(model_dir, root)
    # batched and per-image forwards may round differently and flip an argmax near a tie
    assert abs(metrics["aAcc"] - naive_metrics["aAcc"]) < 1e-6
    assert abs(metrics["mIoU"] - naive_metrics["mIoU"]) < 1e-6

    model_only_ips = n / alone_s
    ours_ips = n / ours_s
    br, cpu = outcome.breakdown_s, outcome.cpu_s
    forward_ratio = float(np.median([o.breakdown_s["forward"] for _, o in loops])) / alone_s
    trained_post_s = _trained_like_postprocess_s(dataset, n)
    benchmark.pedantic(lambda: None, rounds=1)
    print(f"\n{n} ADE20K-layout images (512x683 / 480x640), {model_dir.name} at 512x512, batch 4, 1 worker, "
          f"{torch.get_num_threads()} threads (CPU), heap {heap}, layout {outcome.pipeline}:")
    print(f"  model-only {model_only_ips:.2f} img/s; segbench end to end {ours_ips:.2f} img/s "
          f"({100 * ours_ips / model_only_ips:.0f}% of model-only); naive loop {n / naive_s:.2f} img/s; "
          f"segbench / naive = {naive_s / ours_s:.2f}x")
    print(f"  forward in the loop {br['forward']:.2f} s vs alone {alone_s:.2f} s (medians of {rounds} interleaved "
          f"rounds: {forward_ratio:.3f}x); loop rounds {', '.join(f'{t:.2f}' for t, _ in loops)} s")
    print("  stages (wall s / CPU s): " + ", ".join(f"{k} {br[k]:.2f}/{cpu.get(k, 0):.2f}" for k in br)
          + f"; workers CPU {cpu.get('workers', 0):.2f} s")
    print(f"  postprocess share of the loop: {100 * br['postprocess'] / ours_s:.0f}% (these random-weight logits); "
          f"on trained-like logits the same images take {trained_post_s:.2f} s of postprocess, "
          f"{100 * trained_post_s / (ours_s - br['postprocess'] + trained_post_s):.0f}% of such a loop, which would "
          f"run at {100 * alone_s / (ours_s - br['postprocess'] + trained_post_s):.0f}% of model-only")
    if enforce_targets:
        assert naive_s / ours_s >= 2.0
        assert forward_ratio <= 1.10


def _trained_like_postprocess_s(dataset, n: int) -> float:
    """Seconds of the default postprocess for ``n`` images of trained-like 150-class logits at 128x128
    (tests/test_postprocess.py's generator), resized to the dataset's image sizes."""
    from test_postprocess import trained_like

    from harness.models.postprocess import upsample_argmax

    total = 0.0
    for i in range(n):
        logits = trained_like(150, 128, 128, cells=4 + 2 * (i % 3), seed=i)
        image = dataset.load(i).image
        t0 = time.perf_counter()
        upsample_argmax(logits, (image.height, image.width), "bilinear")
        total += time.perf_counter() - t0
    return total
