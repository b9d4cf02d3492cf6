"""Inference protocols beyond the model's own ``whole``-image pipeline: sliding windows and
multi-scale + flip test-time augmentation.

``whole``: the model's processor resizes (e.g. DPT-Large-ADE squashes to 480x480), logits
are resized back to the label's size (bilinear or bicubic, recorded) and argmax'd.

``slide`` (mmsegmentation's slide inference): the image is resized (``resize``: a short
side, or [H, W], or the model's input size), normalised as the model's processor does,
covered by ``crop_size`` windows every ``stride`` pixels (the last window aligned to the
border; images smaller than a crop are zero-padded after normalisation, as mmsegmentation
pads), each window's logits resized to the window and averaged where windows overlap.

``multiscale`` (PyTorch-Encoding / mmsegmentation TTA): for each scale s, the image is
resized to s times the base size (``resize``, default the model's input size), optionally
also flipped horizontally, run whole (or slide when ``crop_size`` is given), and the logits,
resized to the label's size, are averaged over scales and flips.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from harness.errors import UnsupportedError


def image_to_tensor01(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 tensor (1, 3, H, W) in [0, 1]."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def base_size(height: int, width: int, resize, model_size: Sequence[int]) -> tuple[int, int]:
    """Size (H, W) the protocol resizes an image to before scales apply.

    ``resize`` None -> the model's input size; an int -> that short side, aspect kept;
    [H, W] -> that size exactly.
    """
    if resize is None:
        return int(model_size[0]), int(model_size[1])
    if isinstance(resize, int):
        s = resize / min(height, width)
        return max(1, round(height * s)), max(1, round(width * s))
    return int(resize[0]), int(resize[1])


def _forward_logits(model, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Logits of ``x`` (normalised, on the device) as float32, resized to ``size`` when given."""
    if model.output_kind != "logits":
        raise UnsupportedError(f"protocol needs a model that outputs logits; {model.name!r} outputs label maps")
    out = model.forward(x).float()
    return out if size is None else F.interpolate(out, size=size, mode=model.upsample, align_corners=False)


def window_starts(length: int, crop: int, stride: int) -> list[int]:
    """Start offsets of windows of ``crop`` every ``stride`` covering ``length`` (last one at the border)."""
    if length <= crop:
        return [0]
    n = math.ceil((length - crop) / stride) + 1
    return sorted({min(i * stride, length - crop) for i in range(n)})


def slide_logits(model, x: torch.Tensor, crop: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    """Average the logits of ``crop`` windows every ``stride`` over a normalised (1, 3, H, W) input."""
    _, _, h, w = x.shape
    ch, cw = int(crop[0]), int(crop[1])
    pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    hh, ww = x.shape[2], x.shape[3]
    total = None
    count = torch.zeros((1, 1, hh, ww), device=x.device)
    for top in window_starts(hh, ch, int(stride[0])):
        for left in window_starts(ww, cw, int(stride[1])):
            win = x[:, :, top:top + ch, left:left + cw]
            logits = _forward_logits(model, win, (win.shape[2], win.shape[3]))
            if total is None:
                total = torch.zeros((1, logits.shape[1], hh, ww), device=logits.device)
            total[:, :, top:top + ch, left:left + cw] += logits
            count[:, :, top:top + ch, left:left + cw] += 1
    return (total / count)[:, :, :h, :w]


def protocol_logits(model, image: Image.Image, protocol: dict) -> torch.Tensor:
    """Logits (1, C, H, W) at the image's own size under ``protocol`` (slide or multiscale)."""
    mode = protocol.get("mode", "whole")
    h, w = image.height, image.width
    x01 = image_to_tensor01(image).to(model.device)
    bh, bw = base_size(h, w, protocol.get("resize"), model.input_size)
    scales = protocol.get("scales", [1.0]) if mode == "multiscale" else [1.0]
    flips = [False, True] if (mode == "multiscale" and protocol.get("flip", False)) else [False]
    crop = protocol.get("crop_size")
    acc = None
    for s in scales:
        size = (max(1, round(bh * s)), max(1, round(bw * s)))
        xs = model.normalize(F.interpolate(x01, size=size, mode="bilinear", align_corners=False)
                             if size != (h, w) else x01)
        for flip in flips:
            xin = torch.flip(xs, dims=[3]) if flip else xs
            if mode == "slide" or crop is not None:
                logits = slide_logits(model, xin, crop, protocol.get("stride", crop))
            else:
                logits = _forward_logits(model, xin)
            if flip:
                logits = torch.flip(logits, dims=[3])
            logits = F.interpolate(logits, size=(h, w), mode=model.upsample, align_corners=False)
            acc = logits if acc is None else acc + logits
    return acc / (len(scales) * len(flips))


def predict_with_protocol(model, image: Image.Image, protocol: dict) -> torch.Tensor:
    """int64 label map (H, W) on the model's device for ``image`` under ``protocol``."""
    return protocol_logits(model, image, protocol)[0].argmax(0)
