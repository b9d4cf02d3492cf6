"""The depth task's measuring functions: protocol resolution, the engine against float64 references
written here (with the MiDaS / DPT disparity alignment in closed form), reduction over processes,
flip and KITTI kb-crop prediction, dataset descriptions, published figures and the sample pictures."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from depth_layouts import write_kitti
from depth_reference import reference, synthetic_pair
from PIL import Image
from tiny_depth_models import save_tiny_dpt_depth

import harness
from harness.errors import ConfigError, UnsupportedError
from harness.tasks import depth as task
from harness.tasks.depth_samples import NO_DEPTH, aligned_prediction, depth_colors, error_colors


def fake_model(kind: str = "disparity", space: str = "disparity", name: str = "m"):
    return SimpleNamespace(name=name, depth_kind=kind, align_space=space, device=torch.device("cpu"), task="depth",
                           weights={"source": "file"}, describe=lambda: {"depth_kind": kind})


def fake_dataset(lo=1e-3, hi=10.0, crop="eigen", name="nyu-depth-v2"):
    return SimpleNamespace(name=name, min_depth=lo, max_depth=hi, default_crop=crop, task="depth")


def cell(options=None, protocol=None, model="m", weights=None, dataset="nyu-depth-v2"):
    return SimpleNamespace(task_options=options or {}, protocol=protocol or {"mode": "whole"}, model=model,
                           weights=weights, dataset=dataset, seed=0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return harness.load_model(str(save_tiny_dpt_depth(tmp_path_factory.mktemp("tiny") / "dpt")), task="depth")


def test_protocol_comes_from_dataset_and_model_unless_the_suite_says_otherwise():
    p = task.resolve_protocol({}, fake_model(), fake_dataset())
    assert (p["min_depth"], p["max_depth"], p["crop"], p["alignment"]) == (1e-3, 10.0, "eigen", "lstsq_disparity")
    assert p["sources"]["crop"] == "dataset" and p["sources"]["alignment"].startswith("model (disparity")
    assert task.resolve_protocol({}, fake_model("metric", "none"), fake_dataset())["alignment"] == "none"
    assert task.resolve_protocol({}, fake_model("relative", "depth"), fake_dataset())["alignment"] == "lstsq"
    q = task.resolve_protocol({"crop": None, "max_depth": 5.0, "alignment": "median"}, fake_model("relative", "depth"),
                              fake_dataset())
    assert (q["crop"], q["max_depth"], q["alignment"], q["sources"]["crop"]) == (None, 5.0, "median", "suite")
    with pytest.raises(ConfigError, match="'none' does not suit model 'm'.*disparity.*use lstsq_disparity"):
        task.resolve_protocol({"alignment": "none"}, fake_model(), fake_dataset())
    with pytest.raises(ConfigError, match="use median or lstsq"):
        task.resolve_protocol({"alignment": "lstsq_disparity"}, fake_model("relative", "depth"), fake_dataset())


def disparity_aligned(pred, gt, valid, max_depth):
    """MiDaS / DPT alignment written from its description: least squares of [pred, 1] to 1/gt on the
    evaluated pixels (np.linalg.lstsq, float64), disparity clamped to >= 1/max_depth, inverted."""
    a = np.stack([pred[valid].astype(np.float64), np.ones(valid.sum())], axis=1)
    (s, t), *_ = np.linalg.lstsq(a, 1.0 / gt[valid].astype(np.float64), rcond=None)
    return 1.0 / np.maximum(s * pred.astype(np.float64) + t, 1.0 / max_depth)


def test_engine_equals_a_float64_reference_with_disparity_alignment():
    rng = np.random.default_rng(3)
    gts, preds = [], []
    for _ in range(3):
        _, gt = synthetic_pair(rng, (480, 640))
        preds.append((2.0 / np.where(gt > 0, gt, 5.0) + 0.1 + rng.normal(0, 0.01, gt.shape)).astype(np.float32))
        gts.append(gt)
    engine = task.make_engine(fake_model(), fake_dataset(), cell=cell())
    engine.update([torch.from_numpy(p) for p in preds], gts)
    got = engine.compute()
    box = (45, 471, 41, 601)
    aligned = []
    for p, g in zip(preds, gts, strict=True):
        valid = np.zeros(g.shape, dtype=bool)
        valid[45:471, 41:601] = True
        valid &= (g > 1e-3) & (g < 10.0)
        aligned.append(disparity_aligned(p, g, valid, 10.0))
    ref = reference(aligned, gts, 1e-3, 10.0, box)
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, rel=2e-5), k
    pooled = reference(aligned, gts, 1e-3, 10.0, box, reduction="pixel")
    assert got["pooled"]["abs_rel"] == pytest.approx(pooled["abs_rel"], rel=2e-5)
    assert got["num_images"] == 3 and got["protocol"]["alignment"] == "lstsq_disparity"
    assert got["protocol"]["crop"] == "eigen" and got["protocol"]["model_output"] == {"depth_kind": "disparity"}


def test_silog_setting_keeps_the_named_forms_only():
    rng = np.random.default_rng(0)
    pred, gt = synthetic_pair(rng, (2, 32, 48))
    for form, kept, gone in (("bts", "silog", "silog_half"), ("half", "silog_half", "silog")):
        e = task.make_engine(fake_model("metric", "none"), fake_dataset(crop=None), cell=cell({"silog": form}))
        e.update(list(torch.from_numpy(pred)), list(gt))
        out = e.compute()
        assert kept in out and gone not in out and gone not in out["pooled"] and gone not in out["protocol"]
        assert out[kept] == pytest.approx(reference(pred, gt, 1e-3, 10.0)[kept], rel=1e-5)


class TwoRanks:
    """A placement whose sum adds the other rank's state (as all_reduce would)."""

    world_size, rank, is_main = 2, 0, True

    def __init__(self, other):
        self.other = other

    def sum(self, tensor):
        return tensor + self.other.metrics.state_tensor()


