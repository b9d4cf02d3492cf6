"""Write realistic, schema-valid run directories (``run.json`` + ``cells/*.json``) for tests.

``write_run(run_dir, cells, meta)`` accepts partial cell dicts and fills every schema key with a
plausible default, so a test states only what it is about::

    write_run(tmp_path / "run", [{"model": "dpt-large", "family": "dpt", "metrics": {"mIoU": 0.47}}])

Cells are written in schema 1's flat layout (``metrics``, ``latency_ms``, ... at the top level), so
every test that reads them also goes through :func:`harness.migrate.migrate`.

``make_cell(...)`` builds a complete cell from a few keyword arguments (latency samples drawn
from a seeded normal distribution, metrics, memory), and ``write_samples`` writes the images of
the qualitative panel (input JPEG, label and prediction PNGs) inside a run directory.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from harness.results import SCHEMA_VERSION, write_json_atomic

DEFAULT_CLASSES = ["a", "b", "c"]


def safe_id(text: str) -> str:
    """``text`` with every character outside [A-Za-z0-9._-] replaced by ``_`` (a file-name-safe cell id)."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-") else "_" for ch in text)


def latency_block(latency_ms: float, n: int = 20, seed: int = 0, spread: float = 0.01) -> dict:
    """A ``latency_ms`` dict whose ``samples`` (ms) are normal around ``latency_ms`` with relative ``spread``."""
    rng = np.random.default_rng(seed)
    samples = [float(v) for v in np.abs(latency_ms + rng.normal(0, latency_ms * spread, n))]
    arr = np.asarray(samples)
    return {"p50": float(np.median(arr)), "p90": float(np.percentile(arr, 90)), "p99": float(np.percentile(arr, 99)),
            "mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if n > 1 else 0.0,
            "cv": float(arr.std(ddof=1) / arr.mean()) if n > 1 else 0.0, "min": float(arr.min()),
            "max": float(arr.max()), "n": n, "samples": samples}


def default_cell(model: str = "model", **overrides) -> dict:
    """A complete ok cell of ``model`` (CPU, fp32, batch 1, hub weights), updated with ``overrides``."""
    dataset = overrides.get("dataset", "ade20k")
    precision = overrides.get("precision", "fp32")
    batch = overrides.get("batch_size", 1)
    names = overrides.get("class_names") or list(DEFAULT_CLASSES)
    cell = {
        "schema_version": 1,  # the flat layout of schema 1, which every reader migrates
        "cell_id": safe_id(f"{model}__{dataset}__cpu__{precision}__b{batch}"),
        "status": "ok", "error": None, "model": model, "model_ref": model, "family": "cnn",
        "weights": {"source": "hub", "id": f"org/{model}", "revision": "0" * 40},
        "dataset": dataset,
        "data": {"num_samples": 3, "digest": "0" * 64, "files": [], "skipped": [], "num_evaluated": 3},
        "device": "cpu", "precision": precision, "amp": "autocast", "batch_size": batch, "runtime": "pytorch",
        "variant": {}, "protocol": {"mode": "whole", "upsample": "bilinear"}, "input_size": [512, 512],
        "metrics": {"mIoU": 0.4, "aAcc": 0.7, "mAcc": 0.5, "fwIoU": 0.6, "IoU": [0.4] * len(names),
                    "Acc": [0.5] * len(names)},
        "metrics_note": None, "class_names": names,
        "latency_ms": latency_block(100.0), "stages_ms": None, "throughput_ips": batch * 1000.0 / 100.0,
        "memory_mib": {"gpu_peak_allocated": None, "gpu_peak_reserved": None, "host_peak_rss": 1000.0,
                       "weights": 10.0},
        "params": 1_000_000, "gflops": 10.0,
        "timing": {"load_s": 0.5, "first_inference_ms": 150.0, "accuracy_s": 1.0, "total_s": 5.0},
        "samples": [], "torch_threads": 2,
        "started_at": "2026-01-01T00:00:00+00:00", "ended_at": "2026-01-01T00:00:05+00:00",
    }
    cell.update(copy.deepcopy(overrides))
    if "cell_id" not in overrides:
        cell["cell_id"] = safe_id(f"{model}__{cell['dataset']}__{cell['device']}__{cell['precision']}"
                                  f"__b{cell['batch_size']}")
    if cell["status"] != "ok":
        for key in ("latency_ms", "throughput_ips", "metrics", "params", "gflops"):
            if key not in overrides:
                cell[key] = None
        if "error" not in overrides:
            cell["error"] = f"RuntimeError: injected {cell['status']}"
    if (cell.get("weights") or {}).get("source") == "random" and "metrics" not in overrides:
        cell["metrics"] = None
        cell["metrics_note"] = cell.get("metrics_note") or "random weights: speed and memory only, accuracy not measured"
    if "metrics" in overrides and isinstance(cell["metrics"], dict):  # complete a partial metrics dict
        m = cell["metrics"]
        if m.get("mIoU") is not None:
            m.setdefault("aAcc", min(1.0, m["mIoU"] + 0.3))
            m.setdefault("mAcc", min(1.0, m["mIoU"] + 0.1))
            m.setdefault("IoU", [m["mIoU"]] * len(cell["class_names"]))
    return cell


