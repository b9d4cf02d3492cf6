"""Measure one cell, in the current process (the runner starts a fresh process per cell).

Order of work: load the model (timed), load the dataset, the first inference (timed apart,
cold), accuracy over the dataset when the weights are real, then latency (warm-up, timed
iterations) with memory peaks reset before the timed region. Whatever was measured before
a failure stays in the result, whose ``status`` and ``error`` say what went wrong.

The runner starts ``python -m harness.worker RUN_DIR`` with the cell as JSON on standard input.
"""

from __future__ import annotations

import datetime as _dt
import faulthandler
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from harness.errors import ConfigError, SegbenchError, UnsupportedError
from harness.measure import latency as lat
from harness.measure import memory as mem
from harness.results import SCHEMA_VERSION, cell_path, write_json_atomic
from harness.suite import Cell

RANDOM_NOTE = "random weights: speed and memory only, accuracy not measured"
MIB = 1024 * 1024


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def base_result(cell: Cell) -> dict:
    """The result skeleton: the cell's identity and null measurements."""
    return {
        "schema_version": SCHEMA_VERSION, "cell_id": cell.cell_id, "status": "error", "error": None,
        "model": cell.model_label or cell.model, "model_ref": cell.model, "family": None,
        "weights": {"source": "random"} if cell.weights == "random" else {"requested": cell.weights},
        "dataset": cell.dataset, "data": None, "device": cell.device, "precision": cell.precision,
        "amp": cell.amp, "batch_size": cell.batch_size, "runtime": cell.runtime, "variant": cell.variant,
        "protocol": cell.protocol, "input_size": None, "metrics": None, "metrics_note": None,
        "class_names": None, "latency_ms": None, "stages_ms": None, "throughput_ips": None,
        "memory_mib": {"gpu_peak_allocated": None, "gpu_peak_reserved": None, "host_peak_rss": None,
                       "weights": None},
        "params": None, "gflops": None, "timing": {}, "samples": [], "identity": cell.identity(),
        "torch_threads": torch.get_num_threads(), "started_at": _now(), "ended_at": None,
    }


def _skip_reason(cell: Cell) -> str | None:
    dev = torch.device(cell.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available on this machine"
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        return f"{cell.device} does not exist (this machine has {torch.cuda.device_count()} CUDA devices)"
    if dev.type == "mps" and not torch.backends.mps.is_available():
        return "MPS is not available on this machine"
    if cell.precision == "tf32" and dev.type != "cuda":
        return "tf32 applies to CUDA matmuls only"
    from harness.runtimes import runtime_for

    reason = runtime_for(cell.model, cell.runtime).unsupported(
        device=cell.device, precision=cell.precision, protocol_mode=cell.protocol.get("mode", "whole"),
        weights=cell.weights, compile=bool(cell.variant.get("compile")))
    return f"unsupported: {reason}" if reason else None


def _check_label_spaces(model, dataset) -> None:
    ms, ds = getattr(model, "label_set", None), getattr(dataset, "label_set", None)
    if ms and ds and ms != ds:
        raise ConfigError(f"label spaces differ: model {model.name!r} predicts {ms!r} labels "
                          f"({model.num_labels} classes) but dataset {dataset.name!r} is {ds!r} "
                          f"({dataset.num_classes} classes)")
    if not (ms and ds) and model.output_kind == "logits" and model.num_labels != dataset.num_classes:
        raise ConfigError(f"label spaces differ: model {model.name!r} has {model.num_labels} labels, "
                          f"dataset {dataset.name!r} has {dataset.num_classes} classes")


def _save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), mode="L").save(path)