def test_reduce_sums_the_state_of_every_rank():
    rng = np.random.default_rng(1)
    pred, gt = synthetic_pair(rng, (4, 40, 56))
    whole, a, b = (task.make_engine(fake_model("metric", "none"), fake_dataset(crop=None), cell=cell())
                   for _ in range(3))
    whole.update(list(torch.from_numpy(pred)), list(gt))
    a.update(list(torch.from_numpy(pred[:1])), list(gt[:1]))
    b.update(list(torch.from_numpy(pred[1:])), list(gt[1:]))
    a.reduce(TwoRanks(b))
    for k in ("abs_rel", "rmse", "d1", "num_images", "num_pixels"):
        assert a.compute()[k] == pytest.approx(whole.compute()[k], rel=1e-12), k
    single = SimpleNamespace(world_size=1)
    b.reduce(single)  # one process: unchanged
    assert b.compute()["num_images"] == 3


def test_flip_averages_the_mirrored_prediction(tiny):
    im = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8))
    got = task.predict_with_protocol(tiny, im, {"mode": "whole", "flip": True})
    plain = tiny.predict([im])[0]
    mirrored = tiny.predict([im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])[0][:, ::-1]
    scale = np.abs(plain).max()  # a random-weight head: tiny values; compare relative to them
    assert np.allclose(got.numpy(), 0.5 * (plain + mirrored), rtol=1e-4, atol=1e-6 * scale)
    assert np.abs(plain - mirrored).max() > 0.1 * scale  # the flip changes the prediction
    assert np.allclose(task.predict_with_protocol(tiny, im, {"mode": "whole"}).numpy(), plain, rtol=1e-6, atol=0)
    with pytest.raises(UnsupportedError, match="depth cells predict whole images"):
        task.predict_with_protocol(tiny, im, {"mode": "slide"})


