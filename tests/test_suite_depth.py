"""Depth cells in suites, beside segmentation cells: which task a pair is, the pairs that are not
cells, the `depth:` section, loading by task through the runtimes, preflight, the CLI listings, a
mixed matrix measured in-process (precisions, batch sizes, LiteRT) and the report of a mixed run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tiny_depth_models import save_tiny_dpt_depth
from tiny_models import save_tiny_segformer

import harness
from harness.errors import ConfigError
from harness.suite import load_suite
from harness.tasks.assign import dataset_tasks, model_task

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    return {"depth": save_tiny_dpt_depth(tmp / "depth"), "seg": save_tiny_segformer(tmp / "seg", num_labels=4)}


def write(tmp_path: Path, data: dict, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def mixed(tiny, **extra) -> dict:
    return {"name": "mixed", "models": [{"name": str(tiny["seg"]), "label": "seg"},
                                        {"name": str(tiny["depth"]), "label": "depth"}],
            "datasets": [{"name": "synthetic-depth", "options": {"num_samples": 2, "image_size": [40, 56],
                                                                  "num_classes": 4}},
                         {"name": "synthetic-depth", "options": {"num_samples": 2, "image_size": [40, 56]}}],
            "measure": {"warmup": 1, "iters": 2, "samples": 1, "flops": False}, **extra}


def test_a_models_task_comes_from_its_entry_registry_or_config(tiny):
    assert model_task("dpt-large") == "segmentation" and model_task("dpt-large", "depth") == "depth"
    assert model_task("dpt-hybrid-midas") == model_task("Intel/dpt-large") == model_task("midas_v21_384.pt") == "depth"
    assert model_task(str(tiny["depth"])) == "depth" and model_task(str(tiny["seg"])) == "segmentation"
    assert model_task("someone/unknown") is None
    assert dataset_tasks("kitti-eigen") == ("depth",) and dataset_tasks("ade20k") == ("segmentation",)
    assert dataset_tasks("cityscapes-depth") == ("depth", "segmentation")
    assert dataset_tasks("cityscapes-depth", {"labels": False}) == ("depth",)
    assert dataset_tasks("nyu-depth-v2-labeled", {"class_mapping": "classMapping40.mat"}) == ("depth", "segmentation")


def test_pairs_a_dataset_cannot_score_are_not_cells(tmp_path, tiny, capsys):
    suite = load_suite(write(tmp_path, mixed(tiny)))
    cells = [(c.model_label, c.task, c.dataset_options.get("num_classes")) for c in suite.cells()]
    assert cells == [("seg", "segmentation", 4), ("depth", "depth", 4), ("depth", "depth", None)]
    (skip,) = suite.task_skips()
    assert skip["model"] == "seg" and skip["task"] == "segmentation"
    assert "scores depth only (its option 'num_classes' adds segmentation labels)" in skip["reason"]
    from harness.cli import main

    assert main(["run", str(tmp_path / "suite.yaml"), "--dry-run", "--json"]) == 0
    assert [c["task"] for c in json.loads(capsys.readouterr().out)] == ["segmentation", "depth", "depth"]
    assert main(["run", str(tmp_path / "suite.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr()
    assert "not a cell: seg x synthetic-depth: dataset 'synthetic-depth' scores depth only" in " ".join(out.out.split())
    only_seg = {**mixed(tiny), "models": [{"name": str(tiny["seg"])}], "datasets": ["kitti-eigen"]}
    with pytest.raises(ConfigError, match="no \\(model, dataset\\) pair can be scored: dataset 'kitti-eigen'"):
        load_suite(write(tmp_path, only_seg, "none.yaml"))


def test_depth_settings_are_validated_and_in_the_identity_only_when_set(tmp_path, tiny):
    plain = load_suite(write(tmp_path, mixed(tiny))).cells()
    assert all(c.task_options == {} for c in plain)
    assert "upsample" not in plain[1].protocol and plain[0].protocol["upsample"] == "bilinear"
    assert "task_options" not in plain[1].identity() and plain[1].identity()["task"] == "depth"
    assert "task" not in plain[0].identity()
    s = load_suite(write(tmp_path, mixed(tiny, depth={"alignment": "lstsq_disparity", "flip": True, "crop": None}),
                         "d.yaml")).cells()
    assert s[0].cell_id == plain[0].cell_id  # segmentation cells do not change
    assert s[1].task_options == {"alignment": "lstsq_disparity", "flip": True, "crop": None}
    assert s[1].cell_id != plain[1].cell_id and s[1].identity()["task_options"]["flip"] is True
    for bad, match in (({"alignment": "affine"}, "depth.alignment: 'affine' is not allowed; allowed: none, median"),
                       ({"crop": "nyu"}, "depth.crop: unknown crop 'nyu'"),
                       ({"flip": "yes"}, "depth.flip: expected true or false"),
                       ({"min_depth": 5, "max_depth": 1}, "min_depth 5 must be below max_depth 1"),
                       ({"predict_crop": "garg"}, "depth.predict_crop: 'garg' is not allowed"),
                       ({"silog": "eigen"}, "depth.silog: 'eigen' is not allowed; allowed: bts, half, both"),
                       ({"aligment": "none"}, "depth.aligment: unknown key \\(did you mean: alignment")):
        with pytest.raises(ConfigError, match=match) as e:
            load_suite(write(tmp_path, mixed(tiny, depth=bad), "bad.yaml"))
        assert "bad.yaml" in str(e.value)


def test_model_entries_name_their_task(tmp_path, tiny):
    suite = {**mixed(tiny), "models": [{"name": "dpt-large", "task": "depth", "weights": "random"},
                                       {"name": "pydnet"}]}
    cells = {c.model: (c.task, c.runtime) for c in load_suite(write(tmp_path, suite)).cells()}
    assert cells == {"dpt-large": ("depth", "pytorch"), "pydnet": ("depth", "litert")}
    with pytest.raises(ConfigError, match="models\\[0\\].task: 'detection' is not a task"):
        load_suite(write(tmp_path, {**suite, "models": [{"name": "x/y", "task": "detection"}]}))
    with pytest.raises(ConfigError, match="models\\[0\\].name: unknown depth model 'midas-v3'"):
        load_suite(write(tmp_path, {**suite, "models": [{"name": "midas-v3", "task": "depth"}]}))


def test_load_model_by_task_through_the_runtimes(tiny):
    from PIL import Image

    model = harness.load_model(str(tiny["depth"]), task="depth")
    assert model.task == "depth" and model.depth_kind == "disparity" and model.protocol_note == {"upsample": "bicubic"}
    ims = [Image.new("RGB", (56, 40), (90, 20, 200)), Image.new("RGB", (30, 70), (10, 120, 40))]
    preds = model.predict(ims)
    assert [p.shape for p in preds] == [(40, 56), (70, 30)] and all(p.dtype == np.float32 for p in preds)
    with pytest.raises(ConfigError, match="task 'pose' is not one of segmentation, depth"):
        harness.load_model(str(tiny["depth"]), task="pose")


def test_preflight_and_listings_know_depth_models(tmp_path, tiny, capsys):
    from harness import preflight
    from harness.data import dataset_infos
    from harness.models import model_infos

    suite = {**mixed(tiny), "models": [{"name": "midas-v21"}, {"name": "dpt-hybrid-midas"}],
             "datasets": [{"name": "synthetic-depth"}]}
    problems = preflight.check(load_suite(write(tmp_path, suite)).cells())
    reasons = [r for rs in problems.values() for r in rs]
    assert any("midas-v21 has no hub checkpoint: set `weights: /path/to/midas_v21-f6b98070.pt`" in r for r in reasons)
    assert any("Intel/dpt-hybrid-midas is not in the Hugging Face cache" in r for r in reasons)
    rows = {r["name"]: r for r in model_infos()}
    assert rows["dpt-large"]["task"] == "segmentation" and rows["dpt-large-midas"]["task"] == "depth"
    assert rows["pydnet-plusplus-litert"]["runtime"] == "litert" and rows["midas-v21"]["depth_kind"] == "disparity"
    ds = {r["name"]: r for r in dataset_infos()}
    assert ds["kitti-eigen"]["tasks"] == "depth" and ds["cityscapes-depth"]["tasks"].startswith("depth+segmentation")
    from harness.cli import main

    assert main(["models", "--json"]) == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["midas-v21"]["task"] == "depth" and listed["midas-v21"]["depth_kind"] == "disparity"
    assert main(["models"]) == 0
    header = capsys.readouterr().out.splitlines()[2].split()
    assert header[:2] == ["name", "task"]


def test_eval_scores_a_depth_model(tiny, capsys):
    from harness.cli import main

    assert main(["eval", str(tiny["depth"]), "synthetic-depth", "--limit", "1", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert metrics["num_images"] == 1 and metrics["protocol"]["alignment"] == "lstsq_disparity"
    assert main(["eval", str(tiny["seg"]), "kitti-eigen"]) == 2
    assert "scores depth only" in capsys.readouterr().err


def test_a_mixed_matrix_measures_both_tasks_in_process(tmp_path, tiny):
    """Segmentation and depth cells over the same images; bf16 autocast and a batch of 2 for depth too."""
    from harness.cell import run_cell

    suite = mixed(tiny, precisions=["fp32", "bf16"], batch_sizes=[1, 2],
                  include=[{"precision": "fp32", "batch_size": 1}, {"task": "depth", "dataset": "synthetic-depth"}])
    suite["datasets"] = suite["datasets"][:1]
    cells = load_suite(write(tmp_path, suite)).cells()
    assert sorted((c.task, c.precision, c.batch_size) for c in cells) == [
        ("depth", "bf16", 1), ("depth", "bf16", 2), ("depth", "fp32", 1), ("depth", "fp32", 2),
        ("segmentation", "fp32", 1)]
    results = {(c.task, c.precision, c.batch_size): run_cell(c, tmp_path / "run") for c in cells}
    for key, r in results.items():
        assert r.status == "ok", (key, r.error)
        assert r.latency.forward_ms["n"] >= 2 and r.latency.stages_ms["postprocess"]["n"] >= 1, key
    seg, dep = results[("segmentation", "fp32", 1)], results[("depth", "fp32", 1)]
    assert seg.provenance.data["digest"] == dep.provenance.data["digest"]  # the same files
    assert "mIoU" in seg.accuracy.metrics and "abs_rel" in dep.accuracy.metrics
    assert dep.identity.protocol == {"mode": "whole", "upsample": "bicubic"}
    assert dep.provenance.data["depth"]["max_depth"] == 10.0 and dep.accuracy.metrics["protocol"]["alignment"] == \
        "lstsq_disparity"
    b2 = results[("depth", "fp32", 2)].accuracy.metrics
    assert b2["abs_rel"] == pytest.approx(dep.accuracy.metrics["abs_rel"], rel=1e-5)  # batching changes nothing


@pytest.mark.skipif(not (SHARED / "weights" / "pydnet_plusplus_depth.tflite").is_file(),
                    reason="../shared/weights/pydnet_plusplus_depth.tflite is not present")
def test_litert_depth_cell_with_flip(tmp_path):
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    from harness.cell import run_cell

    suite = {"name": "lite", "models": ["pydnet-plusplus-litert"],
             "datasets": [{"name": "synthetic-depth", "options": {"num_samples": 1, "image_size": [48, 64]}}],
             "precisions": ["fp32", "bf16"], "depth": {"flip": True},
             "measure": {"warmup": 1, "iters": 2, "samples": 0, "stages": True}}
    fp32, bf16 = (run_cell(c, tmp_path / "run") for c in load_suite(write(tmp_path, suite)).cells())
    assert fp32.status == "ok", fp32.error
    assert fp32.accuracy.metrics["protocol"]["flip"] is True and fp32.accuracy.metrics["protocol"]["alignment"] == "lstsq"
    assert fp32.latency.stages_ms["end_to_end"]["n"] >= 1 and fp32.identity.runtime == "litert"
    assert bf16.status == "skipped" and "precision 'bf16' does not apply" in bf16.error


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_a_mixed_run_under_torchrun_reports_each_tasks_columns_and_panels(tmp_path, tiny):
    """A segmentation and a depth cell over the same 3 images, run by torchrun on 2 ranks (the data split
    3 = 2 + 1, the depth state all-reduced): the depth metrics equal one process's, and the report shows
    each task's columns, charts and panels."""
    from harness.cell import run_cell
    from harness.report.html import render
    from harness.results import load_run

    suite = mixed(tiny)
    suite["datasets"] = [{"name": "synthetic-depth", "options": {"num_samples": 3, "image_size": [40, 56],
                                                                 "num_classes": 4}}]
    path = write(tmp_path, suite)
    dist = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "harness", "run", str(path), "--out", str(tmp_path / "results")],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert dist.returncode == 0, dist.stderr[-3000:]
    run = load_run(next((tmp_path / "results").iterdir()))
    cells = {c.identity.task: c for c in run.cells.values()}
    assert set(cells) == {"depth", "segmentation"} and cells["depth"].environment.distributed["world_size"] == 2
    single = run_cell(next(c for c in load_suite(path).cells() if c.task == "depth"), tmp_path / "single")
    # the ranks run one intra-op thread each: float32 resizes may differ in the last bit from this process's
    for k in ("abs_rel", "rmse", "d1", "silog"):
        assert cells["depth"].accuracy.metrics[k] == pytest.approx(single.accuracy.metrics[k], rel=1e-6), k
    for k in ("num_images", "num_pixels", "num_empty"):
        assert cells["depth"].accuracy.metrics[k] == single.accuracy.metrics[k] == (3 if k == "num_images" else
                                                                                     single.accuracy.metrics[k])
    page = render([run], "")
    assert "sample-warning" not in page
    for text in ("AbsRel", "δ1 (%)", "mIoU (%)", "Accuracy vs latency (depth)", "Accuracy vs latency (segmentation)",
                 "Depth: AbsRel by model", "<h2 id=depth>Depth</h2>", "lstsq_disparity", "ground truth depth",
                 "· |p−g|/g"):
        assert text in page, text
    assert ">n/a<" in page  # a depth row has no mIoU, a segmentation row no AbsRel
    from harness.results import to_dataframe

    df = to_dataframe([run])
    assert set(df["task"]) == {"segmentation", "depth"} and df.loc[df["task"] == "depth", "abs_rel"].notna().all()


