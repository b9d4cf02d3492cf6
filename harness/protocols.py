"""Inference protocols beyond the model's own ``whole``-image pipeline: sliding windows and
multi-scale + flip test-time augmentation, each reproducing a reference implementation
(docs/PROTOCOLS.md says which, and what differs).

``whole``: the model's processor resizes (e.g. DPT-Large-ADE squashes to 480x480), logits are
resized back to the label's size (bilinear or bicubic, recorded) and argmax'd. The cell runs it
through the model's own preprocessor; :func:`protocol_scores` does the same here.

``slide`` (mmsegmentation ``EncoderDecoder.slide_inference``): the image is resized
(``resize``), normalised as the model's processor does, and covered by ``crop_size`` windows on
mmsegmentation's grid (:func:`window_bounds`: the last window pushed back inside the image, a
window never padded: an image smaller than a crop is decoded as it is); each window's logits are
resized to the window, summed and divided by the count of windows covering each pixel, then
resized to the image and argmax'd.

``multiscale``: for each scale and, with ``flip``, also the horizontally flipped image, the
image is resized, run whole (or slide with ``crop_size``), and the results merged by ``merge``:

- ``softmax`` (mmsegmentation 0.x ``aug_test`` / 1.x ``SegTTAModel``, the default): each
  augmentation's logits resized to the network input, then to the image, softmax over classes,
  flipped back, averaged over augmentations;
- ``pytorch-encoding`` (PyTorch-Encoding ``MultiEvalModule``, the protocol of the DPT paper's
  ADE20K numbers): long side ``ceil(base_size * scale)``, aspect kept, bilinear with
  ``align_corners=True``; one forward of the image padded to ``crop_size`` when it fits, else
  padded windows every ``int(crop_size * 2/3)``; a flipped pass's logits added to the plain one's
  before ``exp``; scores resized to the image and summed over scales (:func:`pytorch_encoding_scores`);
- ``logits``: each augmentation's logits resized to the image in one step and averaged (no
  reference; segbench's behaviour before ``merge`` existed).

Sizes: ``resize`` None -> the model's input size; an int -> that short side, aspect kept;
[H, W] -> that size; {short: S, long: L} -> mmcv's keep-ratio rescale to fit S x L
(``Resize(scale=(L, S), keep_ratio=True)``), with multi-scale ratios applied to S and L as
mmsegmentation's ``MultiScaleFlipAug`` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from harness.errors import ConfigError, UnsupportedError
from harness.models.postprocess import upsample_argmax

MERGES = ("softmax", "pytorch-encoding", "logits")
DEFAULT_MERGE = "softmax"
# PyTorch-Encoding's defaults (encoding/models/sseg/base.py, experiments/segmentation/test.py)
PTE_BASE_SIZE = 520
PTE_CROP_SIZE = 480
PTE_STRIDE_RATE = 2.0 / 3.0


def image_to_tensor01(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 tensor (1, 3, H, W) in [0, 1]."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def mmcv_rescale_size(height: int, width: int, long: float, short: float) -> tuple[int, int]:
    """(H, W) of mmcv's keep-ratio rescale of an image to fit ``long`` x ``short`` (``rescale_size``).

    scale = min(long / long side, short / short side); each side ``int(side * scale + 0.5)``.
    """
    scale = min(max(long, short) / max(height, width), min(long, short) / min(height, width))
    return int(height * scale + 0.5), int(width * scale + 0.5)


def base_size(height: int, width: int, resize, model_size: Sequence[int]) -> tuple[int, int]:
    """Size (H, W) the protocol resizes an image to before scales apply (``resize`` as in the module doc)."""
    if resize is None:
        return int(model_size[0]), int(model_size[1])
    if isinstance(resize, dict):
        return mmcv_rescale_size(height, width, resize["long"], resize["short"])
    if isinstance(resize, int):
        s = resize / min(height, width)
        return max(1, round(height * s)), max(1, round(width * s))
    return int(resize[0]), int(resize[1])


def scaled_size(height: int, width: int, resize, model_size: Sequence[int], scale: float) -> tuple[int, int]:
    """Size (H, W) of an image at multi-scale ratio ``scale``.

    For the {short, long} form the ratio scales the bounds first (``int(L * r)``, ``int(S * r)``,
    as mmsegmentation's MultiScaleFlipAug), then the keep-ratio rescale applies; otherwise the
    base size is scaled and rounded.
    """
    if isinstance(resize, dict):
        return mmcv_rescale_size(height, width, int(resize["long"] * scale), int(resize["short"] * scale))
    bh, bw = base_size(height, width, resize, model_size)
    return max(1, round(bh * scale)), max(1, round(bw * scale))


def _forward_logits(model, x: torch.Tensor) -> torch.Tensor:
    """float32 logits of ``x`` (normalised, on the device)."""
    if model.output_kind != "logits":
        raise UnsupportedError(f"protocol needs a model that outputs logits; {model.name!r} outputs label maps")
    return model.forward(x).float()


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def window_bounds(length: int, crop: int, stride: int) -> list[tuple[int, int]]:
    """(start, stop) of mmsegmentation's sliding windows along one axis of ``length`` pixels.

    ``max(length - crop + stride - 1, 0) // stride + 1`` windows; window i ends at
    ``min(i * stride + crop, length)`` and starts ``crop`` before its end (at 0 at the least), so
    no window is padded and one shorter than the axis is the whole axis.
    """
    n = max(length - crop + stride - 1, 0) // stride + 1
    out = []
    for i in range(n):
        stop = min(i * stride + crop, length)
        out.append((max(stop - crop, 0), stop))
    return out


def slide_logits(model, x: torch.Tensor, crop: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    """mmsegmentation's slide inference over a normalised (1, 3, H, W) input: logits (1, C, H, W)."""
    _, _, h, w = x.shape
    total = None
    count = torch.zeros((1, 1, h, w), device=x.device)
    for top, bottom in window_bounds(h, int(crop[0]), int(stride[0])):
        for left, right in window_bounds(w, int(crop[1]), int(stride[1])):
            logits = _resize(_forward_logits(model, x[:, :, top:bottom, left:right]), (bottom - top, right - left),
                             model.upsample)
            if total is None:
                total = torch.zeros((1, logits.shape[1], h, w), device=logits.device)
            total[:, :, top:bottom, left:right] += logits
            count[:, :, top:bottom, left:right] += 1
    return total / count


def _augmented_logits(model, x01: torch.Tensor, protocol: dict, size: tuple[int, int], flip: bool) -> torch.Tensor:
    """Logits of one augmentation (image at ``size``, flipped or not) at the network input's size, unflipped."""
    h, w = x01.shape[-2:]
    xs = model.normalize(F.interpolate(x01, size=size, mode="bilinear", align_corners=False)
                         if size != (h, w) else x01)
    if flip:
        xs = torch.flip(xs, dims=[3])
    crop = protocol.get("crop_size")
    if crop is not None:
        logits = slide_logits(model, xs, crop, protocol.get("stride", crop))
    else:
        logits = _forward_logits(model, xs)
        if protocol.get("merge", DEFAULT_MERGE) == "softmax":  # mmsegmentation's encode_decode: to the input size
            logits = _resize(logits, size, model.upsample)
    return torch.flip(logits, dims=[3]) if flip else logits


def merged_scores(model, x01: torch.Tensor, protocol: dict) -> torch.Tensor:
    """``softmax`` or ``logits`` merge over scales and flips: (1, C, H, W) at the image's size."""
    h, w = x01.shape[-2:]
    multiscale = protocol.get("mode", "whole") == "multiscale"
    scales = protocol.get("scales", [1.0]) if multiscale else [1.0]
    flips = [False, True] if (multiscale and protocol.get("flip", False)) else [False]
    softmax = protocol.get("merge", DEFAULT_MERGE) == "softmax"
    acc = None
    for s in scales:
        size = scaled_size(h, w, protocol.get("resize"), model.input_size, s)
        for flip in flips:
            out = _resize(_augmented_logits(model, x01, protocol, size, flip), (h, w), model.upsample)
            if softmax:
                out = out.softmax(dim=1)
            acc = out if acc is None else acc + out
    return acc / (len(scales) * len(flips))


def _pte_pad(x: torch.Tensor, pad_value: torch.Tensor, crop: int) -> torch.Tensor:
    """PyTorch-Encoding ``pad_image``: pad bottom and right up to ``crop`` with the normalised black."""
    _, _, h, w = x.shape
    ph, pw = max(crop - h, 0), max(crop - w, 0)
    if not (ph or pw):
        return x
    out = pad_value.view(1, 3, 1, 1).expand(x.shape[0], 3, h + ph, w + pw).clone()
    out[:, :, :h, :w] = x
    return out


def _pte_inference(model, x: torch.Tensor, flip: bool) -> torch.Tensor:
    """PyTorch-Encoding ``module_inference``: exp(logits [+ flip(logits(flip(x)))]), at the input's size."""
    def logits(inp):
        out = _forward_logits(model, inp)
        if tuple(out.shape[-2:]) != tuple(inp.shape[-2:]):  # its models upsample to the input themselves
            out = F.interpolate(out, size=inp.shape[-2:], mode="bilinear", align_corners=True)
        return out

    out = logits(x)
    if flip:
        out = out + torch.flip(logits(torch.flip(x, dims=[3])), dims=[3])
    return out.exp()


def _pte_windows(model, x: torch.Tensor, pad_value: torch.Tensor, crop: int, flip: bool) -> torch.Tensor:
    """PyTorch-Encoding's grid evaluation of one scale (image larger than a crop): averaged scores."""
    padded = _pte_pad(x, pad_value, crop)
    _, _, ph, pw = padded.shape
    stride = int(crop * PTE_STRIDE_RATE)
    rows, cols = math.ceil((ph - crop) / stride) + 1, math.ceil((pw - crop) / stride) + 1
    total = count = None
    for i in range(rows):
        for j in range(cols):
            h0, w0 = i * stride, j * stride
            h1, w1 = min(h0 + crop, ph), min(w0 + crop, pw)
            out = _pte_inference(model, _pte_pad(padded[:, :, h0:h1, w0:w1], pad_value, crop), flip)
            if total is None:
                total = torch.zeros((1, out.shape[1], ph, pw), device=out.device)
                count = torch.zeros((1, 1, ph, pw), device=out.device)
            total[:, :, h0:h1, w0:w1] += out[:, :, :h1 - h0, :w1 - w0]
            count[:, :, h0:h1, w0:w1] += 1
    return total / count


def pytorch_encoding_scores(model, x01: torch.Tensor, protocol: dict) -> torch.Tensor:
    """PyTorch-Encoding ``MultiEvalModule.forward`` for one image: summed scores (1, C, H, W).

    The normalised image (the model's mean and std) is resized per scale with its long side
    ``ceil(base_size * scale)`` (short side ``int(short * long_new / long + 0.5)``, bilinear,
    ``align_corners=True``); a scale that fits the crop runs once on the image padded to the crop,
    a larger one on padded windows (:func:`_pte_windows`); each scale's scores, cropped to the
    resized image, are resized to the image (bilinear, ``align_corners=True``) and summed.
    """
    h, w = x01.shape[-2:]
    crop = int(protocol.get("crop_size", [PTE_CROP_SIZE])[0])
    base = int(protocol.get("base_size", PTE_BASE_SIZE))
    flip = bool(protocol.get("flip", True))
    x = model.normalize(x01)
    pad_value = model.normalize(torch.zeros((1, 3, 1, 1), device=x.device, dtype=x.dtype)).flatten()
    scores = None
    for scale in protocol.get("scales", [1.0]):
        long_size = int(math.ceil(base * scale))
        if h > w:
            height, width = long_size, int(1.0 * w * long_size / h + 0.5)
        else:
            height, width = int(1.0 * h * long_size / w + 0.5), long_size
        cur = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=True)
        if long_size <= crop:
            out = _pte_inference(model, _pte_pad(cur, pad_value, crop), flip)
        else:  # padded (where a side is shorter than the crop) and covered by windows
            out = _pte_windows(model, cur, pad_value, crop, flip)
        score = F.interpolate(out[:, :, :height, :width], size=(h, w), mode="bilinear", align_corners=True)
        scores = score if scores is None else scores + score
    return scores