def test_kb_prediction_crop_pastes_into_the_full_frame_and_only_it_is_evaluated(tiny):
    rng = np.random.default_rng(2)
    im = Image.fromarray(rng.integers(0, 255, (375, 1242, 3), dtype=np.uint8))
    full = task.predict_with_protocol(tiny, im, {"mode": "whole", "predict_crop": "kb"}).numpy()
    inner = tiny.predict([im.crop((13, 23, 1229, 375))])[0]
    assert np.allclose(full[23:375, 13:1229], inner, rtol=1e-5, atol=0)
    outside = np.ones(full.shape, dtype=bool)
    outside[23:375, 13:1229] = False
    assert np.isnan(full[outside]).all()
    gt = rng.uniform(2, 70, (375, 1242)).astype(np.float32)
    e = task.make_engine(fake_model(), fake_dataset(hi=80.0, crop=None), cell=cell({"predict_crop": "kb"}))
    e.update([torch.from_numpy(full)], [gt])
    assert e.compute()["num_pixels"] == 352 * 1216
    with pytest.raises(UnsupportedError, match="kb crop needs a map of at least 352x1216"):
        task.predict_with_protocol(tiny, Image.new("RGB", (64, 48)), {"mode": "whole", "predict_crop": "kb"})


def test_prediction_protocol_is_none_for_plain_whole_images():
    assert task.prediction_protocol(cell()) is None
    assert task.prediction_protocol(cell({"flip": True}))["flip"] is True
    assert task.prediction_protocol(cell({"predict_crop": "kb"}))["predict_crop"] == "kb"


def test_describe_dataset_counts_the_kitti_frames_without_ground_truth(tmp_path):
    raw, annotated = write_kitti(tmp_path)
    ds = harness.load_dataset("kitti-eigen", root=str(raw), list_file="eigen_test_files_with_gt.txt",
                              gt_root=str(annotated))
    info = task.describe_dataset(ds)["data"]["depth"]
    assert info["excluded"] == len(ds.excluded) > 0 and info["num_listed"] == len(ds) + len(ds.excluded)
    assert (info["min_depth"], info["max_depth"], info["default_crop"]) == (1e-3, 80.0, "garg")
    assert info["excluded_examples"][0]["reason"]


def test_check_compatible_refuses_a_segmentation_model():
    with pytest.raises(ConfigError, match="does not predict depth"):
        task.check_compatible(SimpleNamespace(name="seg", task="segmentation"), fake_dataset())
    with pytest.raises(ConfigError, match="has no depth ground truth"):
        task.check_compatible(fake_model(), SimpleNamespace(name="ade20k"))
    task.check_compatible(fake_model(), fake_dataset())


def test_published_figures_pair_by_checkpoint_dataset_and_alignment():
    midas = task.published(cell(model="dpt-large-midas"), fake_model(name="dpt-large-midas"))
    assert midas["d1"] == pytest.approx(1 - 0.0832) and "isl-org/MiDaS" in midas["source"]
    assert "dpt_large_384.pt" in midas["checkpoint"]
    labeled = task.published(cell(model="Intel/dpt-large", dataset="nyu-depth-v2-labeled"), fake_model(name="x"))
    assert labeled["d1"] == midas["d1"]  # the same 654 test images
    eth = task.published(cell(model="dpt-hybrid-midas", dataset="eth3d"), fake_model(name="dpt-hybrid-midas"))
    assert eth["abs_rel"] == pytest.approx(0.0934) and "d1" not in eth
    assert task.published(cell(model="dpt-large-midas", options={"alignment": "lstsq_disparity"}),
                          fake_model(name="dpt-large-midas")) is not None
    random = fake_model(name="dpt-large-midas")
    random.weights = {"source": "random"}
    assert task.published(cell(model="dpt-large-midas"), random) is None
    fine = task.published(cell(model="dpt-hybrid-midas", weights="/w/dpt_hybrid_nyu-2ce69ec7.pt"),
                          fake_model("metric", "none", "dpt-hybrid-midas"))
    assert (fine["d1"], fine["abs_rel"], fine["rmse"]) == (0.904, 0.109, 0.357) and "EVALUATION.md" in fine["source"]
    da = task.published(cell(model="LiheYoung/depth-anything-small-hf", dataset="kitti-eigen"), fake_model(name="x"))
    assert (da["abs_rel"], da["d1"]) == (0.080, 0.936)
    assert task.published(cell(model="dpt-large-midas", dataset="kitti-eigen"),
                          fake_model("metric", "none", "dpt-large-midas")) is None  # metric scoring: not the table's


