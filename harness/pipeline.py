"""How the accuracy loop is laid out on the machine: data workers, forward, postprocess and metric.

The loop is data wait -> forward -> postprocess -> metric update, per batch. On the CPU the
forward's intra-op threads own the cores, and anything else running at the same time costs the
forward more than its own CPU time (an OpenMP team waits at every barrier for a descheduled
thread). :func:`plan_for` chooses, from the machine and the cell, where each part runs;
the chosen :class:`PipelinePlan` is recorded in the cell (``timing.accuracy_pipeline``):

- **The heap keeps freed memory** on a CPU cell (``measure.heap: retained``, glibc only): PyTorch's
  CPU allocator has no cache, and glibc's malloc maps every block over 32 MiB afresh and unmaps it
  on free, so each large activation of every forward is page-faulted in again (a third of
  SegFormer-B0's forward time at batch 4 was kernel time, docs/PERFORMANCE.md). :func:`set_heap`
  turns mapping off and trimming down for the cell's process, for its accuracy loop and its latency
  alike; ``system`` keeps the C library's default.
- **Workers start from a fork server** (``forkserver``, where the platform has it), not by
  forking the evaluating process. A forked worker shares every page of the parent's heap
  copy-on-write, so each page the forward writes afterwards faults and is copied: on a 2-core box
  that made the forward 25-40% slower inside the loop than alone (docs/PERFORMANCE.md). The server
  is started by :func:`start_worker_server` before the model is loaded, with the data modules
  imported once, so a worker starts in milliseconds.
- **Workers run at low priority with one thread** on a CPU cell (``nice`` 19, one torch thread):
  decoding fills the gaps the forward leaves instead of taking its cores. On another device the
  workers keep normal priority: there decoding is usually what the device waits for.
- **The postprocess leaves the critical path when a core is free**: when the cores this process
  may use exceed the forward's threads, the exact resize + argmax, the metric update and the
  saved samples of batch k run in one background thread (one torch thread) while the forward of
  batch k+1 runs. Otherwise they run inline, after each forward. The label maps are the same
  either way (the postprocess is exact at any thread count; tests/test_pipeline.py).

:class:`StageClock` charges wall and CPU seconds to each stage. Inline, a stage's CPU time is the
process's CPU time during it (every thread, the OpenMP team included). Overlapped, the background
stages are timed on their own thread's CPU clock (exact: they run on one thread), waiting for data
on the main thread's, and the forward gets the rest of the loop's process CPU time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import platform
import queue
import threading
import time
from dataclasses import asdict, dataclass

import torch

from harness.measure.latency import _sync as sync

WORKER_NICE = 19  # niceness of a CPU cell's data workers (0 = normal, 19 = lowest)
WORKER_THREADS = 1  # torch intra-op threads in each data worker
POSTPROCESS_THREADS = 1  # torch intra-op threads of the background postprocess
QUEUE_DEPTH = 1  # forwarded batches waiting for the background postprocess
# imported once by the fork server, so that each worker forked from it starts warm
SERVER_PRELOAD = ["torch", "numpy", "PIL.Image", "harness.data.loader", "harness.models.preprocess"]
STAGES = ("data_wait", "forward", "postprocess", "metric")
# glibc mallopt parameters (malloc.h) and the values set for a retained heap
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
RETAINED = {M_MMAP_MAX: 0, M_TRIM_THRESHOLD: 2**31 - 1}  # no mmap per block; never give the top back


def set_heap(policy: str, device: torch.device) -> str:
    """Apply ``measure.heap`` to this process; returns what holds (recorded as ``environment.heap``):
    ``retained``, ``system`` or ``system (not glibc)`` where the C library has no ``mallopt``.

    ``retained`` applies to CPU cells only (on another device the host heap is not on the timed path)
    and lasts for the process: a cell's process measures accuracy and latency under the same heap."""
    if policy != "retained" or device.type != "cpu":
        return "system"
    if platform.libc_ver()[0] != "glibc":
        return "system (not glibc)"
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    for param, value in RETAINED.items():
        if libc.mallopt(param, value) != 1:
            return "system"
    return "retained"


@dataclass
class PipelinePlan:
    """Where the accuracy loop's parts run (recorded in ``timing.accuracy_pipeline``).

    ``cores``: CPU cores this process may run on; ``forward_threads``: torch intra-op threads of
    the forward (the cell's); ``workers``: DataLoader worker processes; ``worker_start``: their
    multiprocessing start method (None without workers); ``worker_nice``, ``worker_threads``: their
    priority and torch threads; ``prefetch_batches``: batches each worker prepares ahead;
    ``postprocess``: ``overlapped`` (background thread) or ``inline``; ``postprocess_threads``:
    its torch threads.
    """

    cores: int
    forward_threads: int
    workers: int
    worker_start: str | None
    worker_nice: int | None
    worker_threads: int | None
    prefetch_batches: int | None
    postprocess: str
    postprocess_threads: int

    def as_dict(self) -> dict:
        return asdict(self)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_start_method() -> str:
    """``forkserver`` where the platform has it, else the platform's default start method."""
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else methods[0]


