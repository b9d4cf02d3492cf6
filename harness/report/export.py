"""Export latency results in pytest-benchmark's JSON format, for dashboards that read it.

Each ok cell with latency samples becomes one benchmark: name ``model[dataset-device-precision-bN]``,
group = the model, stats computed by pytest-benchmark's own ``Stats`` class from the raw samples
converted to seconds (so every field means what that format means).
"""

from __future__ import annotations

import datetime as _dt

from harness.errors import ConfigError
from harness.results import Run


def to_pytest_benchmark(run: Run) -> dict:
    try:
        from pytest_benchmark import __version__ as pb_version
        from pytest_benchmark.stats import Stats
    except ImportError:
        raise ConfigError("export --format pytest-benchmark needs pytest-benchmark: pip install 'segbench[dev]'") from None
    env = run.meta.get("env") or {}
    benchmarks = []
    for cell in run.cells.values():
        lat = cell.get("latency_ms") or {}
        if cell.get("status") != "ok" or not lat.get("samples"):
            continue
        stats = Stats()
        for ms in lat["samples"]:
            stats.update(ms / 1000.0)
        param = f"{cell.get('dataset')}-{cell.get('device')}-{cell.get('precision')}-b{cell.get('batch_size')}"
        benchmarks.append({
            "group": str(cell.get("model")), "name": f"{cell.get('model')}[{param}]",
            "fullname": f"segbench::{cell.get('cell_id')}", "params": {"param": param}, "param": param,
            "extra_info": {"throughput_ips": cell.get("throughput_ips"), "runtime": cell.get("runtime"),
                           "weights": (cell.get("weights") or {}).get("source"), "memory_mib": cell.get("memory_mib")},
            "options": {"timer": "cuda events" if str(cell.get("device", "")).startswith("cuda") else "perf_counter",
                        "warmup": (cell.get("warmup") or {}).get("warmup_iters"), "min_rounds": lat.get("n")},
            "stats": {**stats.as_dict(), "data": list(stats.data), "iterations": 1},
        })
    return {
        "machine_info": {"node": env.get("platform"), "processor": env.get("cpu"), "machine": env.get("platform"),
                         "python_version": env.get("python"), "cpu": {"brand_raw": env.get("cpu"),
                                                                       "count": env.get("cpu_count")},
                         "gpu": env.get("gpu"), "torch": env.get("torch")},
        "commit_info": {"id": env.get("git_sha"), "dirty": str(env.get("git_sha", "")).endswith("-dirty")},
        "benchmarks": benchmarks,
        "datetime": run.meta.get("created_at") or _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "version": pb_version,
    }