def test_reference_entries_are_complete():
    from harness.reference.depth import entries, figures

    for e in entries():
        f = figures(e)
        assert f["source"] and f["checkpoint"] and f["alignment"] in ("none", "lstsq_disparity")
        assert any(k in f for k in ("abs_rel", "d1", "rmse")), e
        assert all(0 < f[k] < 1 for k in ("d1", "d2", "d3") if k in f)


def test_sample_pictures_show_the_aligned_prediction(tmp_path):
    rng = np.random.default_rng(4)
    gt = rng.uniform(1, 9, (480, 640)).astype(np.float32)
    gt[:10] = 0
    pred = (3.0 / gt.clip(1e-3) + 0.2).astype(np.float32)  # exact disparity up to scale and shift
    protocol = task.resolve_protocol({}, fake_model(), fake_dataset())
    aligned, evaluated = aligned_prediction(torch.from_numpy(pred), gt, protocol)
    assert np.allclose(aligned[evaluated], gt[evaluated], rtol=1e-4)
    assert not evaluated[:45].any() and evaluated[100, 100]
    colours = error_colors(aligned, gt, evaluated)
    assert (colours[evaluated] < 3).all() and (colours[~evaluated] == NO_DEPTH).all()
    pic = depth_colors(gt, (1 / 9, 1.0), gt > 0)
    assert (pic[:10] == NO_DEPTH).all() and pic[200, 200].sum() > 0
    ds = harness.load_dataset("synthetic-depth", num_samples=1, image_size=[48, 64])
    s = ds.load(0)
    task._LAST["protocol"] = task.resolve_protocol({}, fake_model("metric", "none"), ds)
    out = task.save_sample(tmp_path, "cell", "synthetic-depth", ds, s.id, torch.from_numpy(s.depth), s.depth)
    assert set(out) == {"id", "image", "label", "pred", "error"}
    for k in ("image", "label", "pred", "error"):
        assert Image.open(tmp_path / out[k]).size == (64, 48)


def test_metric_bars_keep_cells_of_one_model_on_several_folders_apart():
    from pathlib import Path

    from harness.report.rows import all_rows
    from harness.results import load_run

    base = Path(__file__).resolve().parents[1] / "results" / "baselines" / "depth-real-samples-cpu"
    if not base.is_dir():
        pytest.skip("the committed depth baseline is not present")
    run = load_run(base)
    pairs = [(row, run.cells[row["cell_id"]]) for row in all_rows([run])]
    abs_rel, d1 = task.report_panels(pairs)
    (bars,) = abs_rel["data"]
    assert sorted(bars["x"]) == ["pydnet-plusplus-litert · fp32 · eigen 10 m", "pydnet-plusplus-litert · fp32 · eigen 8 m",
                                 "pydnet-plusplus-litert · fp32 · garg 80 m"]
    assert sorted(bars["y"]) == sorted(c.accuracy.metrics["abs_rel"] for c in run.cells.values())
    assert max(d1["data"][0]["y"]) == pytest.approx(100 * max(c.accuracy.metrics["d1"] for c in run.cells.values()))
    html, warnings = task.report_qualitative([run])
    assert "garg" in html and "lstsq" in html and not warnings  # the protocol table; no samples, no warning