class _StageClock:
    """Seconds spent per stage of the accuracy loop: waiting for data, forward, postprocess, metric.

    On CUDA each stage is synchronised before it is read, so time is charged where it is spent.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.totals: dict[str, float] = {"data_wait": 0.0, "forward": 0.0, "postprocess": 0.0, "metric": 0.0}

    def add(self, stage: str, seconds: float) -> None:
        self.totals[stage] = self.totals.get(stage, 0.0) + seconds

    def run(self, stage: str, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        lat._sync(self.device)
        self.add(stage, time.perf_counter() - t0)
        return out

    def wait(self, iterable):
        it = iter(iterable)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            self.add("data_wait", time.perf_counter() - t0)
            yield item


def evaluate_accuracy(model, dataset, cell: Cell, run_dir: Path, result: dict, share=None) -> None:
    """Confusion-matrix metrics over the whole (limited) dataset; saves a few qualitative samples.

    Under torchrun each rank evaluates its own share of the samples (rank r takes r, r+N, ...)
    and the confusion matrices are summed across ranks before the metrics are computed;
    ``share`` is this rank's part of ``dataset``.
    """
    from tqdm import tqdm

    from harness import distributed
    from harness.data.loader import make_loader
    from harness.metrics import SegmentationMetrics
    from harness.protocols import predict_with_protocol

    dinfo = distributed.current()
    share = dataset if share is None else share
    metrics = SegmentationMetrics(dataset.num_classes, ignore_index=dataset.ignore_index,
                                  device=model.device, keep_per_image=True)
    whole = cell.protocol.get("mode", "whole") == "whole"
    loader = make_loader(share, batch_size=cell.batch_size, num_workers=cell.measure["num_workers"],
                         preprocess=model.preprocessor if whole else None,
                         on_bad_sample=cell.measure["on_bad_sample"])
    skipped: list[dict] = []
    n_done = 0
    keep = cell.measure["samples"] if dinfo.is_main else 0
    failure: BaseException | None = None
    t0 = time.perf_counter()
    try:
        with tqdm(total=len(share), desc=f"accuracy {cell.cell_id[:40]}", unit="img", leave=False,
                  file=sys.stderr, disable=not dinfo.is_main) as bar:
            clock = _StageClock(model.device)
            for batch in clock.wait(loader):
                skipped.extend(batch.skipped)
                if not batch.ids:
                    bar.update(len(batch.skipped))
                    continue
                if whole:
                    outputs = clock.run("forward", model.forward, batch.pixel_values)
                    preds = clock.run("postprocess", model.postprocess, outputs, batch.sizes)
                else:
                    preds = clock.run("forward", lambda ims: [predict_with_protocol(model, im, cell.protocol)
                                                              for im in ims], batch.images)
                t_metric = time.perf_counter()
                for pred, label, sid in zip(preds, batch.labels, batch.ids, strict=True):
                    target = torch.from_numpy(np.asarray(label)).to(pred.device)
                    metrics.update(pred.unsqueeze(0), target.unsqueeze(0))
                    if len(result["samples"]) < keep:
                        result["samples"].append(_save_sample(run_dir, cell, share, sid, pred, label))
                clock.add("metric", time.perf_counter() - t_metric)
                n_done += len(batch.ids)
                bar.update(len(batch.ids) + len(batch.skipped))
            result["timing"]["accuracy_breakdown_s"] = clock.totals
    except Exception as e:  # tell the other ranks before raising, so none waits forever
        failure = e
    if dinfo.active:
        flag = distributed.all_reduce_sum(torch.tensor([1 if failure else 0], dtype=torch.int64))
        if failure is None and int(flag.item()) > 0:
            raise SegbenchError("another rank failed while evaluating this cell")
    if failure is not None:
        raise failure
    result["timing"]["accuracy_s"] = time.perf_counter() - t0
    if dinfo.active:
        metrics.load_state_tensor(distributed.all_reduce_sum(metrics.state_tensor()))
        skipped = [s for part in distributed.gather_objects(skipped) for s in part]
        n_done = sum(distributed.gather_objects(n_done))
    result["metrics"] = metrics.compute()
    result["metrics"]["num_images"] = n_done
    inter, union = metrics.per_image()[:2]
    if dinfo.active:
        parts = distributed.gather_objects((np.asarray(inter), np.asarray(union)))
        inter = np.concatenate([p[0] for p in parts if len(p[0])]) if n_done else np.zeros((0, 0))
        union = np.concatenate([p[1] for p in parts if len(p[1])]) if n_done else np.zeros((0, 0))
    if len(inter) > 1:
        from harness.metrics import bootstrap_miou

        result["metrics"]["mIoU_ci"] = list(bootstrap_miou(np.asarray(inter), np.asarray(union), seed=cell.seed))
    result["data"]["skipped"] = skipped
    result["data"]["num_evaluated"] = n_done
    if dinfo.active:
        result["distributed"] = {"world_size": dinfo.world_size, "accuracy": "split across ranks",
                                 "latency": "rank 0 only (single process)"}


def _save_sample(run_dir: Path, cell: Cell, dataset, sid: str, pred: torch.Tensor, label) -> dict:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in sid)[:80]
    base = Path("samples") / _safe_name(cell.dataset)
    image_rel, label_rel = base / f"{safe}.jpg", base / f"{safe}.label.png"
    pred_rel = Path("samples") / cell.cell_id / f"{safe}.png"
    if not (run_dir / image_rel).exists():
        idx = next((i for i in range(len(dataset)) if dataset.sample_id(i) == sid), None)
        if idx is not None:
            (run_dir / image_rel).parent.mkdir(parents=True, exist_ok=True)
            dataset.load(idx).image.convert("RGB").save(run_dir / image_rel, quality=90)
            _save_png(run_dir / label_rel, np.asarray(label))
    _save_png(run_dir / pred_rel, pred.cpu().numpy())
    return {"id": sid, "image": str(image_rel), "label": str(label_rel), "pred": str(pred_rel)}


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[:64]


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


def measure_latency(model, dataset, cell: Cell, result: dict) -> None:
    """Model-forward latency (inputs already on the device) and memory peaks of the timed region."""
    from tqdm import tqdm

    m = cell.measure
    inputs = latency_inputs(model, dataset, cell.batch_size, policy=m["on_bad_sample"])
    mem.reset_cuda_peak(model.device)
    info: dict = {}
    with tqdm(total=m["iters"], desc=f"latency  {cell.cell_id[:40]}", unit="it", leave=False,
              file=sys.stderr) as bar:
        samples = lat.time_iterations(model.forward, inputs, warmup=m["warmup"], iters=m["iters"],
                                      device=model.device, min_time_s=m["min_time_s"], progress=bar.update,
                                      warmup_cv=m["warmup_cv"], max_warmup=m["max_warmup"], info=info)
    stats = lat.summarize(samples)
    result["latency_ms"] = stats
    result["warmup"] = info
    result["throughput_ips"] = cell.batch_size * 1000.0 / stats["mean"] if stats["mean"] else None
    alloc, reserved = mem.cuda_peaks_mib(model.device)
    result["memory_mib"]["gpu_peak_allocated"] = alloc
    result["memory_mib"]["gpu_peak_reserved"] = reserved
    result["memory_mib"]["device_used"] = mem.nvml_used_mib(model.device)


def measure_stages(model, dataset, cell: Cell, result: dict) -> None:
    """Per-stage latency in ms for one batch: decode, preprocess, forward, postprocess, end to end.

    ``decode`` reads and decodes the batch's files; ``end_to_end`` goes from decoded PIL
    images to label maps on the host (preprocess + copy + forward + resize/argmax + copy back).
    """
    iters = max(1, min(cell.measure["iters"], 10))
    good = timing_samples(dataset, cell.batch_size, cell.measure["on_bad_sample"])
    ids = {s.id for s in good}
    idx = [i for i in range(len(dataset)) if dataset.sample_id(i) in ids]
    idx = [idx[j % len(idx)] for j in range(cell.batch_size)]
    decode = lat.time_iterations(lambda _: [dataset.load(i) for i in idx], [0], warmup=0, iters=iters)
    samples = [dataset.load(i) for i in idx]
    images = [s.image for s in samples]
    sizes = [(im.height, im.width) for im in images]
    pre = lat.time_iterations(model.preprocess, [images], warmup=1, iters=iters)
    x = model.preprocess(images).to(model.device)
    out = model.forward(x)
    post = lat.time_iterations(lambda o: model.postprocess(o, sizes), [out], warmup=1, iters=iters,
                               device=model.device)

    def end_to_end(ims):
        if cell.protocol.get("mode", "whole") != "whole":
            from harness.protocols import predict_with_protocol

            return [predict_with_protocol(model, im, cell.protocol).cpu() for im in ims]
        return [p.cpu() for p in model.postprocess(model.forward(model.preprocess(ims)), sizes)]

    e2e = lat.time_iterations(end_to_end, [images], warmup=1, iters=iters, device=model.device)
    keep = ("p50", "p90", "mean", "std", "min", "n")
    result["stages_ms"] = {
        "decode": {k: v for k, v in lat.summarize(decode).items() if k in keep},
        "preprocess": {k: v for k, v in lat.summarize(pre).items() if k in keep},
        "forward": {k: v for k, v in (result.get("latency_ms") or {}).items() if k in keep} or None,
        "postprocess": {k: v for k, v in lat.summarize(post).items() if k in keep},
        "end_to_end": {k: v for k, v in lat.summarize(e2e).items() if k in keep},
    }


def measure_flops(model, first_batch: torch.Tensor, cell: Cell, result: dict, env_gpu: str | None) -> None:
    """Forward GFLOPs per image at the model's input size; on CUDA, achieved TFLOP/s and share of peak."""
    from harness.measure.flops import count_flops, peak_tflops

    if model.module is None:
        return
    flops = count_flops(model.forward, first_batch[:1])
    result["gflops"] = flops / 1e9
    mean = (result.get("latency_ms") or {}).get("mean")
    if mean and model.device.type == "cuda":
        achieved = flops * cell.batch_size / (mean / 1000.0) / 1e12
        peak = peak_tflops(env_gpu, cell.precision)
        result["achieved_tflops"] = achieved
        result["peak_tflops"] = peak
        result["peak_fraction"] = achieved / peak if peak else None