def make_cell(model: str, precision: str = "fp32", *, family: str = "cnn", dataset: str = "ade20k",
              miou: float | None = 0.4, latency: float = 100.0, n: int = 20, seed: int = 0, status: str = "ok",
              weights: str = "hub", batch_size: int = 1, memory: float = 1000.0, class_names=None, **extra) -> dict:
    """A complete cell from a few numbers: mIoU (fraction), latency (ms, ``n`` samples), host memory (MiB).

    ``weights`` is the provenance source (``hub``, ``local``, ``file`` or ``random``); random weights
    and a non-ok ``status`` leave the metrics null as the runner does.
    """
    names = class_names or list(DEFAULT_CLASSES)
    metrics = None
    if miou is not None and weights != "random" and status == "ok":
        metrics = {"mIoU": miou, "aAcc": min(1.0, miou + 0.3), "mAcc": min(1.0, miou + 0.1), "fwIoU": miou,
                   "IoU": [miou] * len(names), "Acc": [miou] * len(names)}
    wdict = {"source": "random", "seed": 0} if weights == "random" else {"source": weights, "id": f"org/{model}"}
    cell = default_cell(
        model, family=family, dataset=dataset, precision=precision, batch_size=batch_size, status=status,
        weights=wdict, metrics=metrics, class_names=names,
        latency_ms=latency_block(latency, n=n, seed=seed) if status == "ok" else None,
        throughput_ips=batch_size * 1000.0 / latency if status == "ok" else None,
        memory_mib={"gpu_peak_allocated": None, "gpu_peak_reserved": None, "host_peak_rss": memory, "weights": 4.0},
    )
    cell["metrics_note"] = "random weights: speed and memory only, accuracy not measured" if weights == "random" else None
    cell.update(extra)
    return cell


def write_run(run_dir: str | Path, cells: list[dict], meta: dict | None = None) -> Path:
    """Write ``run.json`` and one ``cells/<cell_id>.json`` per cell (defaults filled in); return ``run_dir``.

    A cell given as a partial dict is completed by ``default_cell`` (its ``model`` key names it).
    ``meta`` updates the default ``run.json`` (run id = the directory name).
    """
    run_dir = Path(run_dir)
    full = [default_cell(c.get("model", "model"), **{k: v for k, v in c.items() if k != "model"}) for c in cells]
    m = {"schema_version": SCHEMA_VERSION, "run_id": run_dir.name,
         "suite": {"name": "fixture", "models": sorted({str(c["model"]) for c in full})},
         "suite_path": "suites/fixture.yaml", "suite_sha256": "1" * 64,
         "command": ["segbench", "run", "suites/fixture.yaml"],
         "env": {"python": "3.11.7", "platform": "Linux-6.1-x86_64-with-glibc2.36", "torch": "2.13.0+cpu",
                 "transformers": "5.17.0", "numpy": "2.4.6", "segbench": "0.1.0", "cpu": "Test CPU",
                 "cpu_count": 2, "torch_threads": 2, "cuda_available": False, "cuda": None,
                 "git_sha": "abc1234"},
         "created_at": "2026-01-01T00:00:00+00:00", "cells": [c["cell_id"] for c in full]}
    m.update(meta or {})
    write_json_atomic(run_dir / "run.json", m)
    for c in full:
        write_json_atomic(run_dir / "cells" / f"{c['cell_id']}.json", c)
    return run_dir


def write_samples(run_dir: str | Path, cell: dict, ids: list[str], size: tuple[int, int] = (48, 64),
                  num_classes: int = 3, seed: int = 0) -> list[dict]:
    """Write input/label/prediction images for ``ids`` under ``run_dir/samples`` and return the
    cell's ``samples`` list (paths relative to the run directory). ``size`` is (H, W) in pixels;
    labels and predictions are mode-L PNGs of class indices with 255 = ignore."""
    from PIL import Image

    run_dir = Path(run_dir)
    rng = np.random.default_rng(seed)
    h, w = size
    out = []
    for sid in ids:
        image_rel = Path("samples") / safe_id(cell["dataset"]) / f"{sid}.jpg"
        label_rel = image_rel.with_name(f"{sid}.label.png")
        pred_rel = Path("samples") / cell["cell_id"] / f"{sid}.png"
        if not (run_dir / image_rel).exists():
            (run_dir / image_rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(run_dir / image_rel, quality=90)
            label = rng.integers(0, num_classes, (h, w)).astype(np.uint8)
            label[:4] = 255
            Image.fromarray(label, mode="L").save(run_dir / label_rel)
        (run_dir / pred_rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, num_classes, (h, w)).astype(np.uint8), mode="L").save(run_dir / pred_rel)
        out.append({"id": sid, "image": str(image_rel), "label": str(label_rel), "pred": str(pred_rel)})
    return out


def as_result(cell: dict):
    """A fixture cell (schema-1 layout) as the :class:`harness.cell_result.CellResult` a reader gets."""
    from harness.cell_result import CellResult
    from harness.migrate import migrate

    return CellResult.from_dict(migrate(copy.deepcopy(cell)))
