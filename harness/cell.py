"""Measure one cell in the current process (a launcher decides which process that is).

:func:`run_cell` is the sequence of stages (:mod:`harness.stages`): load the model (timed), load
the dataset, the first inference (cold, timed apart), the task's accuracy over the dataset when
the weights are real, latency (warm-up, timed iterations, memory peaks of the timed region),
per-stage latency and FLOPs. Each stage's section is kept as soon as it returns; a failure sets
``status`` and ``error`` and loses nothing measured before it.
"""

from __future__ import annotations

import datetime as _dt
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from harness.cell_result import CellEnvironment, CellResult, Identity
from harness.errors import SegbenchError, UnsupportedError
from harness.measure import memory as mem
from harness.suite import Cell

CORRUPTED_LATENCY_NOTE = ("not measured on corrupted images: the model's speed does not depend on the image "
                          "content; the clean cell of the same settings has the latency, memory and FLOPs")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def skeleton(cell: Cell) -> CellResult:
    """The result before anything is measured: the cell's identity and the weights it asked for."""
    identity = Identity(task=cell.task, model=cell.model_label or cell.model, model_ref=cell.model,
                        dataset=cell.dataset, device=cell.device, precision=cell.precision, amp=cell.amp,
                        batch_size=cell.batch_size, runtime=cell.runtime, variant=dict(cell.variant),
                        protocol=dict(cell.protocol), settings=cell.identity(),
                        corruption=dict(cell.corruption) if cell.corruption is not None else None)
    result = CellResult(cell_id=cell.cell_id, identity=identity,
                        environment=CellEnvironment(torch_threads=torch.get_num_threads(), started_at=_now()))
    result.provenance.weights = {"source": "random"} if cell.weights == "random" else {"requested": cell.weights}
    if cell.corruption is not None:
        result.latency.note = CORRUPTED_LATENCY_NOTE
    return result


def skip_reason(cell: Cell) -> str | None:
    """Why this machine or the cell's runtime cannot run the cell (it is then ``skipped``), or None."""
    from harness.runtimes import runtime_for

    dev = torch.device(cell.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available on this machine"
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        return f"{cell.device} does not exist (this machine has {torch.cuda.device_count()} CUDA devices)"
    if dev.type == "mps" and not torch.backends.mps.is_available():
        return "MPS is not available on this machine"
    if cell.precision == "tf32" and dev.type != "cuda":
        return "tf32 applies to CUDA matmuls only"
    reason = runtime_for(cell.model, cell.runtime).unsupported(
        device=cell.device, precision=cell.precision, protocol_mode=cell.protocol.get("mode", "whole"),
        weights=cell.weights, compile=bool(cell.variant.get("compile")), task=cell.task)
    return f"unsupported: {reason}" if reason else None


def _failure(e: BaseException) -> tuple[str, str]:
    """(status, error text) of an exception that ended a cell."""
    if isinstance(e, torch.OutOfMemoryError):
        return "oom", f"OutOfMemoryError: {str(e).splitlines()[0] if str(e) else 'out of memory'}"
    if isinstance(e, UnsupportedError):  # a valid combination this model/runtime/device cannot run
        return "skipped", f"unsupported: {e}"
    if isinstance(e, SegbenchError):
        return "error", f"{type(e).__name__}: {e}"
    return "error", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}"


def _measure(cell: Cell, run_dir: Path, result: CellResult, load_model, load_dataset, placement) -> None:
    """The stages, in order; each assigns its section of ``result`` as soon as it returns."""
    from harness import stages
    from harness.pipeline import set_heap, start_worker_server
    from harness.tasks import get_task, task_module

    task, module = get_task(cell.task), task_module(cell.task)
    if cell.measure["num_workers"] and cell.measure["accuracy"]:
        start_worker_server()  # its imports run while the model loads
    result.environment.heap = set_heap(cell.measure["heap"], torch.device(cell.device))
    model, result.timing.load_s, result.provenance, result.compute, result.memory.weights = \
        stages.load_model(cell, load_model, module)
    result.identity.protocol = stages.protocol_as_run(cell, model)
    dataset, result.provenance.data, described = stages.load_dataset(cell, load_dataset, module)
    result.provenance.class_names, result.provenance.palette = described.get("class_names"), described.get("palette")
    result.provenance.data.update(described.get("data") or {})  # task-specific data facts (depth: range, crop)
    first, result.timing.first_inference_ms = stages.cold_start(model, dataset, cell)
    result.accuracy.note = stages.accuracy_note(model, cell)
    if result.accuracy.note is None:
        module.check_compatible(model, dataset)
        share = dataset if placement.shard() is None else stages.load_dataset(
            cell, load_dataset, module, shard=placement.shard())[0]
        outcome = stages.accuracy(model, dataset, share, cell, run_dir, task, module, placement)
        result.accuracy, result.samples = outcome.accuracy, outcome.samples
        result.timing.accuracy_s, result.timing.accuracy_breakdown_s = outcome.seconds, outcome.breakdown_s
        result.timing.accuracy_cpu_s, result.timing.accuracy_pipeline = outcome.cpu_s, outcome.pipeline
        result.provenance.data.update(skipped=outcome.skipped, num_evaluated=outcome.num_evaluated)
        if outcome.input_digest is not None:
            result.provenance.data["corrupted_inputs_sha256"] = outcome.input_digest
        if placement.world_size > 1:
            result.environment.distributed = {"world_size": placement.world_size, "accuracy": "split across ranks",
                                              "latency": "rank 0 only (single process)"}
    if cell.measure["latency"] and placement.is_main:
        result.latency, peaks, result.environment.quality = stages.latency(model, dataset, cell)
        result.memory.gpu_peak_allocated = peaks["gpu_peak_allocated"]
        result.memory.gpu_peak_reserved = peaks["gpu_peak_reserved"]
        result.memory.device_used = peaks["device_used"]
        if cell.measure["stages"]:
            result.latency.stages_ms = stages.stage_latency(model, dataset, cell, module, result.latency.forward_ms)
    if cell.measure["flops"] and placement.is_main:
        result.compute = stages.flops(model, first, cell, result.latency.forward_ms, result.compute)


def run_cell(cell: Cell, run_dir: Path, load_model=None, load_dataset=None, placement=None) -> CellResult:
    """Measure ``cell`` and return its :class:`CellResult` (never raises for a failure of the cell itself).

    ``load_model`` and ``load_dataset`` default to the registries' loaders; ``placement`` (see
    :mod:`harness.launchers`) says how this process shares the cell with others (default: alone).
    """
    if load_model is None:
        from harness.models import load_model
    if load_dataset is None:
        from harness.data import load_dataset
    if placement is None:
        from harness.launchers import Placement

        placement = Placement()
    result = skeleton(cell)
    t_start = time.perf_counter()
    try:
        torch.manual_seed(cell.seed)
        np.random.seed(cell.seed)
        reason = skip_reason(cell)
        if reason:
            result.status, result.error = "skipped", reason
            return result
        _measure(cell, run_dir, result, load_model, load_dataset, placement)
        result.status = "ok"
    except Exception as e:  # a failure of this cell must not lose what was measured
        result.status, result.error = _failure(e)
    finally:
        result.memory.host_peak_rss = mem.host_peak_rss_mib()
        result.timing.total_s = time.perf_counter() - t_start
        result.environment.ended_at = _now()
    return result
