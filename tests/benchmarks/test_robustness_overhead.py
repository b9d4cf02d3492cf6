"""Overhead of the robustness engines on the CPU, relative to the accuracy loop's work per image.

Baseline per image: forward of SegFormer-B0 (the real architecture, random weights, 512x512,
150 classes), postprocess (resize + argmax to the label's size) and a SegmentationMetrics
update. Engines, on the same image: BoundaryMetrics.update (Boundary IoU + 6 trimap widths),
CalibrationMetrics.update_logits (from the low-resolution logits), and corrupt() per
corruption at severity 3 (input side, before preprocessing). Rounds are interleaved (baseline,
engines, baseline, ...) and each ratio is the median over rounds of engine / baseline seconds.
Images and labels: the real ADE20K samples in ../shared (683x512, 500x364) when present, else
synthetic ones of those sizes.

Run: .venv/bin/pytest tests/benchmarks/test_robustness_overhead.py --benchmark-enable -s
Targets (asserted with --benchmark-enable): boundary and calibration each below 25% of the
baseline on the CPU (the figures are in docs/PERFORMANCE.md). A smoke run (default) uses a
tiny SegFormer and one round.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import harness
from harness.boundary import BoundaryMetrics
from harness.calibration import CalibrationMetrics
from harness.robustness.corruptions import CORRUPTIONS, corrupt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_models import save_tiny_segformer  # noqa: E402

ADE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ade20k" / "ADEChallengeData2016"


def samples() -> list[tuple[Image.Image, np.ndarray]]:
    if ADE.exists():
        ds = harness.load_dataset("ade20k", root=str(ADE))
        return [(s.image, s.label) for s in (ds.load(i) for i in range(len(ds)))]
    rng = np.random.default_rng(0)
    out = []
    for h, w in ((512, 683), (364, 500)):
        coarse = rng.integers(0, 150, (8, 10))
        label = coarse[np.arange(h) * 8 // h][:, np.arange(w) * 10 // w]
        out.append((Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)), label))
    return out


def one_round(model, data, names: list[str]) -> dict[str, float]:
    """Seconds per stage over all images: baseline first, then each engine on the same inputs."""
    seg, bnd, cal = harness.SegmentationMetrics(150), BoundaryMetrics(150), CalibrationMetrics(150)
    t = dict.fromkeys(["baseline", "boundary", "calibration", *names], 0.0)
    for image, label in data:
        t0 = time.perf_counter()
        logits = model.forward(model.preprocess([image]))
        pred = model.postprocess(logits, [label.shape])[0]
        seg.update(pred, label)
        t1 = time.perf_counter()
        bnd.update(pred, label)
        t2 = time.perf_counter()
        cal.update_logits(logits[0], label, pred=pred)
        t3 = time.perf_counter()
        t["baseline"] += t1 - t0
        t["boundary"] += t2 - t1
        t["calibration"] += t3 - t2
        for name in names:
            t0 = time.perf_counter()
            corrupt(image, name, 3, sample_id="b")
            t[name] += time.perf_counter() - t0
    return t


def test_engine_overhead_per_image(tmp_path, benchmark, enforce_targets):
    if enforce_targets:
        model = harness.load_model("segformer-b0", weights="random")
        rounds, names = 3, list(CORRUPTIONS)
    else:
        model = harness.load_model(str(save_tiny_segformer(tmp_path / "m", image_size=64)))
        rounds, names = 1, ["gaussian_noise", "fog"]
    data = samples()
    with torch.inference_mode():
        one_round(model, data[:1], [])  # warm-up: first inference and first kernels out of the timings
        per_round = [one_round(model, data, names) for _ in range(rounds)]
    benchmark.pedantic(lambda: None, rounds=1)
    ratio = {k: statistics.median(r[k] / r["baseline"] for r in per_round) for k in per_round[0] if k != "baseline"}
    base_ms = 1000 * statistics.median(r["baseline"] for r in per_round) / len(data)
    print(f"\n{len(data)} {'real' if ADE.exists() else 'synthetic'} ADE20K images, {rounds} interleaved round(s), "
          f"{torch.get_num_threads()} threads; baseline (forward + postprocess + metric) {base_ms:.0f} ms/image")
    for k, v in ratio.items():
        print(f"  {k:18s} {100 * v:8.1f}% of the baseline")
    if enforce_targets:
        assert ratio["boundary"] < 0.25 and ratio["calibration"] < 0.25
