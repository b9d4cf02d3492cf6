"""DepthMetrics against a float64 reference written from the formulas and against the anchors'
algorithms (ZoeDepth, Marigold, Depth Anything V2), on synthetic and real ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import harness
from harness.depth import DepthMetrics
from harness.depth.crops import crop_box
from harness.depth.metrics import METRICS, RAW, STATE_FIELDS, _NumpyKernel, _torch_sums
from tests.depth_reference import (
    KEYS,
    anchor_depth_anything,
    anchor_marigold,
    anchor_zoedepth,
    evaluated,
    reference,
    synthetic_pair,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "depth"
RTOL = 2e-5  # float32 kernel against float64 references


@pytest.fixture(params=["fused", "numpy", "torch"])
def engine(request) -> str:
    """Each CPU engine of DepthMetrics (the fused one needs numba, installed with the ``depth`` extra)."""
    if request.param == "fused":
        pytest.importorskip("numba", reason="the fused engine needs numba (pip install 'segbench[depth]')")
    return request.param


def assert_close(got: dict, ref: dict, keys=KEYS, rtol=RTOL, atol=1e-7):
    for k in keys:
        assert got[k] == pytest.approx(float(ref[k]), rel=rtol, abs=atol), k


def real_gt(name: str) -> list[np.ndarray]:
    folder = SHARED / name / "depth"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not present (real depth samples live in ../shared beside the repository)")
    scale = 1000.0 if name == "nyu_depth_v2" else 256.0
    return [np.asarray(Image.open(p), dtype=np.float32) / scale for p in sorted(folder.glob("*.png"))]


def test_harness_exports_depth_metrics():
    assert harness.DepthMetrics is DepthMetrics
    assert METRICS == KEYS


@pytest.mark.parametrize("crop", [None, "eigen", [10, 400, 5, 630]])
def test_matches_float64_reference_on_synthetic_batches(crop, engine):
    rng = np.random.default_rng(0)
    pred, gt = synthetic_pair(rng, (3, 480, 640))
    m = DepthMetrics(min_depth=1e-3, max_depth=10.0, crop=crop, engine=engine)
    m.update(pred, gt)
    box = crop_box(crop, 480, 640) if crop is not None else None
    out = m.compute()
    assert_close(out, reference(pred, gt, 1e-3, 10.0, box))
    assert out["num_images"] == 3 and out["num_empty"] == 0
    assert out["num_pixels"] == sum(evaluated(p, g, 1e-3, 10.0, box)[0].size for p, g in zip(pred, gt, strict=True))
    assert_close(m.compute("pixel"), reference(pred, gt, 1e-3, 10.0, box, reduction="pixel"))


def test_real_nyu_and_kitti_ground_truth_with_the_eval_protocols(engine):
    rng = np.random.default_rng(1)
    for name, lo, hi, crop in (("nyu_depth_v2", 1e-3, 10.0, "eigen"), ("kitti", 1e-3, 80.0, "garg")):
        gts = real_gt(name)
        # a prediction with a smooth scale error and pixel noise, defined everywhere (also off the sparse GT)
        preds = []
        for g in gts:
            h, w = g.shape
            base = np.where(g > 0, g, np.median(g[g > 0]))
            ramp = np.linspace(0.85, 1.2, w, dtype=np.float32)[None, :]
            preds.append((base * ramp * np.exp(rng.normal(0, 0.1, (h, w)))).astype(np.float32))
        m = DepthMetrics(min_depth=lo, max_depth=hi, crop=crop, engine=engine)
        for p, g in zip(preds, gts, strict=True):
            m.update(p, g)
        box = crop_box(crop, *gts[0].shape)
        assert_close(m.compute(), reference(preds, gts, lo, hi, box))
        # the anchor's own algorithm (float32 numpy, as ZoeDepth runs it), image by image
        zoe = [anchor_zoedepth(p, g, lo, hi, box) for p, g in zip(preds, gts, strict=True)]
        zoe_mean = {k: np.mean([z[k] for z in zoe]) for k in zoe[0]}
        assert_close(m.compute(), zoe_mean, keys=list(zoe_mean), rtol=1e-4)


def test_non_finite_predictions_and_ground_truth_follow_zoedepth(engine):
    rng = np.random.default_rng(2)
    pred, gt = synthetic_pair(rng, (2, 64, 96))
    pred[0, :4] = np.nan
    pred[0, 4:8] = np.inf
    pred[1, :3] = -np.inf
    pred[1, 3:6] = -1.0  # below the range: clipped to min_depth
    pred[1, 6:9] = 50.0  # above: clipped to max_depth
    gt[0, 10:12] = np.nan  # invalid ground truth, as 0
    gt[1, 12:14] = np.inf
    gt[1, 14:16] = 10.0  # == max_depth: outside the open range
    m = DepthMetrics(min_depth=1e-3, max_depth=10.0, engine=engine)
    m.update(torch.from_numpy(pred), torch.from_numpy(gt))
    out = m.compute()
    assert all(np.isfinite(out[k]) for k in KEYS)
    assert_close(out, reference(pred, gt, 1e-3, 10.0))


def test_unbounded_range_as_marigold_eth3d(engine):
    rng = np.random.default_rng(13)
    pred, gt = synthetic_pair(rng, (2, 40, 60), lo=0.5, hi=60.0)
    gt[0, 0, :5] = np.inf  # no measurement
    m = DepthMetrics(min_depth=1e-5, max_depth=float("inf"), engine=engine)
    m.update(pred, gt)
    assert_close(m.compute(), reference(pred, gt, 1e-5, float("inf")))
    with pytest.raises(ValueError, match="depth range"):
        DepthMetrics(max_depth=float("nan"))


def test_leading_batch_shapes_numpy_and_torch_agree():
    rng = np.random.default_rng(3)
    pred, gt = synthetic_pair(rng, (2, 3, 40, 50))
    a = DepthMetrics(max_depth=10.0)
    a.update(pred, gt)
    b = DepthMetrics(max_depth=10.0)
    for p, g in zip(pred.reshape(6, 40, 50), gt.reshape(6, 40, 50), strict=True):
        b.update(torch.from_numpy(p), torch.from_numpy(g))
    c = DepthMetrics(max_depth=10.0)
    c.update(torch.from_numpy(pred).reshape(6, 1, 40, 50), torch.from_numpy(gt).reshape(6, 40, 50))
    ra, rb, rc = a.compute(), b.compute(), c.compute()
    assert ra["num_images"] == rb["num_images"] == rc["num_images"] == 6
    assert_close(ra, rb, rtol=1e-12)
    assert_close(ra, rc, rtol=1e-12)


def test_float64_inputs_are_computed_in_float64(engine):
    rng = np.random.default_rng(4)
    pred, gt = synthetic_pair(rng, (2, 30, 40))
    m = DepthMetrics(engine=engine)
    m.update(pred.astype(np.float64), gt.astype(np.float64))
    assert_close(m.compute(), reference(pred, gt, 1e-3, 10.0), rtol=1e-10, atol=1e-12)


def test_prediction_resized_to_the_ground_truth_bilinear_align_corners():
    rng = np.random.default_rng(5)
    pred, gt = synthetic_pair(rng, (2, 48, 64))
    small = torch.from_numpy(pred)[:, None, ::2, ::2].contiguous()
    m = DepthMetrics()
    m.update(small, gt)
    up = F.interpolate(small, size=(48, 64), mode="bilinear", align_corners=True)[:, 0].numpy()
    assert_close(m.compute(), reference(up, gt, 1e-3, 10.0))
    m2 = DepthMetrics(interpolation="nearest")
    m2.update(small, gt)
    up2 = F.interpolate(small, size=(48, 64), mode="nearest")[:, 0].numpy()
    assert_close(m2.compute(), reference(up2, gt, 1e-3, 10.0))
    assert m.settings()["interpolation"] == "bilinear" and m.settings()["align_corners"] is True
    assert m2.settings()["align_corners"] is None


def test_mask_argument_and_empty_images(engine):
    rng = np.random.default_rng(6)
    pred, gt = synthetic_pair(rng, (3, 32, 32))
    gt[2] = 0  # no valid pixel: left out and counted
    mask = rng.random((3, 32, 32)) < 0.5
    m = DepthMetrics(engine=engine)
    m.update(pred, gt, mask=mask)
    out = m.compute()
    assert out["num_images"] == 2 and out["num_empty"] == 1
    assert_close(out, reference(pred[:2], gt[:2], 1e-3, 10.0, masks=mask[:2]))
    few = DepthMetrics(min_valid_pixels=10**6)
    few.update(pred, gt)
    assert few.compute()["num_images"] == 0 and np.isnan(few.compute()["abs_rel"])


def test_anchor_marigold_and_depth_anything_conventions():
    rng = np.random.default_rng(7)
    pred, gt = synthetic_pair(rng, (4, 60, 80))
    m = DepthMetrics(min_depth=1e-3, max_depth=10.0)
    m.update(pred, gt)
    out = m.compute()
    pt = torch.from_numpy(np.clip(pred, 1e-3, 10.0)).double()
    gtt = torch.from_numpy(gt).double()
    valid = (gtt > 1e-3) & (gtt < 10.0)
    # Marigold's SILog takes the mean over images *inside* the sqrt: equal here only per image
    per_image = [anchor_marigold(pt[i:i + 1], gtt[i:i + 1], valid[i:i + 1]) for i in range(4)]
    marigold = {k: float(np.mean([float(a[k]) for a in per_image])) for k in per_image[0]}
    assert_close(out, marigold, keys=list(marigold))
    da = [anchor_depth_anything(pt[i][valid[i]], gtt[i][valid[i]]) for i in range(4)]
    da_mean = {k: float(np.mean([float(a[k]) for a in da])) for k in da[0]}
    assert_close(out, da_mean, keys=list(da_mean))
    assert out["silog"] > 10 * out["silog_half"]  # the two conventions differ by far more than rounding


def test_state_merges_and_all_reduce_sum():
    rng = np.random.default_rng(8)
    pred, gt = synthetic_pair(rng, (4, 24, 30))
    whole = DepthMetrics(alignment="lstsq")
    whole.update(pred, gt)
    a, b = DepthMetrics(alignment="lstsq"), DepthMetrics(alignment="lstsq")
    a.update(pred[:1], gt[:1])
    b.update(pred[1:], gt[1:])
    summed = a.state_tensor() + b.state_tensor()  # what all_reduce(SUM) gives
    c = DepthMetrics(alignment="lstsq")
    c.load_state_tensor(summed)
    a += b
    for got in (a.compute(), c.compute()):
        assert_close(got, whole.compute(), rtol=1e-12)
        assert got["num_images"] == 4
    assert whole.state_tensor().shape == (len(STATE_FIELDS),) and whole.state_tensor().dtype == torch.float64
    with pytest.raises(ValueError, match="settings"):
        a.merge(DepthMetrics(alignment="none"))
    with pytest.raises(ValueError, match="expected a float vector"):
        c.load_state_tensor(torch.zeros(3))
    with pytest.raises(TypeError):
        a.merge(object())
    whole.reset()
    assert whole.compute()["num_images"] == 0


def test_many_small_updates_fold_into_the_state_in_batches():
    rng = np.random.default_rng(12)
    pred, gt = synthetic_pair(rng, (150, 8, 9))  # more updates than are kept pending at once
    batched, single = DepthMetrics(), DepthMetrics()
    batched.update(pred, gt)
    for p, g in zip(pred, gt, strict=True):
        single.update(p, g)
    torch.testing.assert_close(single.state_tensor(), batched.state_tensor(), rtol=1e-12, atol=0)
    assert single.compute()["num_images"] == 150
    other = DepthMetrics()
    other.update(pred[:3], gt[:3])  # pending, not yet folded: merge and state_tensor fold it first
    single.merge(other)
    assert single.compute()["num_images"] == 153


def test_numpy_and_torch_kernels_agree():
    """The CPU kernel and the whole-tensor kernel (CUDA's path) give the same sums on the same crops."""
    rng = np.random.default_rng(9)
    pred, gt = synthetic_pair(rng, (3, 200, 700))  # several CPU blocks per image
    pred[0, 0, :5] = np.nan
    gt[1, 1, :5] = np.nan
    mask = rng.random(gt.shape) < 0.8
    k = _NumpyKernel()
    cpu = np.stack([k.image(pred[i], gt[i], mask[i], 1e-3, 10.0) for i in range(3)])
    dev = _torch_sums(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(mask), 1e-3, 10.0).numpy()
    assert cpu.shape == dev.shape == (3, len(RAW))
    np.testing.assert_array_equal(cpu[:, [0, 7, 8, 9]], dev[:, [0, 7, 8, 9]])
    np.testing.assert_allclose(cpu, dev, rtol=2e-5)
    pytest.importorskip("numba", reason="the fused engine needs numba (pip install 'segbench[depth]')")
    box = (3, 190, 11, 650)  # a crop, several blocks of rows per image, NaN in both inputs
    fused = DepthMetrics(engine="fused")._cpu_sums(pred, gt, mask, box, 1e-3, 10.0, "fused")
    sub = (slice(None), slice(box[0], box[1]), slice(box[2], box[3]))
    dev = _torch_sums(*(torch.from_numpy(np.ascontiguousarray(a[sub])) for a in (pred, gt, mask)), 1e-3, 10.0).numpy()
    np.testing.assert_array_equal(fused[:, [0, 7, 8, 9]], dev[:, [0, 7, 8, 9]])
    np.testing.assert_allclose(fused, dev, rtol=2e-5)


def test_fused_logarithm_within_three_ulps_of_float64():
    """The fused kernel's own logarithm (exponent split + polynomial) over the range of p / g it meets."""
    pytest.importorskip("numba", reason="the fused engine needs numba (pip install 'segbench[depth]')")
    from harness.depth import fused, fused_loops

    rng = np.random.default_rng(15)
    for dtype, ulps in ((np.float32, 3.0), (np.float64, 12.0)):
        x = np.concatenate([np.exp(rng.uniform(-12, 12, 3000)), 1 + rng.uniform(-1e-3, 1e-3, 500),
                            [1.0, 0.5, 2.0, np.sqrt(0.5), np.sqrt(2.0), 1e-4, 8e4]]).astype(dtype)
        (one, ln2, *_), coefficients = fused._constants(np.dtype(dtype))
        got = np.array([fused_loops.log(v, one, ln2, coefficients) for v in x])
        exact = np.log(x.astype(np.longdouble))
        spacing = np.spacing(np.abs(exact).astype(dtype)).astype(np.longdouble)
        err = np.abs(got.astype(np.longdouble) - exact) / np.maximum(spacing, np.finfo(dtype).tiny)
        assert float(err.max()) <= ulps, dtype
    assert fused.supports(1e-3, 80.0, np.dtype(np.float32))
    assert not fused.supports(1e-5, float("inf"), np.dtype(np.float32))
    assert not fused.supports(1e-6, 1e34, np.dtype(np.float32)) and fused.supports(1e-6, 1e34, np.dtype(np.float64))


def test_engine_choice_and_errors(monkeypatch):
    from harness import jit

    m = DepthMetrics()
    assert m.engine_for(torch.device("cpu")) == ("fused" if jit.available() else "numpy")
    assert m.engine_for(torch.device("meta")) == "torch"  # any device but the CPU
    assert DepthMetrics(engine="numpy").engine_for(torch.device("cpu")) == "numpy"
    with pytest.raises(ValueError, match="unknown depth metric engine 'numba'"):
        DepthMetrics(engine="numba")
    monkeypatch.setattr(jit, "available", lambda: False)
    with pytest.raises(ValueError, match="needs numba"):
        DepthMetrics(engine="fused")
    assert DepthMetrics().engine_for(torch.device("cpu")) == "numpy"


def test_threads_give_the_same_state_and_pickle():
    import pickle

    rng = np.random.default_rng(11)
    pred, gt = synthetic_pair(rng, (3, 300, 400))  # two blocks per image
    one, two = DepthMetrics(), DepthMetrics(threads=2)
    one.update(pred, gt)
    two.update(pred, gt)
    assert torch.equal(one.state_tensor(), two.state_tensor())  # blocks summed in a fixed order
    copy = pickle.loads(pickle.dumps(two))
    copy.update(pred[:1], gt[:1])
    assert copy.compute()["num_images"] == 4
    with pytest.raises(ValueError, match="threads"):
        DepthMetrics(threads=0)


def test_whole_tensor_path_gives_the_same_metrics_and_state():
    """The device path (torch kernels, device-side bookkeeping) run on the CPU against the numpy path."""
    rng = np.random.default_rng(14)
    pred, gt = synthetic_pair(rng, (3, 50, 70))
    gt[2] = 0  # an empty image: counted on both paths
    for alignment in ("none", "lstsq_disparity"):
        cpu = DepthMetrics(alignment=alignment, crop=[1, 48, 2, 69])
        dev = DepthMetrics(alignment=alignment, crop=[1, 48, 2, 69], engine="torch")
        for m in (cpu, dev):
            m.update(pred[:2], gt[:2])
            m.update(pred[2:], gt[2:])
        torch.testing.assert_close(dev.state_tensor(), cpu.state_tensor(), rtol=2e-5, atol=1e-6)
        assert dev.compute()["num_empty"] == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_cuda_device():
    rng = np.random.default_rng(10)
    pred, gt = synthetic_pair(rng, (2, 64, 64))
    m = DepthMetrics(alignment="lstsq_disparity", crop=[2, 60, 3, 61])
    m.update(torch.from_numpy(pred).cuda(), torch.from_numpy(gt))
    assert m.state_tensor().device.type == "cuda"
    ref = DepthMetrics(alignment="lstsq_disparity", crop=[2, 60, 3, 61])
    ref.update(pred, gt)
    assert_close(m.compute(), ref.compute(), rtol=1e-4)


def test_bad_inputs_name_the_value():
    m = DepthMetrics()
    with pytest.raises(ValueError, match="floating-point"):
        m.update(np.zeros((4, 4), dtype=np.uint16), np.ones((4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="different numbers of images"):
        m.update(np.ones((2, 4, 4), np.float32), np.ones((3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="expected a depth map"):
        m.update(np.ones(4, np.float32), np.ones(4, np.float32))
    with pytest.raises(ValueError, match="bool mask"):
        m.update(np.ones((4, 4), np.float32), np.ones((4, 4), np.float32), mask=np.ones((4, 4)))
    with pytest.raises(ValueError, match="does not fit"):
        DepthMetrics(crop="eigen").update(np.ones((4, 4), np.float32), np.ones((4, 4), np.float32))
    for kwargs, text in (({"crop": "nyu"}, "unknown crop"), ({"alignment": "scale"}, "unknown alignment"),
                         ({"min_depth": 5, "max_depth": 1}, "depth range"), ({"reduction": "mean"}, "reduction"),
                         ({"interpolation": "cubic"}, "interpolation"), ({"crop": [1, 2, 3]}, "four integers")):
        with pytest.raises(ValueError, match=text):
            DepthMetrics(**kwargs)


def test_depth_engine_prepares_the_fused_kernel_before_the_clock():
    pytest.importorskip("numba", reason="the fused engine needs numba (pip install 'segbench[depth]')")
    from types import SimpleNamespace

    from harness.depth import fused_loops
    from harness.tasks.depth import DepthEngine

    protocol = {"min_depth": 1e-3, "max_depth": 10.0, "crop": None, "alignment": "none", "reduction": "image",
                "min_valid_pixels": 1}
    DepthEngine(protocol, "cpu").prepare(SimpleNamespace(device="cpu"))
    masks = {sig[2] for sig in fused_loops.blocks.signatures}  # the mask argument's type: none and a bool array
    assert len(masks) >= 2
