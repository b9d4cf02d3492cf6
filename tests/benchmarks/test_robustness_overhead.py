"""Overhead of the robustness engines on the CPU, relative to the accuracy loop's work per image.

Baseline per image: forward of SegFormer-B0 (the real architecture, random weights, 512x512,
150 classes), postprocess (resize + argmax to the label's size) and a SegmentationMetrics
update. Engines, on the same image: BoundaryMetrics.update (Boundary IoU + 6 trimap widths),
CalibrationMetrics.update_logits (from the low-resolution logits, labels passed in), and
corrupt() per corruption at severity 3 (input side, before preprocessing). ``wired_loop``: the
accuracy loop's work as a cell does it with both engines on (the same forward, then the segmentation
engine's postprocess, which calibrates from its one resize, and its update: confusion matrix +
Boundary IoU), as a share of the baseline; ``wired_extra`` is that minus 1, the cost the two
engines add to an accuracy cell. Rounds are interleaved (baseline, engines, baseline, ...) and
each ratio is the median over rounds of engine / baseline seconds.
Images and labels: the real ADE20K samples in ../shared (683x512, 500x364) when present, else
synthetic ones of those sizes.

Run: .venv/bin/pytest tests/benchmarks/test_robustness_overhead.py --benchmark-enable -s
Each setting runs at the default torch threads and again at one thread (no OpenMP team: on a
busy machine a team's barriers inflate the forward, which would flatter the ratios).
Targets (asserted with --benchmark-enable): boundary below 10% of the baseline at both thread
counts; calibration below 2x one full-resolution reference resize + argmax of the same logits
(``upsample_argmax`` without its shortcut), which is the work it cannot avoid, at one torch
thread: calibration runs in the calling thread (harness/threads.py) while the reference resize
uses the OpenMP team, so at several threads the ratio measures how idle the machine's other
cores are (0.8x to 2.6x in runs of this command). Figures in docs/PERFORMANCE.md. A smoke run
(default) uses a tiny SegFormer, one 160x128 crop and one round.
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
from harness.models.postprocess import upsample_argmax
from harness.robustness.corruptions import CORRUPTIONS, corrupt
from harness.tasks.segmentation import make_engine

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


class _ADE:
    num_classes, ignore_index = 150, 255


def _post_and_metric(model, seg, engine, logits, label, first_wired: bool) -> dict[str, float]:
    """Seconds of the plain postprocess + metric update and of the segmentation engine's (calibration
    from its one resize, confusion matrix, Boundary IoU) on the same logits; ``first_wired`` says which
    runs first (the other finds the logits warm in cache)."""
    def plain():
        seg.update(model.postprocess(logits, [label.shape])[0], label)

    def wired():
        engine.update(engine.postprocess(model, logits, [label.shape], [label]), [label])

    out = {}
    for key, fn in ([("wired_post", wired), ("plain_post", plain)] if first_wired
                    else [("plain_post", plain), ("wired_post", wired)]):
        t0 = time.perf_counter()
        fn()
        out[key] = time.perf_counter() - t0
    return out


def one_round(model, data, names: list[str]) -> dict[str, float]:
    """Seconds per stage over all images: baseline (forward + plain postprocess and metric), the
    wired loop (the same forward + the engine's), then each engine alone on the same inputs."""
    seg, bnd, cal = harness.SegmentationMetrics(150), BoundaryMetrics(150), CalibrationMetrics(150)
    engine = make_engine(model, _ADE())
    t = dict.fromkeys(["baseline", "wired_loop", "boundary", "calibration", "full_resize", *names], 0.0)
    for k, (image, label) in enumerate(data):
        t0 = time.perf_counter()
        logits = model.forward(model.preprocess([image]))
        forward = time.perf_counter() - t0
        post = _post_and_metric(model, seg, engine, logits, label, first_wired=k % 2 == 1)
        t["baseline"] += forward + post["plain_post"]
        t["wired_loop"] += forward + post["wired_post"]
        pred = model.postprocess(logits, [label.shape])[0]
        t1 = time.perf_counter()
        bnd.update(pred, label)
        t2 = time.perf_counter()
        cal.update_logits(logits[0], label, pred=pred)
        t3 = time.perf_counter()
        t["boundary"] += t2 - t1
        t["calibration"] += t3 - t2
        t0 = time.perf_counter()
        upsample_argmax(logits[0], tuple(label.shape), "bilinear", shortcut=False)
        t["full_resize"] += time.perf_counter() - t0
        for name in names:
            t0 = time.perf_counter()
            corrupt(image, name, 3, sample_id="b")
            t[name] += time.perf_counter() - t0
    return t


def measure(model, data, names: list[str], rounds: int, threads: int) -> dict[str, float]:
    """Print each stage's median ratio to the baseline over ``rounds`` rounds at ``threads`` torch threads;
    returns the ratios."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            one_round(model, data[:1], [])  # warm-up: first inference and first kernels out of the timings
            per_round = [one_round(model, data, names) for _ in range(rounds)]
    finally:
        torch.set_num_threads(saved)
    ratio = {k: statistics.median(r[k] / r["baseline"] for r in per_round) for k in per_round[0] if k != "baseline"}
    ratio["calibration / full_resize"] = statistics.median(r["calibration"] / r["full_resize"] for r in per_round)
    ratio["wired_extra"] = ratio["wired_loop"] - 1.0
    base_ms = 1000 * statistics.median(r["baseline"] for r in per_round) / len(data)
    print(f"\n{len(data)} {'real' if ADE.exists() else 'synthetic'} ADE20K images, {rounds} interleaved round(s), "
          f"{threads} torch thread(s); baseline (forward + postprocess + metric) {base_ms:.0f} ms/image")
    for k, v in ratio.items():
        print(f"  {k:26s} {100 * v:8.1f}%" + ("" if "/" in k else " of the baseline"))
    return ratio


def test_engine_overhead_per_image(tmp_path, benchmark, enforce_targets):
    data = samples()
    if not enforce_targets:  # smoke run: one 160x128 crop
        data = [(im.crop((0, 0, 160, 128)), lab[:128, :160]) for im, lab in data[:1]]
        model = harness.load_model(str(save_tiny_segformer(tmp_path / "m", image_size=64)))
        measure(model, data, ["gaussian_noise", "fog"], 1, torch.get_num_threads())
        benchmark.pedantic(lambda: None, rounds=1)
        return
    model = harness.load_model("segformer-b0", weights="random")
    results = [measure(model, data, list(CORRUPTIONS), 3, torch.get_num_threads()), measure(model, data, [], 3, 1)]
    benchmark.pedantic(lambda: None, rounds=1)
    for ratio in results:
        assert ratio["boundary"] < 0.10
    assert results[1]["calibration / full_resize"] < 2.0  # one thread, as calibration runs
