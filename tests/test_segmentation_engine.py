"""The segmentation task's engine: Boundary IoU and calibration in the accuracy loop's single pass.

- The engine's postprocess gives exactly ``model.postprocess``'s label maps (real transformers
  architectures; random logits with ties, chunked, bilinear and bicubic) while it calibrates.
- Its metrics equal the engines run on their own, and ECE / NLL / Brier a float64 numpy reference
  written here (full resize, softmax, binning from scratch).
- ``reduce`` over two processes' shares equals one process's counts (a placement that sums).
- Label-map models, other runtimes' postprocess and slide / multi-scale protocols say why there is
  no calibration; the measure switches turn the engines off.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import harness
from harness.boundary import BoundaryMetrics
from harness.calibration import LABEL_MAP_REASON, CalibrationMetrics
from harness.models.postprocess import upsample_argmax
from harness.suite import DEFAULT_MEASURE
from harness.tasks.segmentation import PROTOCOL_CALIBRATION_NOTE, make_engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_models import save_tiny_segformer, save_tiny_upernet  # noqa: E402


class _Data:
    def __init__(self, C: int, ignore: int = 255):
        self.num_classes, self.ignore_index = C, ignore


def _targets(g: torch.Generator, sizes, C: int) -> list[np.ndarray]:
    """Blocky label maps with a band of ignore pixels."""
    out = []
    for h, w in sizes:
        coarse = torch.randint(0, C, (h // 7 + 1, w // 7 + 1), generator=g)
        t = coarse.repeat_interleave(7, 0).repeat_interleave(7, 1)[:h, :w].numpy().copy()
        t[: h // 6] = 255
        out.append(t)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny")
    return {"segformer": harness.load_model(str(save_tiny_segformer(base / "sf", num_labels=7, image_size=64))),
            "upernet": harness.load_model(str(save_tiny_upernet(base / "up", num_labels=7, image_size=64)),
                                          upsample="bicubic")}


@pytest.mark.parametrize("arch", ["segformer", "upernet"])
def test_engine_postprocess_gives_the_models_label_maps(tiny, arch):
    model = tiny[arch]
    g = torch.Generator().manual_seed(1)
    sizes = [(61, 90), (64, 64), (33, 47)]
    images = [_image(g, h, w) for h, w in sizes]
    outputs = model.forward(model.preprocess(images))
    engine = make_engine(model, _Data(7))
    assert engine.calibration is not None and engine.calibration_note is None
    got = engine.postprocess(model, outputs, sizes, _targets(g, sizes, 7))
    want = model.postprocess(outputs, sizes)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == torch.int64 and torch.equal(a, b)
    assert engine.calibrated_images == 3


def _image(g: torch.Generator, h: int, w: int):
    from PIL import Image

    return Image.fromarray(torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy())


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_fused_argmax_equals_the_reference_label_map_with_ties_and_chunks(mode):
    g = torch.Generator().manual_seed(2)
    # integer logits: many exact ties between classes, resolved to the first class by the reference
    logits = torch.randint(-2, 3, (40, 9, 11), generator=g).float()
    target = torch.randint(0, 40, (50, 70), generator=g)
    for max_bytes in (50 * 70 * 4 * 3, 1 << 24):  # 3 channels per chunk, and one chunk
        cal = CalibrationMetrics(40)
        got = cal.update_logits(logits, target, mode=mode, max_bytes=max_bytes)
        ref = F.interpolate(logits[None], size=(50, 70), mode=mode, align_corners=False)[0].argmax(0)
        assert torch.equal(got, ref)
        assert torch.equal(got, upsample_argmax(logits, (50, 70), mode, shortcut=False))


def _numpy_calibration(logits: list[torch.Tensor], targets: list[np.ndarray], mode: str, bins: int = 15) -> dict:
    """float64 ECE, NLL, Brier: each image's logits resized whole (float32, as the postprocess), then
    softmax and equal-width bins (m/B, (m+1)/B] in float64."""
    conf, correct, nll, brier = [], [], [], []
    for z, t in zip(logits, targets, strict=True):
        up = F.interpolate(z[None].float(), size=t.shape, mode=mode, align_corners=False)[0].double().numpy()
        p = np.exp(up - up.max(0))
        p /= p.sum(0)
        keep = t != 255
        y = t[keep]
        pk = p[:, keep]
        idx = np.arange(y.size)
        conf.append(pk.max(0))
        correct.append(pk.argmax(0) == y)
        nll.append(-np.log(pk[y, idx]))
        onehot = np.zeros_like(pk)
        onehot[y, idx] = 1
        brier.append(((pk - onehot) ** 2).sum(0))
    conf, correct = np.concatenate(conf), np.concatenate(correct)
    ece = sum(abs(correct[s].sum() - conf[s].sum()) for s in
              ((conf > m / bins) & (conf <= (m + 1) / bins) for m in range(bins))) / conf.size
    return {"ECE": ece, "NLL": np.concatenate(nll).mean(), "Brier": np.concatenate(brier).mean()}


def test_metrics_equal_the_engines_alone_and_a_numpy_reference(tiny):
    model = tiny["segformer"]
    g = torch.Generator().manual_seed(3)
    sizes = [(70, 52), (48, 80)]
    outputs = model.forward(model.preprocess([_image(g, h, w) for h, w in sizes]))
    targets = _targets(g, sizes, 7)
    engine = make_engine(model, _Data(7), measure={**DEFAULT_MEASURE, "trimap_widths": [1, 3]})
    engine.update(engine.postprocess(model, outputs, sizes, targets), targets)
    got = engine.compute()
    bnd, cal = BoundaryMetrics(7, trimap_widths=(1, 3)), CalibrationMetrics(7)
    for i, t in enumerate(targets):
        bnd.update(cal.update_logits(outputs[i], t, mode="bilinear", pred=model.postprocess(outputs[i:i + 1],
                                                                                          [t.shape])[0]), t)
    b, c = bnd.compute(), cal.compute()
    assert got["mBIoU"] == b["mBIoU"] and got["BIoU"] == b["BIoU"] and got["trimap"] == b["trimap"]
    assert got["trimap_mIoU"] == {"1": b["trimap"]["mIoU"][0], "3": b["trimap"]["mIoU"][1]}
    assert got["boundary"] == {"dilation_ratio": 0.02, "dilation_px": None}
    for key in ("ECE", "MCE", "NLL", "Brier"):
        assert got[key] == pytest.approx(c[key], abs=1e-12), key
    np.testing.assert_equal(got["calibration"]["reliability"], c["reliability"])  # NaN (empty bins) equal
    assert got["calibration"]["pixels"] == c["pixels"] > 0
    ref = _numpy_calibration([outputs[i] for i in range(2)], targets, "bilinear")
    for key in ("ECE", "NLL", "Brier"):
        assert got[key] == pytest.approx(ref[key], abs=2e-6), key
    assert "calibration_note" not in got and got["num_images"] == 2


class _SumPlacement:
    """Two processes: this one and a peer whose sums and gathers were recorded beforehand."""

    world_size, rank, is_main = 2, 0, True

    def __init__(self, peer: list):
        self.peer = list(peer)

    def sum(self, tensor):
        return tensor + self.peer.pop(0)

    def gather(self, obj):
        return [obj, self.peer.pop(0)]

    def total(self, n):
        return sum(self.gather(n))


class _Recorder:
    world_size, rank, is_main = 2, 1, False

    def __init__(self):
        self.sent: list = []

    def sum(self, tensor):
        self.sent.append(tensor.clone())
        return tensor

    def gather(self, obj):
        self.sent.append(obj)
        return [obj]

    def total(self, n):
        return sum(self.gather(n))


def test_reduce_sums_every_state_across_ranks(tiny):
    model = tiny["segformer"]
    g = torch.Generator().manual_seed(4)
    sizes = [(40, 50), (52, 44), (36, 36), (60, 30)]
    outputs = [model.forward(model.preprocess([_image(g, h, w)])) for h, w in sizes]
    targets = _targets(g, sizes, 7)
    engines = [make_engine(model, _Data(7)) for _ in range(3)]
    for i, (out, t, size) in enumerate(zip(outputs, targets, sizes, strict=True)):
        for e in (engines[0], engines[1 + i % 2]):  # engines[0]: all images; 1 and 2: alternate shares
            e.update(e.postprocess(model, out, [size], [t]), [t])
    peer = _Recorder()
    engines[2].reduce(peer)
    engines[1].reduce(_SumPlacement(peer.sent))
    whole, split = engines[0].compute(), engines[1].compute()
    for key in ("mIoU", "mBIoU", "ECE", "MCE", "NLL", "Brier", "num_images"):
        assert split[key] == pytest.approx(whole[key], abs=1e-12), key
    assert split["trimap"] == whole["trimap"]
    assert split["calibration"]["reliability"]["count"] == whole["calibration"]["reliability"]["count"]


def test_models_that_cannot_be_calibrated_say_why():
    class Labels:
        output_kind, device, runtime, upsample = "labels", torch.device("cpu"), "litert", "bilinear"

    engine = make_engine(Labels(), _Data(4))
    assert engine.calibration is None and engine.boundary is not None
    engine.update([torch.zeros((5, 6), dtype=torch.int64)], [np.zeros((5, 6), dtype=np.int64)])
    out = engine.compute()
    assert out["calibration_note"] == LABEL_MAP_REASON and out["calibration_note"].startswith("cannot be calibrated:")
    assert "ECE" not in out and out["mBIoU"] == 1.0


def test_a_protocol_without_logits_says_calibration_was_not_measured(tiny):
    engine = make_engine(tiny["segformer"], _Data(7))
    engine.update([torch.zeros((5, 6), dtype=torch.int64)], [np.zeros((5, 6), dtype=np.int64)])  # no postprocess
    assert engine.compute()["calibration_note"] == PROTOCOL_CALIBRATION_NOTE


def test_measure_switches_turn_the_engines_off(tiny):
    engine = make_engine(tiny["segformer"], _Data(7), measure={**DEFAULT_MEASURE, "boundary": False,
                                                               "calibration": False})
    assert engine.boundary is None and engine.calibration is None
    engine.update([torch.zeros((5, 6), dtype=torch.int64)], [np.zeros((5, 6), dtype=np.int64)])
    out = engine.compute()
    assert not {"mBIoU", "ECE", "calibration_note", "trimap"} & set(out)
