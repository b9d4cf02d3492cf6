"""The typed result of one cell: small dataclasses, one per section of ``cells/<cell_id>.json``.

A :class:`CellResult` is plain data: every field is a JSON value (numbers, strings, lists,
dicts) or a section dataclass of them, so ``to_dict()`` gives the file's content and
``from_dict()`` reads it back. Units are in the field names or stated per section: latency in
ms, memory in MiB, time in s (``_ms`` where ms), accuracy as fractions in [0, 1].

Files of schema 1 (the flat layout written before sections existed) are read through
:func:`harness.migrate.migrate`; every reader goes through :func:`load_cell_result`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 2
STATUSES = ("ok", "oom", "error", "timeout", "skipped")


@dataclass
class Identity:
    """The cell's settings: what makes two cells the same measurement.

    ``model`` is the display name (the suite's label, or the model reference), ``model_ref`` what
    was loaded (registry name, hub id, path); ``protocol`` the protocol as run (a runtime may add
    its own keys, e.g. LiteRT's letterbox); ``settings`` the cell's full identity as the suite
    expanded it (weights requested, dataset split/limit/options, model options), from which
    ``cell_id`` is derived; ``corruption``: ``{name, severity, seed}`` of the corruption applied to
    the input images (None: clean images).
    """

    task: str = "segmentation"
    model: str | None = None
    model_ref: str | None = None
    dataset: str | None = None
    device: str | None = None
    precision: str | None = None
    amp: str | None = None
    batch_size: int | None = None
    runtime: str | None = None
    variant: dict = field(default_factory=dict)
    protocol: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    corruption: dict | None = None


@dataclass
class Provenance:
    """Where the weights and data came from, and what the model is.

    ``weights``: ``{"source": "random"|"hub"|"local"|"file", ...}`` (or ``{"requested": ...}`` when
    the load failed); ``data``: ``{num_samples, num_evaluated, digest, files, skipped}``;
    ``input_size`` [H, W] pixels the model ran at; ``published``: the reference figures paired
    with this cell (fractions) and their source; ``parity``: a runtime's check against PyTorch.
    """

    family: str | None = None
    weights: dict = field(default_factory=dict)
    input_size: list | None = None
    data: dict | None = None
    class_names: list | None = None
    palette: list | None = None
    published: dict | None = None
    parity: dict | None = None


@dataclass
class CellEnvironment:
    """The cell's own process: threads, heap policy (:func:`harness.pipeline.set_heap`), when it ran,
    how it was split, and measurement quality."""

    torch_threads: int | None = None
    heap: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    world_size: int | None = None
    distributed: dict | None = None
    quality: dict | None = None


@dataclass
class Timing:
    """Where the cell's wall time went, in seconds (``first_inference_ms`` in ms).

    ``accuracy_breakdown_s``: wall seconds of the accuracy loop's stages ``{data_wait, forward,
    postprocess, metric}`` (+ ``postprocess_wait``, the main thread's wait for the background
    postprocess, when it was overlapped); ``accuracy_cpu_s``: CPU seconds of the same stages
    (+ ``workers``, the data workers' decode and preprocess); ``accuracy_pipeline``: the layout the
    loop ran under (:class:`harness.pipeline.PipelinePlan`).
    """

    load_s: float | None = None
    first_inference_ms: float | None = None
    accuracy_s: float | None = None
    accuracy_breakdown_s: dict | None = None
    accuracy_cpu_s: dict | None = None
    accuracy_pipeline: dict | None = None
    total_s: float | None = None


@dataclass
class Accuracy:
    """The task's metrics over the dataset (fractions; NaN written as null), or why there are none."""

    metrics: dict | None = None
    note: str | None = None


@dataclass
class Latency:
    """Model-forward latency per batch in ms and what it derives.

    ``forward_ms``: ``{p50, p90, p99, mean, std, cv, min, max, n, samples}``; ``stages_ms``: per-batch
    ``decode``, ``preprocess``, ``forward``, ``postprocess``, ``end_to_end`` summaries;
    ``throughput_ips`` images per second = batch size / mean forward latency; ``warmup``:
    ``{warmup_iters, warmup_stable}``; ``repeats`` / ``run_to_run``: with ``measure.repeat > 1``,
    each repeat's p50/mean and the spread of the means; ``note``: why latency was not measured
    (e.g. a corrupted-input cell: speed does not depend on the image content).
    """

    forward_ms: dict | None = None
    stages_ms: dict | None = None
    throughput_ips: float | None = None
    warmup: dict | None = None
    repeats: list | None = None
    run_to_run: dict | None = None
    note: str | None = None


@dataclass
class MemoryUse:
    """Peaks in MiB: GPU allocated/reserved during the timed region (stats reset before it), NVML
    device memory in use, the cell process's host peak RSS, and the bytes of weights and buffers."""

    gpu_peak_allocated: float | None = None
    gpu_peak_reserved: float | None = None
    host_peak_rss: float | None = None
    weights: float | None = None
    device_used: float | None = None


@dataclass
class Compute:
    """Parameters (count), forward GFLOPs per image at the cell's input size, and on CUDA the achieved
    TFLOP/s (FLOPs x batch / mean latency), the device's dense peak for the precision and the share."""

    params: int | None = None
    gflops: float | None = None
    achieved_tflops: float | None = None
    peak_tflops: float | None = None
    peak_fraction: float | None = None


SECTIONS: dict[str, type] = {"identity": Identity, "provenance": Provenance, "environment": CellEnvironment,
                             "timing": Timing, "accuracy": Accuracy, "latency": Latency, "memory": MemoryUse,
                             "compute": Compute}


@dataclass
class CellResult:
    """One cell's result file: status, identity and one section per kind of measurement.

    ``extra`` keeps keys this version does not know (from a newer writer or a user's tool), so a
    read and a rewrite lose nothing.
    """

    cell_id: str
    status: str = "error"
    error: str | None = None
    identity: Identity = field(default_factory=Identity)
    provenance: Provenance = field(default_factory=Provenance)
    environment: CellEnvironment = field(default_factory=CellEnvironment)
    timing: Timing = field(default_factory=Timing)
    accuracy: Accuracy = field(default_factory=Accuracy)
    latency: Latency = field(default_factory=Latency)
    memory: MemoryUse = field(default_factory=MemoryUse)
    compute: Compute = field(default_factory=Compute)
    samples: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def weights_source(self) -> str | None:
        """``random``, ``hub``, ``local``, ``file``; ``random`` also when random weights were requested
        and the load failed; None when unknown."""
        w = self.provenance.weights or {}
        return w.get("source") or ("random" if w.get("requested") == "random" else None)

    @property
    def corruption_tag(self) -> str | None:
        """``<name>-<severity>`` of the input corruption (e.g. ``fog-3``), None for clean images."""
        c = self.identity.corruption
        return f"{c.get('name')}-{c.get('severity')}" if isinstance(c, dict) else None

    def to_dict(self) -> dict:
        """The file's content (schema 2)."""
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "cell_id": self.cell_id, "status": self.status,
                               "error": self.error}
        for name in SECTIONS:
            out[name] = dataclasses.asdict(getattr(self, name))
        out["samples"] = list(self.samples)
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> CellResult:
        """A result from the content of a schema-2 file (unknown keys kept in ``extra``)."""
        known = {"schema_version", "cell_id", "status", "error", "samples", *SECTIONS}
        sections = {name: _section(kind, data.get(name)) for name, kind in SECTIONS.items()}
        samples = data.get("samples")
        cid = data.get("cell_id")
        return cls(cell_id="" if cid is None else str(cid), status=str(data.get("status")), error=data.get("error"),
                   samples=samples if isinstance(samples, list) else [],
                   extra={k: v for k, v in data.items() if k not in known}, **sections)

    def get(self, path: str, default: Any = None) -> Any:
        """The value at a dotted ``path`` ("latency.forward_ms.p50"), through sections and dicts."""
        obj: Any = self
        for part in path.split("."):
            if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
                obj = getattr(obj, part, None)
            elif isinstance(obj, dict):
                obj = obj.get(part)
            else:
                return default
            if obj is None:
                return default
        return obj


def _section(kind: type, value: Any):
    """A section dataclass from a mapping; fields of the wrong shape (not a dict/list where one is
    expected) are dropped to their defaults, unknown keys ignored."""
    if not isinstance(value, dict):
        return kind()
    kwargs = {}
    for f in dataclasses.fields(kind):
        if f.name not in value:
            continue
        v = value[f.name]
        expects_dict = f.type in ("dict", "dict | None")
        expects_list = f.type in ("list", "list | None")
        if (expects_dict and v is not None and not isinstance(v, dict)) or (
                expects_list and v is not None and not isinstance(v, list)):
            continue
        if f.type == "dict" and v is None:
            continue
        kwargs[f.name] = v
    return kind(**kwargs)
