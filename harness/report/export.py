"""Export latency results in pytest-benchmark's JSON format, for dashboards that read it.

Each ok cell with raw latency samples becomes one benchmark: name ``model[dataset-device-precision-bN]``,
group = the model, ``params`` = the cell's settings, and ``stats`` computed by pytest-benchmark's
own ``Stats`` class from the raw samples converted from ms to seconds, so every field (min, max,
mean, stddev, median, iqr, q1, q3, outliers, ops, total, rounds, iterations, data) means exactly
what it means in that format. One round = one timed forward of one batch.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt

from harness.cell_result import CellResult
from harness.errors import ConfigError
from harness.report.rows import num
from harness.results import Run


def _machine_info(env: dict) -> dict:
    """pytest-benchmark's ``machine_info`` keys, filled from the run's environment fingerprint."""
    plat = str(env.get("platform") or "")
    system = plat.split("-")[0] if plat else None
    release = plat.split("-")[1] if plat.count("-") >= 1 else None
    machine = next((m for m in ("x86_64", "aarch64", "arm64", "AMD64") if m in plat), None)
    return {
        "node": env.get("hostname") or env.get("node"), "processor": env.get("cpu"), "machine": machine,
        "python_compiler": env.get("python_compiler"), "python_implementation": env.get("python_implementation"),
        "python_implementation_version": env.get("python"), "python_version": env.get("python"),
        "python_build": None, "release": release, "system": system,
        "cpu": {"brand_raw": env.get("cpu"), "count": env.get("cpu_count")},
        "segbench_env": env,
    }


def _commit_info(env: dict) -> dict:
    sha = str(env.get("git_sha") or "")
    dirty = sha.endswith("-dirty")
    return {"id": sha.removesuffix("-dirty") or None, "time": None, "author_time": None, "dirty": dirty,
            "project": "segbench", "branch": env.get("git_branch") or "(unknown)"}


def _benchmark(cell: CellResult, stats_cls) -> dict:
    ident = cell.identity
    lat = cell.latency.forward_ms
    stats = stats_cls()
    for ms in lat["samples"]:
        stats.update(float(ms) / 1000.0)
    params = {"dataset": ident.dataset, "device": ident.device, "precision": ident.precision, "amp": ident.amp,
              "batch_size": ident.batch_size, "runtime": ident.runtime}
    param = f"{ident.dataset}-{ident.device}-{ident.precision}-b{ident.batch_size}"
    warmup = cell.latency.warmup if isinstance(cell.latency.warmup, dict) else {}
    device = str(ident.device or "")
    memory = dataclasses.asdict(cell.memory)
    return {
        "group": str(ident.model), "name": f"{ident.model}[{param}]",
        "fullname": f"segbench::{cell.cell_id}", "params": params, "param": param,
        "extra_info": {"unit": "seconds per batch", "throughput_ips": cell.latency.throughput_ips,
                       "weights": (cell.provenance.weights or {}).get("source"), "memory_mib": memory,
                       "protocol": ident.protocol, "variant": ident.variant, "cell_id": cell.cell_id},
        "options": {"disable_gc": False, "timer": "cuda events" if device.startswith("cuda") else "perf_counter",
                    "min_rounds": len(lat["samples"]), "max_time": None, "min_time": None, "precision": None,
                    "confidence": None, "warmup": warmup.get("warmup_iters", False)},
        "stats": {**stats.as_dict(), "data": list(stats.data), "iterations": 1},
    }


def to_pytest_benchmark(run: Run) -> dict:
    """The run's latency results as a pytest-benchmark JSON document (seconds per round)."""
    try:
        from pytest_benchmark import __version__ as pb_version
        from pytest_benchmark.stats import Stats
    except ImportError:
        raise ConfigError("export --format pytest-benchmark needs the pytest-benchmark package: "
                          "pip install 'segbench[dev]'") from None
    env = run.meta.get("env") if isinstance(run.meta.get("env"), dict) else {}
    benchmarks = []
    for cell in sorted(run.cells.values(), key=lambda c: c.cell_id):
        lat = cell.latency.forward_ms if isinstance(cell.latency.forward_ms, dict) else {}
        samples = lat.get("samples") or []
        if cell.status != "ok" or len(samples) < 1 or any(num(v) is None for v in samples):
            continue
        benchmarks.append(_benchmark(cell, Stats))
    if not benchmarks:
        raise ConfigError(f"{run.path}: no finished cell has raw latency samples (latency_ms.samples) to export")
    created = run.meta.get("created_at") or _dt.datetime.now(_dt.timezone.utc).isoformat()
    return {"machine_info": _machine_info(env), "commit_info": _commit_info(env), "benchmarks": benchmarks, "datetime": created,
            "version": pb_version}