def protocol_scores(model, image: Image.Image, protocol: dict) -> torch.Tensor:
    """Scores (1, C, H, W) at the image's own size under ``protocol``, whose argmax is the prediction.

    Logits for ``whole``, ``slide`` and ``merge: logits``; mean probabilities for ``softmax``;
    summed exp-scores for ``pytorch-encoding``.
    """
    mode = protocol.get("mode", "whole")
    x01 = image_to_tensor01(image).to(model.device)
    if mode == "whole":
        logits = _forward_logits(model, model.preprocess([image]).to(model.device))
        return _resize(logits, (image.height, image.width), model.upsample)
    if mode == "slide":
        size = base_size(image.height, image.width, protocol.get("resize"), model.input_size)
        return _resize(_augmented_logits(model, x01, {**protocol, "merge": "logits"}, size, False),
                       (image.height, image.width), model.upsample)
    merge = protocol.get("merge", DEFAULT_MERGE)
    if merge not in MERGES:
        raise ConfigError(f"protocol.merge {merge!r} is not one of {', '.join(MERGES)}")
    if merge == "pytorch-encoding":
        return pytorch_encoding_scores(model, x01, protocol)
    return merged_scores(model, x01, protocol)


def predict_with_protocol(model, image: Image.Image, protocol: dict) -> torch.Tensor:
    """int64 label map (H, W) on the model's device for ``image`` under ``protocol``.

    Single-augmentation protocols (``whole``, ``slide``) resize the logits and take the argmax with
    :func:`harness.models.postprocess.upsample_argmax` (the same label map, memory bounded).
    """
    mode = protocol.get("mode", "whole")
    h, w = image.height, image.width
    if mode == "whole":
        logits = _forward_logits(model, model.preprocess([image]).to(model.device))
        return upsample_argmax(logits[0], (h, w), model.upsample)
    if mode == "slide":
        x01 = image_to_tensor01(image).to(model.device)
        size = base_size(h, w, protocol.get("resize"), model.input_size)
        logits = _augmented_logits(model, x01, {**protocol, "merge": "logits"}, size, False)
        return upsample_argmax(logits[0], (h, w), model.upsample)
    return protocol_scores(model, image, protocol)[0].argmax(0)