def plan_for(device: torch.device, num_workers: int, whole_batches: bool) -> PipelinePlan:
    """The layout for a cell on ``device`` with ``num_workers`` data workers; ``whole_batches`` is
    False when a prediction protocol (sliding window, TTA) postprocesses inside its own forward."""
    cores, threads = available_cores(), torch.get_num_threads()
    cpu = device.type == "cpu"
    overlap = cpu and whole_batches and cores > threads
    return PipelinePlan(
        cores=cores, forward_threads=threads, workers=num_workers,
        worker_start=worker_start_method() if num_workers else None,
        worker_nice=(WORKER_NICE if cpu else 0) if num_workers else None,
        worker_threads=WORKER_THREADS if num_workers else None,
        prefetch_batches=2 if num_workers else None,  # torch's default prefetch_factor
        postprocess="overlapped" if overlap else "inline",
        postprocess_threads=POSTPROCESS_THREADS if overlap else threads)


def start_worker_server() -> None:
    """Start the fork server data workers come from (returns at once; its imports run beside the
    caller's work, e.g. loading the model). A no-op where the platform has no fork server."""
    if worker_start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(SERVER_PRELOAD)
    forkserver.ensure_running()


def worker_context(plan: PipelinePlan):
    """The multiprocessing context the plan's workers start in (None: DataLoader's default)."""
    if plan.worker_start is None:
        return None
    if plan.worker_start == "forkserver":
        start_worker_server()
    return multiprocessing.get_context(plan.worker_start)


class WorkerInit:
    """A DataLoader ``worker_init_fn`` that sets the worker's priority and torch threads (a class, so
    that workers started by a fork server can receive it pickled)."""

    def __init__(self, nice: int, threads: int):
        self.nice, self.threads = nice, threads

    def __call__(self, worker_id: int) -> None:
        torch.set_num_threads(self.threads)
        if self.nice:
            try:
                os.nice(self.nice)
            except OSError:  # not permitted here: run at normal priority
                pass


class StageClock:
    """Wall and CPU seconds per stage of the accuracy loop (``wall``, ``cpu``: stage -> s).

    On CUDA a stage is synchronised before it is read, so time is charged where it is spent.
    ``cpu["workers"]`` is the data workers' CPU time (decode + preprocess), reported by the workers.
    """

    def __init__(self, device: torch.device, overlapped: bool = False):
        self.device, self.overlapped = device, overlapped
        self.wall: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.cpu: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self._lock = threading.Lock()
        self._start_cpu = time.process_time()

    def _main_cpu(self) -> float:
        return time.thread_time() if self.overlapped else time.process_time()

    def add(self, stage: str, wall: float, cpu: float) -> None:
        with self._lock:
            self.wall[stage] = self.wall.get(stage, 0.0) + wall
            self.cpu[stage] = self.cpu.get(stage, 0.0) + cpu

    def run(self, stage: str, fn, *args, background: bool = False):
        """``fn(*args)``, its time charged to ``stage``; ``background``: on the lane's thread."""
        clock = time.thread_time if background else self._main_cpu
        t0, c0 = time.perf_counter(), clock()
        out = fn(*args)
        sync(self.device)
        self.add(stage, time.perf_counter() - t0, clock() - c0)
        return out

    def wait(self, iterable):
        """Iterate ``iterable``, charging the time spent waiting for each item to ``data_wait``."""
        it = iter(iterable)
        while True:
            t0, c0 = time.perf_counter(), self._main_cpu()
            try:
                item = next(it)
            except StopIteration:
                return
            self.add("data_wait", time.perf_counter() - t0, self._main_cpu() - c0)
            yield item

    def finish(self) -> None:
        """Overlapped: charge the forward with the loop's process CPU time the other stages did not use."""
        if self.overlapped:
            total = time.process_time() - self._start_cpu
            others = sum(v for k, v in self.cpu.items() if k not in ("forward", "workers"))
            self.cpu["forward"] = max(0.0, total - others)


class Lane:
    """Runs per-batch work either inline or in one background thread, in submission order.

    ``submit(fn, *args)`` returns at once when overlapped (blocking only while ``QUEUE_DEPTH``
    batches already wait); ``close()`` waits for the work and re-raises the first error the
    background work raised (later submissions are dropped once one has failed).
    """

    def __init__(self, overlapped: bool, threads: int):
        self.overlapped, self.threads = overlapped, threads
        self.error: BaseException | None = None
        self.wait_s = 0.0  # seconds the main thread waited for a free place in the queue or at close
        if overlapped:
            self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
            self._thread = threading.Thread(target=self._serve, name="segbench-postprocess", daemon=True)
            self._thread.start()

    def _serve(self) -> None:
        torch.set_num_threads(self.threads)
        while (item := self._queue.get()) is not None:
            if self.error is None:
                fn, args = item
                try:
                    with torch.inference_mode():
                        fn(*args)
                except BaseException as e:  # noqa: BLE001 - re-raised on the main thread by close()
                    self.error = e

    def submit(self, fn, *args) -> None:
        if not self.overlapped:
            fn(*args)
            return
        if self.error is not None:
            raise self.error
        t0 = time.perf_counter()
        self._queue.put((fn, args))
        self.wait_s += time.perf_counter() - t0

    def close(self, forward_threads: int | None = None) -> None:
        """Wait for the background work; restore the process's torch thread count."""
        if not self.overlapped:
            return
        t0 = time.perf_counter()
        self._queue.put(None)
        self._thread.join()
        self.wait_s += time.perf_counter() - t0
        if forward_threads is not None:  # the lane's set_num_threads also set torch's process default
            torch.set_num_threads(forward_threads)
        if self.error is not None:
            raise self.error
