"""Typed cell results: the schema-1 migration on the committed baselines, round trips, the quantity
table and the runtime declarations every layer reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.cell_result import SCHEMA_VERSION, Accuracy, CellResult
from harness.depth import DepthMetrics
from harness.migrate import migrate
from harness.models.base import SegmentationModel
from harness.quantities import DISPLAYS, all_quantities, by_key, checks
from harness.results import load_run, read_json
from harness.runtimes import RUNTIMES, get_runtime, runtime_for

ROOT = Path(__file__).resolve().parents[1]
BASELINES = sorted((ROOT / "results" / "baselines").glob("*/run.json"))
# the baselines written before schema 2 (the migration's test data); later ones are schema 2
SCHEMA1_BASELINES = [p for p in BASELINES
                     if json.loads(next((p.parent / "cells").glob("*.json")).read_text())["schema_version"] == 1]
# schema-1 key -> dotted path in a schema-2 CellResult (what the migration promises)
V1_PATHS = {"model": "identity.model", "dataset": "identity.dataset", "device": "identity.device",
            "precision": "identity.precision", "batch_size": "identity.batch_size", "runtime": "identity.runtime",
            "protocol": "identity.protocol", "family": "provenance.family", "weights": "provenance.weights",
            "data": "provenance.data", "class_names": "provenance.class_names", "metrics": "accuracy.metrics",
            "metrics_note": "accuracy.note", "latency_ms": "latency.forward_ms", "stages_ms": "latency.stages_ms",
            "throughput_ips": "latency.throughput_ips", "warmup": "latency.warmup", "params": "compute.params",
            "gflops": "compute.gflops", "timing": "timing", "memory_mib": "memory", "torch_threads":
            "environment.torch_threads", "started_at": "environment.started_at"}


def _as_plain(value):
    import dataclasses

    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


@pytest.mark.parametrize("run_json", SCHEMA1_BASELINES, ids=lambda p: p.parent.name)
def test_committed_baselines_migrate_without_losing_a_value(run_json):
    run = load_run(run_json.parent)
    assert run.cells and not run.missing
    for path in sorted((run_json.parent / "cells").glob("*.json")):
        raw = json.loads(path.read_text())
        assert raw["schema_version"] == 1  # the committed files stay as they were written
        cell = run.cells[raw["cell_id"]]
        assert cell.status == raw["status"] and cell.error == raw["error"] and cell.samples == raw["samples"]
        for key, where in V1_PATHS.items():
            if key not in raw:
                continue
            got = _as_plain(cell.get(where)) if "." in where else _as_plain(getattr(cell, where))
            if isinstance(raw[key], dict) and isinstance(got, dict):
                assert {k: got.get(k) for k in raw[key]} == raw[key], key
            else:
                assert got == raw[key], key
        known = set(V1_PATHS) | {"schema_version", "cell_id", "status", "error", "samples", "model_ref", "amp",
                                 "variant", "input_size", "identity", "ended_at", "palette", "published", "parity"}
        assert set(raw) - known <= set(cell.extra), set(raw) - known


@pytest.mark.parametrize("run_json", BASELINES, ids=lambda p: p.parent.name)
def test_schema_2_round_trip_is_lossless(run_json, tmp_path):
    for cell in load_run(run_json.parent).cells.values():
        data = cell.to_dict()
        assert data["schema_version"] == SCHEMA_VERSION
        assert CellResult.from_dict(json.loads(json.dumps(data))).to_dict() == data


def test_unknown_keys_survive_and_bad_sections_fall_back():
    cell = CellResult.from_dict(migrate({"schema_version": 1, "cell_id": "c", "status": "ok",
                                         "my_tool": {"x": 1}, "metrics": "not a mapping", "samples": "nope"}))
    assert cell.extra == {"my_tool": {"x": 1}} and cell.accuracy.metrics is None and cell.samples == []
    assert cell.to_dict()["my_tool"] == {"x": 1}
    with pytest.raises(ValueError, match="schema_version 7 is not supported"):
        migrate({"schema_version": 7})


def test_run_json_of_an_unknown_schema_is_refused(tmp_path):
    from harness.results import ResultsError

    (tmp_path / "run.json").write_text('{"schema_version": 3}')
    with pytest.raises(ResultsError, match="schema_version 3 is not supported.*reads schema_version 1, 2"):
        read_json(tmp_path / "run.json")


def test_every_quantity_is_declared_once_and_resolves_on_a_real_result():
    qs = all_quantities()
    assert len({q.key for q in qs}) == len(qs) and len({q.column for q in qs}) == len(qs)
    aliases = [a for q in qs for a in q.aliases]
    assert len(set(aliases)) == len(aliases) and not set(aliases) & {q.key for q in qs}
    cells = [c for run in BASELINES for c in load_run(run.parent).cells.values() if c.ok]
    seg = CellResult(cell_id="e", accuracy=Accuracy(metrics=json.loads(json.dumps(_engine_metrics()))))
    depth = CellResult(cell_id="d", accuracy=Accuracy(metrics=json.loads(json.dumps(DepthMetrics().compute()))))
    engines = {"segmentation": seg, "depth": depth}
    for q in qs:
        assert q.display in DISPLAYS and q.better in ("max", "min", None)
        assert (q.path is None) == (q.derive is not None), q.key
        if q.path and q.path.startswith("accuracy.metrics."):
            assert q.raw(engines[q.task]) is not None, q.key  # its engine computes it (read back from JSON)
        elif q.path and not q.key.startswith(("gpu", "published")):  # no GPU and no reference in the baselines
            assert any(q.raw(c) is not None for c in cells), q.key  # the path names a value real results hold
    assert by_key()["latency"].key == "latency_p50"
    assert {k: c.default for k, c in checks().items()} == {
        "max_miou_drop": 0.005, "max_aacc_drop": 0.005, "max_mbiou_drop": None, "max_abs_rel_growth": 0.02,
        "max_rmse_growth": 0.02, "max_d1_drop": 0.005, "max_slowdown": 0.10, "max_memory_growth": 0.10}


def _engine_metrics() -> dict:
    """What the segmentation engine computes for one small image of a logit model (all engines on)."""
    import torch

    from harness.tasks.segmentation import make_engine

    class Logits:
        output_kind, runtime, upsample, device = "logits", "pytorch", "bilinear", torch.device("cpu")
        postprocess = SegmentationModel.postprocess

    class Data:
        num_classes, ignore_index = 3, 255

    engine = make_engine(Logits(), Data())
    target = np.array([[0, 1, 2, 2]] * 4)
    engine.update(engine.postprocess(Logits(), torch.randn(1, 3, 2, 2), [(4, 4)], [target]), [target])
    return engine.compute()


def test_runtime_declarations_answer_for_every_layer():
    assert runtime_for("x.tflite").name == "litert" and runtime_for("deeplabv3-mnv2-voc-litert").name == "litert"
    assert runtime_for("dpt-large", "onnxruntime").name == "onnxruntime" and runtime_for("dpt-large").name == "pytorch"
    lite, onnx = RUNTIMES["litert"], RUNTIMES["onnxruntime"]
    assert "precision 'bf16' does not apply" in lite.unsupported(precision="bf16")
    assert "CPU" in lite.unsupported(device="cuda:0") and "random" in lite.unsupported(weights="random")
    assert "fixed image size" in onnx.unsupported(protocol_mode="slide")
    assert "compile=True" in onnx.unsupported(compile=True) and onnx.unsupported() is None
    assert RUNTIMES["pytorch"].unsupported(device="cuda", precision="bf16", protocol_mode="multiscale") is None
    with pytest.raises(Exception, match="runtime 'tensorrt' is not one of pytorch, onnxruntime, litert"):
        get_runtime("tensorrt")
