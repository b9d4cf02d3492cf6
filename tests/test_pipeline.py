"""The accuracy loop's layout (harness.pipeline): the plan chosen from the machine, the background
postprocess (same metrics as inline, errors re-raised), CPU time per stage, the data workers'
start method, priority and threads, and the retained heap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from layouts import write_ade20k
from tiny_models import save_tiny_segformer

import harness
from harness import pipeline, stages
from harness.data.loader import make_loader
from harness.launchers import Placement
from harness.suite import DEFAULT_MEASURE, DEFAULT_PROTOCOL, Cell
from harness.tasks import get_task, task_module


def test_plan_follows_cores_threads_and_device(monkeypatch):
    monkeypatch.setattr(pipeline, "available_cores", lambda: 4)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        spare = pipeline.plan_for(torch.device("cpu"), num_workers=2, whole_batches=True)
        assert (spare.postprocess, spare.postprocess_threads, spare.forward_threads) == ("overlapped", 1, 2)
        assert spare.worker_nice == pipeline.WORKER_NICE and spare.worker_threads == 1
        assert spare.worker_start == pipeline.worker_start_method()
        torch.set_num_threads(4)  # the forward owns every core: the postprocess stays inline
        full = pipeline.plan_for(torch.device("cpu"), num_workers=0, whole_batches=True)
        assert (full.postprocess, full.postprocess_threads, full.worker_start, full.worker_nice) == ("inline", 4, None, None)
        # a protocol postprocesses inside its forward; another device decodes at normal priority
        assert pipeline.plan_for(torch.device("cpu"), 0, whole_batches=False).postprocess == "inline"
        gpu = pipeline.plan_for(torch.device("cuda"), 1, whole_batches=True)
        assert gpu.postprocess == "inline" and gpu.worker_nice == 0
    finally:
        torch.set_num_threads(threads)


def _cell(model_dir, root, workers: int) -> Cell:
    return Cell(model=str(model_dir), weights=None, dataset="ade20k", dataset_root=str(root),
                dataset_split="validation", dataset_limit=None, dataset_options={}, device="cpu", precision="fp32",
                amp="autocast", batch_size=2, runtime="pytorch", variant={}, protocol=dict(DEFAULT_PROTOCOL),
                measure=dict(DEFAULT_MEASURE, num_workers=workers, samples=2))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    return save_tiny_segformer(tmp / "m"), write_ade20k(tmp / "data", n=5), tmp


def _run(tiny, monkeypatch, spare_cores: int, workers: int = 0):
    model_dir, root, tmp = tiny
    model, dataset = harness.load_model(str(model_dir)), harness.load_dataset("ade20k", root=str(root))
    monkeypatch.setattr(pipeline, "available_cores", lambda: torch.get_num_threads() + spare_cores)
    return stages.accuracy(model, dataset, dataset, _cell(model_dir, root, workers), tmp / f"run{spare_cores}",
                           get_task("segmentation"), task_module("segmentation"), Placement())


def test_background_postprocess_gives_the_inline_metrics(tiny, monkeypatch):
    threads = torch.get_num_threads()
    inline = _run(tiny, monkeypatch, spare_cores=0)
    overlapped = _run(tiny, monkeypatch, spare_cores=1)
    assert torch.get_num_threads() == threads  # the lane's own thread count did not leak
    assert (inline.pipeline["postprocess"], overlapped.pipeline["postprocess"]) == ("inline", "overlapped")
    assert json.dumps(overlapped.accuracy.metrics, sort_keys=True) == json.dumps(inline.accuracy.metrics,
                                                                                  sort_keys=True)
    assert overlapped.num_evaluated == inline.num_evaluated == 5 and len(overlapped.samples) == 2
    assert set(inline.breakdown_s) == set(pipeline.STAGES)
    assert set(overlapped.breakdown_s) == {*pipeline.STAGES, "postprocess_wait"}
    for out in (inline, overlapped):
        assert set(out.cpu_s) == set(pipeline.STAGES) and all(v >= 0 for v in out.cpu_s.values())
        assert out.cpu_s["forward"] > 0 and out.cpu_s["postprocess"] > 0


def test_background_error_is_raised_not_lost(tiny, monkeypatch):
    from harness.metrics import SegmentationMetrics

    def broken(self, preds, targets):
        raise ValueError("metric update failed on purpose")

    monkeypatch.setattr(SegmentationMetrics, "update", broken)
    with pytest.raises(ValueError, match="on purpose"):
        _run(tiny, monkeypatch, spare_cores=1)
    assert all(t.name != "segbench-postprocess" for t in __import__("threading").enumerate())


def test_lane_runs_in_order_and_stops_after_an_error():
    seen = []
    lane = pipeline.Lane(overlapped=True, threads=1)
    for i in range(5):
        lane.submit(seen.append, i)
    lane.close()
    assert seen == list(range(5))

    lane = pipeline.Lane(overlapped=True, threads=1)
    lane.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        for i in range(50):  # raised at a later submit or at close, never swallowed
            lane.submit(seen.append, i)
        lane.close()


class NiceProbe:
    """A dataset whose samples report the worker's niceness and torch threads (picklable: module level)."""

    unpaired: list = []

    def __len__(self) -> int:
        return 2

    def sample_id(self, i: int) -> str:
        return str(i)

    def load(self, i: int):
        import numpy as np
        from PIL import Image

        from harness.data.base import Sample

        return Sample(id=f"{os.nice(0)}:{torch.get_num_threads()}:{os.getpid()}", image=Image.new("RGB", (4, 4)),
                      label=np.zeros((4, 4), dtype=np.int64))


def test_workers_start_from_the_fork_server_at_low_priority_with_one_thread():
    plan = pipeline.plan_for(torch.device("cpu"), num_workers=1, whole_batches=True)
    assert plan.worker_start == "forkserver"  # Linux
    ids = [sid for batch in make_loader(NiceProbe(), batch_size=2, num_workers=1, plan=plan) for sid in batch.ids]
    nice, threads, pid = ids[0].split(":")
    assert int(nice) == min(19, os.nice(0) + pipeline.WORKER_NICE) and int(threads) == 1
    assert int(pid) != os.getpid()
    # a DataError raised in a fork-server worker still names its file (tests/test_data_loader.py covers fork)


def test_retained_heap_keeps_a_freed_large_tensor():
    """A 64 MiB tensor written and freed: the system heap unmaps it at once (the next one is page-faulted
    in afresh), a retained heap keeps the memory for the next allocation. Resident memory shows which.
    In a subprocess, the system heap first: the policy lasts for the process."""
    code = textwrap.dedent("""
        import torch
        from harness.pipeline import set_heap
        def kept_mib():
            rss = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
            before = rss()
            x = torch.ones(16 * 2**20)  # 64 MiB, every page written
            del x
            return rss() - before
        print(kept_mib(), set_heap("retained", torch.device("cpu")), kept_mib())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    system, held, retained = out.stdout.split()
    assert held == "retained" and float(system) < 4 and float(retained) > 60, out.stdout


def test_heap_policy_applies_to_cpu_cells_only():
    assert pipeline.set_heap("system", torch.device("cpu")) == "system"
    assert pipeline.set_heap("retained", torch.device("cuda")) == "system"


def test_a_cell_written_before_the_heap_setting_resumes_with_its_default():
    spec = _cell("m", "root", workers=0).to_dict()
    del spec["measure"]["heap"]
    assert Cell.from_dict(spec).measure["heap"] == DEFAULT_MEASURE["heap"] == "retained"
