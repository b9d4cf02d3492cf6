"""Inference protocols checked against re-implementations of their references, written here from
the references' descriptions (mmsegmentation's slide inference and test-time augmentation,
PyTorch-Encoding's MultiEvalModule), on tiny convolutional models and non-square images,
including images smaller than a crop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from harness.errors import ConfigError
from harness.models.base import SegmentationModel
from harness.protocols import (
    base_size,
    image_to_tensor01,
    mmcv_rescale_size,
    predict_with_protocol,
    protocol_scores,
    scaled_size,
    window_bounds,
)


class ConvModel(SegmentationModel):
    """A fully convolutional toy model: logits at 1/2 resolution (``pool=True``) or at the input's."""

    family = "cnn"
    num_labels = 5
    input_size = (40, 56)
    weights = {"source": "test"}

    def __init__(self, kernel: int = 3, symmetric: bool = False, pool: bool = True, **kw):
        super().__init__(**kw)
        torch.manual_seed(0)
        self.module = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, kernel, padding=kernel // 2), torch.nn.ReLU(),
            torch.nn.AvgPool2d(2) if pool else torch.nn.Identity(), torch.nn.Conv2d(8, 5, 1)).eval()
        with torch.no_grad():
            self.module[3].weight.mul_(4.0)  # logits of a few units, like a trained head's
            if symmetric:  # kernels mirrored left-right -> the model commutes with horizontal flips
                w = self.module[0].weight
                w.copy_((w + torch.flip(w, dims=[3])) / 2)

    def _run(self, x):
        return self.module(x)


