"""Read results of older schema versions: one function turns any supported version into the current.

Schema 1 (segbench 0.1's flat layout) kept every measurement at the top level of the cell file
(``metrics``, ``latency_ms``, ``memory_mib``, ``params``, ...). Schema 2 groups them in sections
(see :mod:`harness.cell_result`). The committed baselines under results/baselines are schema 1
and are read through here, as are users' older runs; nothing is rewritten on disk.
"""

from __future__ import annotations

from harness.cell_result import SCHEMA_VERSION

# schema-1 key -> (schema-2 section, field); keys not listed here and not top-level are kept in ``extra``
_V1_FIELDS = {
    "model": ("identity", "model"), "model_ref": ("identity", "model_ref"), "dataset": ("identity", "dataset"),
    "device": ("identity", "device"), "precision": ("identity", "precision"), "amp": ("identity", "amp"),
    "batch_size": ("identity", "batch_size"), "runtime": ("identity", "runtime"),
    "variant": ("identity", "variant"), "protocol": ("identity", "protocol"), "identity": ("identity", "settings"),
    "family": ("provenance", "family"), "weights": ("provenance", "weights"),
    "input_size": ("provenance", "input_size"), "data": ("provenance", "data"),
    "class_names": ("provenance", "class_names"), "palette": ("provenance", "palette"),
    "published": ("provenance", "published"), "parity": ("provenance", "parity"),
    "torch_threads": ("environment", "torch_threads"), "started_at": ("environment", "started_at"),
    "ended_at": ("environment", "ended_at"), "world_size": ("environment", "world_size"),
    "distributed": ("environment", "distributed"), "quality": ("environment", "quality"),
    "metrics": ("accuracy", "metrics"), "metrics_note": ("accuracy", "note"),
    "latency_ms": ("latency", "forward_ms"), "stages_ms": ("latency", "stages_ms"),
    "throughput_ips": ("latency", "throughput_ips"), "warmup": ("latency", "warmup"),
    "repeats": ("latency", "repeats"), "run_to_run": ("latency", "run_to_run"),
    "params": ("compute", "params"), "gflops": ("compute", "gflops"),
    "achieved_tflops": ("compute", "achieved_tflops"), "peak_tflops": ("compute", "peak_tflops"),
    "peak_fraction": ("compute", "peak_fraction"),
}
_V1_TOP = ("cell_id", "status", "error", "samples")
SUPPORTED = (1, SCHEMA_VERSION)


def _from_v1(data: dict) -> dict:
    out: dict = {"schema_version": 2, "identity": {"task": "segmentation"}, "provenance": {}, "environment": {},
                 "timing": {}, "accuracy": {}, "latency": {}, "memory": {}, "compute": {}}
    for key, value in data.items():
        if key == "schema_version":
            continue
        if key in _V1_TOP:
            out[key] = value
        elif key in _V1_FIELDS:
            section, name = _V1_FIELDS[key]
            out[section][name] = value
        elif key == "timing" and isinstance(value, dict):
            out["timing"] = dict(value)
        elif key == "memory_mib" and isinstance(value, dict):
            out["memory"] = dict(value)
        else:
            out[key] = value  # unknown: kept as is (CellResult.extra)
    return out


def migrate(data: dict) -> dict:
    """``data`` (a cell file's content, any supported schema) in the current schema's layout.

    Raises ValueError naming the version when it is not supported.
    """
    version = data.get("schema_version")
    if version == SCHEMA_VERSION:
        return data
    if version == 1:
        return _from_v1(data)
    raise ValueError(f"results schema_version {version!r} is not supported by this segbench "
                     f"(which reads schema_version {', '.join(map(str, SUPPORTED))})")