def run_cell(cell: Cell, run_dir: Path, load_model=None, load_dataset=None) -> dict:
    """Measure ``cell`` and return its result dict (never raises for a failure of the cell itself).

    ``load_model`` and ``load_dataset`` default to the registries' loaders.
    """
    if load_model is None:
        from harness.models import load_model
    if load_dataset is None:
        from harness.data import load_dataset

    from harness import distributed

    dinfo = distributed.current()
    result = base_result(cell)
    t_start = time.perf_counter()
    try:
        torch.manual_seed(cell.seed)
        np.random.seed(cell.seed)
        reason = _skip_reason(cell)
        if reason:
            result.update(status="skipped", error=reason)
            return result
        t0 = time.perf_counter()
        model = load_model(cell.model, weights=cell.weights, device=cell.device, precision=cell.precision,
                           amp=cell.amp, upsample=cell.protocol.get("upsample", "bilinear"),
                           runtime=cell.runtime, trust_remote_code=cell.trust_remote_code,
                           **cell.variant, **cell.model_options)
        result["timing"]["load_s"] = time.perf_counter() - t0
        result.update(family=model.family, weights=model.weights, params=model.params(),
                      input_size=list(model.input_size))
        result["memory_mib"]["weights"] = model.weight_bytes() / MIB
        from harness.reference import published

        ref = published(cell.model, cell.dataset, cell.protocol.get("mode", "whole"))
        if ref and model.weights.get("source") != "random":
            result["published"] = ref
        if getattr(model, "parity", None) is not None:
            result["parity"] = model.parity
        if getattr(model, "protocol_note", None) is not None:  # the runtime's own protocol (e.g. letterbox)
            result["protocol"] = {**cell.protocol, **model.protocol_note}
        dataset = load_dataset(cell.dataset, root=cell.dataset_root, split=cell.dataset_split,
                               limit=cell.dataset_limit, **cell.dataset_options)
        result["data"] = {"num_samples": len(dataset), "digest": dataset.digest(), "files": dataset.files(),
                          "skipped": []}
        result["class_names"] = list(dataset.class_names)
        if getattr(dataset, "palette", None) is not None:
            result["palette"] = np.asarray(dataset.palette).tolist()
        first = latency_inputs(model, dataset, cell.batch_size, count=1, policy=cell.measure["on_bad_sample"])[0]
        t0 = time.perf_counter()
        model.forward(first)
        lat._sync(model.device)
        result["timing"]["first_inference_ms"] = (time.perf_counter() - t0) * 1000.0

        random_weights = model.weights.get("source") == "random"
        parity = getattr(model, "parity", None)
        if random_weights:
            result["metrics_note"] = RANDOM_NOTE
        elif parity is not None and not parity.get("passed", True):
            result["metrics_note"] = "runtime parity check against PyTorch failed: accuracy not shown"
        elif cell.measure["accuracy"]:
            _check_label_spaces(model, dataset)
            share = None
            if dinfo.active:
                share = load_dataset(cell.dataset, root=cell.dataset_root, split=cell.dataset_split,
                                     limit=cell.dataset_limit, shard=(dinfo.rank, dinfo.world_size),
                                     **cell.dataset_options)
            evaluate_accuracy(model, dataset, cell, run_dir, result, share=share)
        else:
            result["metrics_note"] = "accuracy not requested (measure.accuracy: false)"
        if cell.measure["latency"] and dinfo.is_main:
            measure_latency(model, dataset, cell, result)
            if cell.measure["stages"]:
                measure_stages(model, dataset, cell, result)
        if cell.measure["flops"] and dinfo.is_main:
            gpu = torch.cuda.get_device_name(model.device) if model.device.type == "cuda" else None
            measure_flops(model, first, cell, result, gpu)
        result["status"] = "ok"
    except torch.OutOfMemoryError as e:
        result.update(status="oom", error=f"OutOfMemoryError: {str(e).splitlines()[0] if str(e) else 'out of memory'}")
    except UnsupportedError as e:  # a valid combination this model/runtime/device cannot run
        result.update(status="skipped", error=f"unsupported: {e}")
    except SegbenchError as e:
        result.update(status="error", error=f"{type(e).__name__}: {e}")
    except Exception as e:  # a failure of this cell must not lose what was measured
        tb = traceback.format_exc(limit=6)
        result.update(status="error", error=f"{type(e).__name__}: {e}\n{tb}")
    finally:
        result["memory_mib"]["host_peak_rss"] = mem.host_peak_rss_mib()
        result["timing"]["total_s"] = time.perf_counter() - t_start
        result["ended_at"] = _now()
    return result


class _QuietStream:
    """Standard error that never fails a measurement: writes after the reader went away are dropped."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except (BrokenPipeError, OSError, ValueError):
            return len(text)

    def flush(self):
        try:
            self._stream.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _die_with_parent() -> None:
    """Linux: ask for SIGKILL when the runner dies, so no orphan keeps measuring beside a resumed run."""
    import os
    import signal

    parent = os.environ.get("SEGBENCH_PARENT_PID")
    if not parent or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() != int(parent):  # the runner died before we asked
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    """Entry of the per-cell process: cell JSON on stdin, result to RUN_DIR/cells/<cell_id>.json."""
    faulthandler.enable()
    _die_with_parent()
    sys.stderr = _QuietStream(sys.stderr)
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m harness.worker RUN_DIR < cell.json", file=sys.stderr)
        return 2
    run_dir = Path(args[0])
    cell = Cell.from_dict(json.loads(sys.stdin.read()))
    result = sys.modules[__name__].run_cell(cell, run_dir)
    write_json_atomic(cell_path(run_dir, cell.cell_id), result)
    return 0