def image(h: int = 37, w: int = 53, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


@torch.no_grad()
def net(model, x: torch.Tensor) -> torch.Tensor:
    return model.module(x)


# -- mmsegmentation slide inference, written from EncoderDecoder.slide_inference's description --

@torch.no_grad()
def mmseg_slide(model, img: torch.Tensor, crop: tuple[int, int], stride: tuple[int, int]) -> torch.Tensor:
    """Sum of window logits (each resized to its window) placed with F.pad, divided by the count map."""
    _, _, h_img, w_img = img.shape
    h_grids = max(h_img - crop[0] + stride[0] - 1, 0) // stride[0] + 1
    w_grids = max(w_img - crop[1] + stride[1] - 1, 0) // stride[1] + 1
    preds = img.new_zeros((1, model.num_labels, h_img, w_img))
    count = img.new_zeros((1, 1, h_img, w_img))
    for hi in range(h_grids):
        for wi in range(w_grids):
            y1, x1 = hi * stride[0], wi * stride[1]
            y2, x2 = min(y1 + crop[0], h_img), min(x1 + crop[1], w_img)
            y1, x1 = max(y2 - crop[0], 0), max(x2 - crop[1], 0)
            patch = img[:, :, y1:y2, x1:x2]
            logit = F.interpolate(net(model, patch), size=patch.shape[2:], mode="bilinear", align_corners=False)
            preds += F.pad(logit, (x1, w_img - x2, y1, h_img - y2))
            count[:, :, y1:y2, x1:x2] += 1
    assert (count == 0).sum() == 0
    return preds / count


def normalised(model, img: Image.Image, size: tuple[int, int] | None = None) -> torch.Tensor:
    x = image_to_tensor01(img)
    if size is not None and size != (img.height, img.width):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return model.normalize(x)


@pytest.mark.parametrize("h,w,crop,stride", [
    (64, 96, (32, 32), (20, 20)),    # non-square, overlapping windows
    (50, 77, (32, 40), (21, 27)),    # non-square crops, last window pushed back inside
    (20, 90, (32, 32), (32, 16)),    # image lower than a crop: windows are the image's height, unpadded
    (25, 30, (32, 32), (21, 21)),    # image smaller than a crop: one window, the image itself
    (33, 33, (32, 32), (1, 32)),     # stride 1 on one axis
])
def test_slide_equals_mmsegmentation(h, w, crop, stride):
    model = ConvModel()
    img = image(h, w, seed=h)
    proto = {"mode": "slide", "crop_size": list(crop), "stride": list(stride), "resize": [h, w]}
    got = protocol_scores(model, img, proto)
    want = mmseg_slide(model, normalised(model, img), crop, stride)
    assert got.shape == want.shape == (1, 5, h, w)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.equal(predict_with_protocol(model, img, proto), got[0].argmax(0))


def test_window_bounds_are_mmsegmentations_grid():
    assert window_bounds(100, 100, 60) == [(0, 100)]
    assert window_bounds(80, 100, 60) == [(0, 80)]  # smaller than a crop: not padded
    assert window_bounds(1000, 512, 341) == [(0, 512), (341, 853), (488, 1000)]
    for length, crop, stride in [(513, 512, 341), (2049, 512, 341), (700, 200, 150), (64, 32, 32)]:
        bounds = window_bounds(length, crop, stride)
        covered = np.zeros(length, bool)
        for a, b in bounds:
            assert b - a == min(crop, length)
            covered[a:b] = True
        assert covered.all() and bounds[-1][1] == length


def test_a_small_image_is_decoded_without_padding():
    seen = []
    model = ConvModel()
    original = model._run
    model._run = lambda x: (seen.append(tuple(x.shape[2:])), original(x))[1]
    predict_with_protocol(model, image(20, 25), {"mode": "slide", "crop_size": [32, 32], "stride": [21, 21],
                                                 "resize": [20, 25]})
    assert seen == [(20, 25)]


# -- mmsegmentation test-time augmentation (0.x aug_test over MultiScaleFlipAug) --

def mmcv_size(h: int, w: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv.rescale_size for keep_ratio: factor min(long / long side, short / short side), round half up."""
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


@torch.no_grad()
def mmseg_tta(model, img: Image.Image, img_scale: tuple[int, int], ratios, flip: bool, slide=None) -> torch.Tensor:
    """Mean over augmentations of softmax(logits resized to the input, then to the image), flipped back."""
    h, w = img.height, img.width
    probs = []
    for r in ratios:
        scale = (int(img_scale[0] * r), int(img_scale[1] * r))
        size = mmcv_size(h, w, scale)
        for f in ([False, True] if flip else [False]):
            x = normalised(model, img, size)
            x = torch.flip(x, dims=[3]) if f else x
            if slide is None:
                logit = F.interpolate(net(model, x), size=size, mode="bilinear", align_corners=False)
            else:
                logit = mmseg_slide(model, x, *slide)
            logit = F.interpolate(logit, size=(h, w), mode="bilinear", align_corners=False)
            out = F.softmax(logit, dim=1)
            probs.append(torch.flip(out, dims=[3]) if f else out)
    return sum(probs) / len(probs)


def same_labels_away_from_ties(scores: torch.Tensor, got: torch.Tensor, margin: float = 1e-4) -> bool:
    top = scores[0].topk(2, dim=0).values
    clear = (top[0] - top[1]) > margin
    return bool(torch.equal(got[clear], scores[0].argmax(0)[clear])) and bool(clear.float().mean() > 0.95)


@pytest.mark.parametrize("h,w", [(37, 53), (60, 41), (24, 24)])
def test_softmax_merge_equals_mmsegmentation_tta(h, w):
    model = ConvModel()
    img = image(h, w, seed=w)
    ratios = [0.5, 0.75, 1.0, 1.25, 1.75]
    proto = {"mode": "multiscale", "scales": ratios, "flip": True, "merge": "softmax",
             "resize": {"short": 32, "long": 128}}
    got = protocol_scores(model, img, proto)
    want = mmseg_tta(model, img, (128, 32), ratios, flip=True)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(got.sum(1), torch.ones(1, h, w), atol=1e-5)  # mean of probabilities
    assert same_labels_away_from_ties(want, predict_with_protocol(model, img, proto))


def test_softmax_merge_with_sliding_windows_equals_mmsegmentation_tta():
    model = ConvModel()
    img = image(45, 70, seed=3)
    proto = {"mode": "multiscale", "scales": [0.75, 1.0, 1.5], "flip": True, "merge": "softmax",
             "resize": {"short": 40, "long": 160}, "crop_size": [32, 32], "stride": [21, 21]}
    got = protocol_scores(model, img, proto)
    want = mmseg_tta(model, img, (160, 40), [0.75, 1.0, 1.5], flip=True, slide=((32, 32), (21, 21)))
    assert torch.allclose(got, want, atol=1e-5)


def test_softmax_and_logit_merges_differ():
    model = ConvModel()
    img = image(37, 53, seed=9)
    base = {"mode": "multiscale", "scales": [0.5, 1.0, 1.5], "flip": True}
    soft = protocol_scores(model, img, {**base, "merge": "softmax"})
    logit = protocol_scores(model, img, {**base, "merge": "logits"})
    assert not torch.allclose(soft, logit.softmax(1), atol=1e-3)
    assert (soft[0].argmax(0) != logit[0].argmax(0)).any()  # merging logits is not the reference's choice


def test_logit_merge_is_the_mean_of_resized_logits():
    model = ConvModel()
    img = image()
    scales = [0.5, 1.0, 1.5]
    got = protocol_scores(model, img, {"mode": "multiscale", "scales": scales, "flip": False, "merge": "logits"})
    refs = [F.interpolate(net(model, normalised(model, img, (round(40 * s), round(56 * s)))), size=(37, 53),
                          mode="bilinear", align_corners=False) for s in scales]
    assert torch.allclose(got, sum(refs) / 3, atol=1e-5)


# -- PyTorch-Encoding MultiEvalModule, written from its description --

@torch.no_grad()
def pte_forward(model, x: torch.Tensor, flip: bool) -> torch.Tensor:
    """module_inference: evaluate (outputs at the input's size), add the flipped pass, exp."""
    def evaluate(inp):
        out = net(model, inp)
        return F.interpolate(out, size=inp.shape[2:], mode="bilinear", align_corners=True) \
            if out.shape[2:] != inp.shape[2:] else out

    out = evaluate(x)
    if flip:
        out += evaluate(x.flip(3)).flip(3)
    return out.exp()


def pte_pad(x: torch.Tensor, mean, std, crop: int) -> torch.Tensor:
    b, c, h, w = x.shape
    padh, padw = max(crop - h, 0), max(crop - w, 0)
    values = -np.array(mean) / np.array(std)
    return torch.stack([F.pad(x[:, i], (0, padw, 0, padh), value=float(values[i])) for i in range(c)], 1)


@torch.no_grad()
def multi_eval(model, img: Image.Image, base: int, crop: int, scales, flip: bool = True) -> torch.Tensor:
    mean, std = model.image_mean, model.image_std
    image_t = model.normalize(image_to_tensor01(img))
    _, _, h, w = image_t.shape
    stride = int(crop * 2.0 / 3.0)
    scores = torch.zeros(1, model.num_labels, h, w)
    for scale in scales:
        long_size = int(math.ceil(base * scale))
        if h > w:
            height, width = long_size, int(1.0 * w * long_size / h + 0.5)
            short_size = width
        else:
            width, height = long_size, int(1.0 * h * long_size / w + 0.5)
            short_size = height
        cur = F.interpolate(image_t, (height, width), mode="bilinear", align_corners=True)
        if long_size <= crop:
            outputs = pte_forward(model, pte_pad(cur, mean, std, crop), flip)[:, :, :height, :width]
        else:
            pad_img = pte_pad(cur, mean, std, crop) if short_size < crop else cur
            _, _, ph, pw = pad_img.shape
            outputs = torch.zeros(1, model.num_labels, ph, pw)
            count = torch.zeros(1, 1, ph, pw)
            for idh in range(int(math.ceil(1.0 * (ph - crop) / stride)) + 1):
                for idw in range(int(math.ceil(1.0 * (pw - crop) / stride)) + 1):
                    h0, w0 = idh * stride, idw * stride
                    h1, w1 = min(h0 + crop, ph), min(w0 + crop, pw)
                    out = pte_forward(model, pte_pad(pad_img[:, :, h0:h1, w0:w1], mean, std, crop), flip)
                    outputs[:, :, h0:h1, w0:w1] += out[:, :, 0:h1 - h0, 0:w1 - w0]
                    count[:, :, h0:h1, w0:w1] += 1
            assert (count == 0).sum() == 0
            outputs = (outputs / count)[:, :, :height, :width]
        scores += F.interpolate(outputs, (h, w), mode="bilinear", align_corners=True)
    return scores


@pytest.mark.parametrize("pool", [True, False], ids=["half-res-logits", "full-res-logits"])
@pytest.mark.parametrize("h,w", [(37, 53), (61, 30), (20, 24), (90, 90)])
def test_pytorch_encoding_merge_equals_multi_eval_module(h, w, pool):
    model = ConvModel(pool=pool)
    img = image(h, w, seed=h + w)
    scales = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    proto = {"mode": "multiscale", "merge": "pytorch-encoding", "scales": scales, "flip": True,
             "base_size": 40, "crop_size": [32, 32]}
    got = protocol_scores(model, img, proto)
    want = multi_eval(model, img, base=40, crop=32, scales=scales)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
    assert same_labels_away_from_ties(want / want.sum(1, keepdim=True), predict_with_protocol(model, img, proto))


def test_pytorch_encoding_runs_the_network_only_on_crops():
    seen = []
    model = ConvModel()
    original = model._run
    model._run = lambda x: (seen.append(tuple(x.shape[2:])), original(x))[1]
    proto = {"mode": "multiscale", "merge": "pytorch-encoding", "scales": [0.5, 1.75], "flip": False,
             "base_size": 40, "crop_size": [32, 32]}
    protocol_scores(model, image(37, 53), proto)
    assert set(seen) == {(32, 32)} and len(seen) == 1 + 2 * 3  # one padded forward; 49 x 70 in a 2 x 3 grid


def test_pytorch_encoding_flip_adds_logits_before_exp():
    model = ConvModel(symmetric=True, pool=False)  # flip-equivariant: the flipped pass doubles the logits
    img = image(32, 32)  # the crop's size: no resize, so the scores are exp(logits) and exp(2 logits)
    base = {"mode": "multiscale", "merge": "pytorch-encoding", "scales": [1.0], "base_size": 32, "crop_size": [32, 32]}
    plain = protocol_scores(model, img, {**base, "flip": False})
    flipped = protocol_scores(model, img, {**base, "flip": True})
    assert torch.allclose(flipped, plain**2, rtol=1e-4)


# -- sizes and general behaviour --

def test_base_and_scaled_sizes():
    assert base_size(300, 400, None, (480, 480)) == (480, 480)
    assert base_size(300, 400, 150, (480, 480)) == (150, 200)
    assert base_size(300, 400, [64, 32], (480, 480)) == (64, 32)
    assert base_size(375, 500, {"short": 512, "long": 2048}, (512, 512)) == (512, 683)
    assert base_size(200, 1000, {"short": 512, "long": 2048}, (512, 512)) == (410, 2048)  # long side binds
    assert scaled_size(375, 500, {"short": 512, "long": 2048}, (512, 512), 0.75) == mmcv_size(375, 500, (1536, 384))
    assert mmcv_rescale_size(375, 500, 2048, 512) == mmcv_size(375, 500, (2048, 512))


def test_flip_of_a_flip_equivariant_model_changes_nothing():
    model = ConvModel(symmetric=True)
    img = image()
    for merge in ("softmax", "logits"):
        flip = protocol_scores(model, img, {"mode": "multiscale", "scales": [1.0], "flip": True, "merge": merge})
        noflip = protocol_scores(model, img, {"mode": "multiscale", "scales": [1.0], "flip": False, "merge": merge})
        assert torch.allclose(flip, noflip, atol=1e-5)


def test_whole_protocol_equals_the_models_own_pipeline():
    model = ConvModel()
    model.preprocessor = lambda ims: normalised(model, ims[0], model.input_size)
    img = image()
    assert torch.equal(predict_with_protocol(model, img, {"mode": "whole"}), torch.from_numpy(model.predict([img])[0]))


def test_label_map_models_are_refused():
    model = ConvModel()
    model.output_kind = "labels"
    with pytest.raises(ConfigError, match="outputs label maps"):
        protocol_scores(model, image(), {"mode": "multiscale", "scales": [1.0]})
