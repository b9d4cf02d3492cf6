"""Write schema-valid run directories for report, table and compare tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.results import SCHEMA_VERSION, write_json_atomic


def make_cell(model: str, precision: str = "fp32", *, family: str = "cnn", dataset: str = "ade20k",
              miou: float | None = 0.4, latency: float = 100.0, n: int = 20, seed: int = 0, status: str = "ok",
              weights: str = "hub", batch_size: int = 1, memory: float = 1000.0, class_names=None, **extra) -> dict:
    rng = np.random.default_rng(seed)
    samples = list(latency + rng.normal(0, latency * 0.01, n))
    cid = f"{model}__{dataset}__cpu__{precision}__b{batch_size}".replace("<", "_").replace(">", "_")
    cid = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in cid)
    metrics = None
    if miou is not None and weights != "random":
        names = class_names or ["a", "b", "c"]
        metrics = {"mIoU": miou, "aAcc": min(1.0, miou + 0.3), "mAcc": min(1.0, miou + 0.1), "fwIoU": miou,
                   "IoU": [miou] * len(names), "Acc": [miou] * len(names)}
    cell = {
        "schema_version": SCHEMA_VERSION, "cell_id": cid, "status": status,
        "error": None if status == "ok" else f"{status}: injected", "model": model, "family": family,
        "weights": {"source": weights}, "dataset": dataset, "data": {"num_samples": 3, "digest": "0" * 64},
        "device": "cpu", "precision": precision, "amp": "autocast", "batch_size": batch_size, "runtime": "pytorch",
        "variant": {}, "protocol": {"mode": "whole", "upsample": "bilinear"}, "metrics": metrics,
        "metrics_note": "random weights: speed and memory only" if weights == "random" else None,
        "class_names": class_names or ["a", "b", "c"],
        "latency_ms": ({"p50": float(np.median(samples)), "p90": float(np.percentile(samples, 90)),
                        "p99": float(np.percentile(samples, 99)), "mean": float(np.mean(samples)),
                        "std": float(np.std(samples, ddof=1)), "n": n, "samples": samples}
                       if status == "ok" else None),
        "throughput_ips": batch_size * 1000.0 / latency if status == "ok" else None,
        "memory_mib": {"gpu_peak_allocated": None, "gpu_peak_reserved": None, "host_peak_rss": memory},
        "params": 1_000_000, "gflops": 10.0, "samples": [],
    }
    cell.update(extra)
    return cell


def write_run(run_dir: Path, cells: list[dict], meta: dict | None = None) -> Path:
    run_dir = Path(run_dir)
    m = {"schema_version": SCHEMA_VERSION, "run_id": run_dir.name, "suite": {"name": "fixture"},
         "env": {"torch": "x", "cpu": "y"}, "command": ["segbench", "run", "fixture.yaml"],
         "cells": [c["cell_id"] for c in cells]}
    m.update(meta or {})
    write_json_atomic(run_dir / "run.json", m)
    for c in cells:
        write_json_atomic(run_dir / "cells" / f"{c['cell_id']}.json", c)
    return run_dir
