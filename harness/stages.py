"""The stages of measuring one cell, each a function that returns its part of the result.

``harness.cell.run_cell`` calls them in order: :func:`load_model` -> :func:`load_dataset` ->
:func:`cold_start` -> :func:`accuracy` -> :func:`latency` -> :func:`stage_latency` ->
:func:`flops`. A stage knows nothing about the others' sections; what it measured is kept in
the result as soon as it returns, so a later failure loses nothing already measured.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from harness.cell_result import Accuracy, Compute, Latency, Provenance
from harness.errors import SegbenchError
from harness.measure import latency as lat
from harness.measure import memory as mem
from harness.pipeline import Lane, StageClock, plan_for
from harness.suite import Cell

MIB = 1024 * 1024
STAGE_KEYS = ("p50", "p90", "mean", "std", "min", "n")  # of a per-stage latency summary


def load_model(cell: Cell, loader, task_module) -> tuple[object, float, Provenance, Compute, float]:
    """The model adapter, its load time (s), its provenance (with the task's published reference for
    it), its parameter count and weight MiB."""
    t0 = time.perf_counter()
    task = {"task": cell.task} if cell.task != "segmentation" else {}
    model = loader(cell.model, weights=cell.weights, device=cell.device, precision=cell.precision, amp=cell.amp,
                   upsample=cell.protocol.get("upsample", "bilinear"), runtime=cell.runtime,
                   trust_remote_code=cell.trust_remote_code, **task, **cell.variant, **cell.model_options)
    seconds = time.perf_counter() - t0
    provenance = Provenance(family=model.family, weights=model.weights, input_size=list(model.input_size),
                            published=task_module.published(cell, model), parity=getattr(model, "parity", None))
    return model, seconds, provenance, Compute(params=model.params()), model.weight_bytes() / MIB


def protocol_as_run(cell: Cell, model) -> dict:
    """The cell's protocol with the runtime's own additions (e.g. LiteRT's letterbox)."""
    note = getattr(model, "protocol_note", None)
    return {**cell.protocol, **note} if note is not None else dict(cell.protocol)


def load_dataset(cell: Cell, loader, task_module, shard: tuple[int, int] | None = None):
    """The cell's dataset (``shard`` = this process's share under torchrun) and, without a shard,
    its provenance: ``{num_samples, digest, files, skipped}`` plus the task's description."""
    dataset = loader(cell.dataset, root=cell.dataset_root, split=cell.dataset_split, limit=cell.dataset_limit,
                     **({"shard": shard} if shard is not None else {}), **cell.dataset_options)
    data = {"num_samples": len(dataset), "digest": dataset.digest(), "files": dataset.files(), "skipped": []}
    return dataset, data, task_module.describe_dataset(dataset)


def timing_samples(dataset, count: int, policy: str = "error") -> list:
    """The first ``count`` decodable samples (broken ones skipped under policy "skip")."""
    from harness.errors import DataError

    out = []
    for i in range(len(dataset)):
        if len(out) >= count:
            break
        try:
            out.append(dataset.load(i))
        except DataError:
            if policy != "skip":
                raise
    if not out:
        raise SegbenchError(f"dataset {dataset.name!r} has no readable sample to time the model on")
    return out


def latency_inputs(model, dataset, batch_size: int, count: int = 4, policy: str = "error") -> list[torch.Tensor]:
    """Up to ``count`` distinct batches of real preprocessed dataset images, already on the device."""
    singles = [model.preprocess([s.image]) for s in timing_samples(dataset, max(count, batch_size), policy)]
    batches = []
    for b in range(count):
        idx = [(b * batch_size + j) % len(singles) for j in range(batch_size)]
        x = torch.cat([singles[i] for i in idx])
        if float(x.abs().sum()) == 0.0:
            raise SegbenchError("refusing to time on an all-zero input batch")
        batches.append(x.to(model.device))
    return batches


def cold_start(model, dataset, cell: Cell) -> tuple[torch.Tensor, float]:
    """The first batch and the first inference's time in ms (cold: lazy init, autotuning, compile)."""
    first = latency_inputs(model, dataset, cell.batch_size, count=1, policy=cell.measure["on_bad_sample"])[0]
    t0 = time.perf_counter()
    model.forward(first)
    lat._sync(model.device)
    return first, (time.perf_counter() - t0) * 1000.0


def accuracy_note(model, cell: Cell) -> str | None:
    """Why accuracy is not measured for this cell (None when it is)."""
    from harness.tasks.segmentation import RANDOM_NOTE

    parity = getattr(model, "parity", None)
    if model.weights.get("source") == "random":
        return RANDOM_NOTE
    if parity is not None and not parity.get("passed", True):
        return "runtime parity check against PyTorch failed: accuracy not shown"
    if not cell.measure["accuracy"]:
        return "accuracy not requested (measure.accuracy: false)"
    return None


@dataclass
class AccuracyOutcome:
    """What the accuracy stage measured: the metrics, the loop's times (s), the samples it saved,
    the broken samples it skipped and the images it evaluated."""

    accuracy: Accuracy
    seconds: float
    breakdown_s: dict
    cpu_s: dict = field(default_factory=dict)  # CPU seconds per stage (+ "workers"), see harness.pipeline
    pipeline: dict = field(default_factory=dict)  # the PipelinePlan the loop ran under
    samples: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    num_evaluated: int = 0
    input_digest: str | None = None  # sha256 over the corrupted input images (corrupted cells only)


def prediction_protocol(cell: Cell, task_module) -> dict | None:
    """The protocol the cell predicts each image under, or None when whole batches go through the model's
    forward and postprocess: the task's ``prediction_protocol(cell)`` when it has one (depth: flip,
    KITTI kb crop), else the cell's protocol unless its mode is ``whole``."""
    own = getattr(task_module, "prediction_protocol", None)
    if own is not None:
        return own(cell)
    return None if cell.protocol.get("mode", "whole") == "whole" else cell.protocol


def make_engine(task_module, model, dataset, cell: Cell):
    """The task's metric engine for the cell (its seed, measure switches and task settings)."""
    return task_module.make_engine(model, dataset, cell.seed, cell=cell)


def _forward(model, batch, protocol: dict | None, task_module, clock: StageClock):
    """The batch's forward outputs (whole batches: ``protocol`` None), or its predictions under ``protocol``."""
    if protocol is None:
        return clock.run("forward", model.forward, batch.pixel_values)
    return clock.run("forward", lambda ims: [task_module.predict_with_protocol(model, im, protocol)
                                             for im in ims], batch.images)


class _BatchFinisher:
    """What follows a batch's forward: its predictions at each image's size, the metric update and the
    saved samples; called inline or on the pipeline's background lane (``background``)."""

    def __init__(self, model, cell: Cell, protocol: dict | None, task, task_module, engine, clock: StageClock,
                 out: AccuracyOutcome, run_dir: Path, share, keep: int, background: bool):
        self.model, self.cell, self.task, self.task_module, self.engine = model, cell, task, task_module, engine
        self.clock, self.out, self.run_dir, self.keep, self.background = clock, out, run_dir, keep, background
        self.shown, self.shown_name = _inputs_as_seen(share, cell)
        self.protocol = protocol

    def __call__(self, batch, outputs) -> None:
        targets = getattr(batch, self.task.batch_field)
        preds = self._postprocess(outputs, batch, targets)
        self.clock.run("metric", self._update, preds, targets, batch, background=self.background)

    def _postprocess(self, outputs, batch, targets) -> list[torch.Tensor]:
        """Forward outputs -> predictions at each image's size (predictions under a protocol pass through).

        An engine with a ``postprocess(model, outputs, sizes, targets)`` method makes the label maps itself
        (the same maps as ``model.postprocess``), so statistics that need the resized outputs
        (segmentation's calibration) share its one resize."""
        if self.protocol is not None:
            return outputs
        post = getattr(self.engine, "postprocess", None)
        if post is not None:
            return self.clock.run("postprocess", post, self.model, outputs, batch.sizes, targets,
                                  background=self.background)
        return self.clock.run("postprocess", self.model.postprocess, outputs, batch.sizes, background=self.background)

    def _update(self, preds, targets, batch) -> None:
        self.engine.update(preds, targets)
        for pred, target, sid in zip(preds, targets, batch.ids, strict=True):
            if len(self.out.samples) < self.keep:
                self.out.samples.append(self.task_module.save_sample(self.run_dir, self.cell.cell_id, self.shown_name,
                                                                     self.shown, sid, pred, target))


def accuracy(model, dataset, share, cell: Cell, run_dir: Path, task, task_module, placement) -> AccuracyOutcome:
    """The task's metrics over ``share`` (this process's part of ``dataset``), summed over the
    placement's processes; the first ``measure.samples`` predictions are saved (main process).

    The loop's layout (data workers, postprocess inline or beside the next forward) is
    :func:`harness.pipeline.plan_for`'s; its wall and CPU time per stage are recorded."""
    from tqdm import tqdm

    from harness.cli_output import progress_enabled
    from harness.data.loader import make_loader

    engine = make_engine(task_module, model, dataset, cell)
    protocol = prediction_protocol(cell, task_module)
    whole = protocol is None
    plan = plan_for(model.device, cell.measure["num_workers"], whole)
    loader = make_loader(share, batch_size=cell.batch_size, num_workers=cell.measure["num_workers"],
                         preprocess=model.preprocessor if whole else None,
                         on_bad_sample=cell.measure["on_bad_sample"], corruption=cell.corruption, plan=plan)
    out = AccuracyOutcome(Accuracy(), 0.0, {}, pipeline=plan.as_dict())
    overlapped = plan.postprocess == "overlapped"
    clock, lane = StageClock(model.device, overlapped), Lane(overlapped, plan.postprocess_threads)
    finish = _BatchFinisher(model, cell, protocol, task, task_module, engine, clock, out, run_dir, share,
                            cell.measure["samples"] if placement.is_main else 0, overlapped)
    digests: dict[str, str] = {}
    workers_cpu, failure = 0.0, None
    engine.prepare(model)  # compiled CPU loops loaded before the clock starts
    t0 = time.perf_counter()
    try:
        with tqdm(total=len(share), desc=f"accuracy {cell.cell_id[:40]}", unit="img", leave=False,
                  file=sys.stderr, disable=not (placement.is_main and progress_enabled())) as bar:
            for batch in clock.wait(loader):
                out.skipped.extend(batch.skipped)
                workers_cpu += batch.cpu_s if plan.workers else 0.0
                if batch.ids:
                    lane.submit(finish, batch, _forward(model, batch, protocol, task_module, clock))
                    digests.update(zip(batch.ids, batch.input_digests or [], strict=False))
                    out.num_evaluated += len(batch.ids)
                bar.update(len(batch.ids) + len(batch.skipped))
    except Exception as e:  # tell the other processes before raising, so none waits forever
        failure = e
    try:
        lane.close(plan.forward_threads)
    except Exception as e:
        failure = failure or e
    if placement.failed_elsewhere(failure is not None):
        raise SegbenchError("another rank failed while evaluating this cell")
    if failure is not None:
        raise failure
    clock.finish()
    out.seconds = time.perf_counter() - t0
    out.breakdown_s = dict(clock.wall, **({"postprocess_wait": lane.wait_s} if overlapped else {}))
    out.cpu_s = dict(clock.cpu, **({"workers": workers_cpu} if plan.workers else {}))
    engine.reduce(placement)
    out.skipped = placement.concat(out.skipped)
    out.num_evaluated = placement.total(out.num_evaluated)
    out.input_digest = inputs_digest(placement.gather(digests)) if cell.corruption is not None else None
    out.accuracy = Accuracy(metrics=engine.compute())
    return out


def _inputs_as_seen(share, cell: Cell) -> tuple[object, str]:
    """The dataset as the model saw it (corrupted when the cell is) and the name its saved inputs go under."""
    from harness.data.loader import corrupted_view

    name = cell.dataset if cell.corruption is None else f"{cell.dataset}__{cell.corruption_tag}"
    return corrupted_view(share, cell.corruption), name


def inputs_digest(digests: dict[str, str] | list[dict[str, str]]) -> str:
    """One sha256 (hex) over each sample id's input-image digest, in sorted id order (the same for
    any split of the samples across processes); ``digests`` may be the processes' parts."""
    import hashlib

    merged = {k: v for part in ([digests] if isinstance(digests, dict) else digests) for k, v in part.items()}
    return hashlib.sha256("".join(f"{k}\t{merged[k]}\n" for k in sorted(merged)).encode()).hexdigest()


def latency(model, dataset, cell: Cell) -> tuple[Latency, dict, dict]:
    """Model-forward latency (inputs already on the device), the memory peaks of the timed region (MiB:
    ``gpu_peak_allocated``, ``gpu_peak_reserved``, ``device_used``) and the region's measurement
    quality (:mod:`harness.measure.quality`: other processes' CPU time, steal, frequency, threads,
    GPU clocks, the samples' CV) with the ``flags`` it raises."""
    from tqdm import tqdm

    from harness.measure.quality import QualityProbe, flags

    m = cell.measure
    inputs = latency_inputs(model, dataset, cell.batch_size, policy=m["on_bad_sample"])
    mem.reset_cuda_peak(model.device)
    info: dict = {}
    with tqdm(total=m["iters"], desc=f"latency  {cell.cell_id[:40]}", unit="it", leave=False,
              file=sys.stderr) as bar:
        probe = QualityProbe(device=str(model.device)).start()
        samples = lat.time_iterations(model.forward, inputs, warmup=m["warmup"], iters=m["iters"],
                                      device=model.device, min_time_s=m["min_time_s"], progress=bar.update,
                                      warmup_cv=m["warmup_cv"], max_warmup=m["max_warmup"], info=info)
        quality = probe.stop(samples_ms=samples)
    quality["flags"] = flags(quality)
    stats = lat.summarize(samples)
    alloc, reserved = mem.cuda_peaks_mib(model.device)
    throughput = cell.batch_size * 1000.0 / stats["mean"] if stats["mean"] else None
    peaks = {"gpu_peak_allocated": alloc, "gpu_peak_reserved": reserved, "device_used": mem.nvml_used_mib(model.device)}
    return Latency(forward_ms=stats, warmup=info, throughput_ips=throughput), peaks, quality


def _summary(samples: list[float]) -> dict:
    return {k: v for k, v in lat.summarize(samples).items() if k in STAGE_KEYS}


def stage_latency(model, dataset, cell: Cell, task_module, forward_ms: dict | None) -> dict:
    """Per-stage latency in ms for one batch: decode, preprocess, forward, postprocess, end to end.

    ``decode`` reads and decodes the batch's files; ``end_to_end`` goes from decoded PIL images to
    predictions on the host (preprocess + copy + forward + postprocess + copy back); ``forward`` is
    the latency stage's summary.
    """
    iters = max(1, min(cell.measure["iters"], 10))
    ids = {s.id for s in timing_samples(dataset, cell.batch_size, cell.measure["on_bad_sample"])}
    idx = [i for i in range(len(dataset)) if dataset.sample_id(i) in ids]
    idx = [idx[j % len(idx)] for j in range(cell.batch_size)]
    decode = lat.time_iterations(lambda _: [dataset.load(i) for i in idx], [0], warmup=0, iters=iters)
    images = [dataset.load(i).image for i in idx]
    sizes = [(im.height, im.width) for im in images]
    pre = lat.time_iterations(model.preprocess, [images], warmup=1, iters=iters)
    out = model.forward(model.preprocess(images).to(model.device))
    post = lat.time_iterations(lambda o: model.postprocess(o, sizes), [out], warmup=1, iters=iters,
                               device=model.device)

    protocol = prediction_protocol(cell, task_module)

    def end_to_end(ims):
        if protocol is not None:
            return [task_module.predict_with_protocol(model, im, protocol).cpu() for im in ims]
        return [p.cpu() for p in model.postprocess(model.forward(model.preprocess(ims)), sizes)]

    e2e = lat.time_iterations(end_to_end, [images], warmup=1, iters=iters, device=model.device)
    return {"decode": _summary(decode), "preprocess": _summary(pre),
            "forward": {k: v for k, v in (forward_ms or {}).items() if k in STAGE_KEYS} or None,
            "postprocess": _summary(post), "end_to_end": _summary(e2e)}


def flops(model, first_batch: torch.Tensor, cell: Cell, forward_ms: dict | None, compute: Compute) -> Compute:
    """``compute`` with forward GFLOPs per image at the model's input size; on CUDA, achieved TFLOP/s
    (FLOPs x batch / mean latency) and the share of the device's dense peak for the precision."""
    from harness.measure.flops import count_flops, peak_tflops

    if model.module is None:
        return compute
    count = count_flops(model.forward, first_batch[:1])
    out = Compute(params=compute.params, gflops=count / 1e9)
    mean = (forward_ms or {}).get("mean")
    if mean and model.device.type == "cuda":
        out.achieved_tflops = count * cell.batch_size / (mean / 1000.0) / 1e12
        out.peak_tflops = peak_tflops(torch.cuda.get_device_name(model.device), cell.precision)
        out.peak_fraction = out.achieved_tflops / out.peak_tflops if out.peak_tflops else None
    return out