def test_compare_judges_depth_cells_by_their_own_checks(tmp_path):
    """The committed depth baseline against itself (no finding) and against a copy with a worse AbsRel
    and δ1 (both regressions, named by their columns)."""
    import shutil

    from harness.report.compare import compare_runs
    from harness.results import load_run

    base = ROOT / "results" / "baselines" / "depth-real-samples-cpu"
    if not base.is_dir():
        pytest.skip("the committed depth baseline is not present")
    cur = tmp_path / "current"
    shutil.copytree(base, cur)
    same = compare_runs(load_run(base), load_run(cur))
    assert same.compared == 3 and not [f for f in same.findings if f.regression]
    path = sorted((cur / "cells").glob("*.json"))[0]
    data = json.loads(path.read_text())
    data["accuracy"]["metrics"]["abs_rel"] *= 1.05
    data["accuracy"]["metrics"]["d1"] -= 0.01
    path.write_text(json.dumps(data))
    worse = compare_runs(load_run(base), load_run(cur))
    failed = {f.metric for f in worse.findings if f.regression}
    assert failed == {"abs_rel", "d1"}


def test_nyu_labeled_gives_both_tasks_metrics_on_the_same_images(tmp_path, tiny):
    """NYU-Depth-v2 labeled (.mat layout with the 40-class mapping): a segmentation cell (a 40-class model)
    and a depth cell read the same test images; the segmentation figures equal numpy over its predictions."""
    pytest.importorskip("h5py", reason="the labeled .mat needs h5py (pip install 'segbench[depth]')")
    from depth_layouts import write_nyu_mat

    from harness.cell import run_cell

    write_nyu_mat(tmp_path / "nyu")
    seg40 = save_tiny_segformer(tmp_path / "seg40", num_labels=40)
    options = {"class_mapping": "classMapping40.mat"}
    suite = {"name": "nyu", "models": [str(seg40), str(tiny["depth"])],
             "datasets": [{"name": "nyu-depth-v2-labeled", "root": str(tmp_path / "nyu"), "split": "test",
                           "options": options}],
             "depth": {"crop": None},  # the written maps are 48x64: no room for the Eigen crop
             "measure": {"latency": False, "flops": False, "stages": False, "samples": 0}}
    seg_cell, depth_cell = load_suite(write(tmp_path, suite)).cells()
    assert (seg_cell.task, depth_cell.task) == ("segmentation", "depth")
    seg, dep = run_cell(seg_cell, tmp_path / "run"), run_cell(depth_cell, tmp_path / "run")
    assert seg.status == dep.status == "ok", (seg.error, dep.error)
    assert seg.provenance.data["files"] == dep.provenance.data["files"]
    assert seg.accuracy.metrics["num_images"] == dep.accuracy.metrics["num_images"] == 2
    ds = harness.load_dataset("nyu-depth-v2-labeled", root=str(tmp_path / "nyu"), split="test", **options)
    model = harness.load_model(str(seg40))
    samples = [ds.load(i) for i in range(len(ds))]
    pred = np.concatenate([model.predict([s.image])[0].ravel() for s in samples])
    label = np.concatenate([s.label.ravel() for s in samples])
    keep = label != 255
    assert seg.accuracy.metrics["aAcc"] == pytest.approx(float(np.mean(pred[keep] == label[keep])), abs=1e-12)
    assert dep.provenance.data["depth"]["default_crop"] == "eigen" and dep.accuracy.metrics["protocol"]["crop"] is None
    assert dep.accuracy.metrics["protocol"]["sources"]["crop"] == "suite"
