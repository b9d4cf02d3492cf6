"""Letterboxing for fixed-size model inputs: geometry, quantization, and the picklable preprocessor.

An image of H x W pixels is resized with its aspect ratio kept so that it fits the model's
input of ``in_h`` x ``in_w`` pixels (one side touching the border), placed in the top-left
corner and padded bottom/right. The region it occupies -- the *valid region* -- is a pure
function of (H, W) and the input size, so postprocessing recomputes it from the original
sizes it is given and needs no state from preprocessing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

QUANTIZED_DTYPES = ("uint8", "int8")


def as_hw(size: int | Sequence[int]) -> tuple[int, int]:
    """``512`` or ``(512, 512)`` -> ``(512, 512)`` (height, width in pixels)."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def valid_region(height: int, width: int, input_size: int | Sequence[int]) -> tuple[int, int]:
    """(rows, cols) in pixels that an image of ``height`` x ``width`` occupies in the letterboxed input.

    The scale is ``min(in_h / height, in_w / width)``; each side is rounded to the nearest pixel,
    at least 1 and at most the input's side.
    """
    in_h, in_w = as_hw(input_size)
    scale = min(in_h / height, in_w / width)
    return min(in_h, max(1, round(height * scale))), min(in_w, max(1, round(width * scale)))


def quantize(real: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """Real values -> ``dtype`` (uint8 or int8) with ``q = clip(round(real / scale + zero_point))``."""
    if dtype not in QUANTIZED_DTYPES:
        raise ValueError(f"quantized dtype {dtype!r} is not one of {', '.join(QUANTIZED_DTYPES)}")
    info = np.iinfo(np.dtype(dtype))
    return np.clip(np.round(real / scale + zero_point), info.min, info.max).astype(dtype)


class LetterboxQuantize:
    """Picklable preprocessor: RGB PIL images -> NHWC batch letterboxed into the model's input.

    The real value fed for a pixel value p (0..255) is ``(p - input_mean) / input_std``; for a
    quantized input (``scale > 0``) it is then quantized with the model's own scale and zero
    point, so e.g. mean 128 / std 128 with scale 1/128 and zero point 128 feeds the raw pixel.
    For a float input the real value is fed as float32 (mean 0 / std 255 gives [0, 1]; mean 0 /
    std 1 gives [0, 255]). The padding holds the value that means a real 0.

    Attributes:
        input_size: (height, width) of the model's input in pixels.
        dtype: numpy dtype name of the model's input (``uint8``, ``int8`` or ``float32``).
        scale, zero_point: the input's quantization (scale 0 = not quantized).
    """

    def __init__(self, input_size: int | Sequence[int], dtype: str, scale: float = 0.0, zero_point: int = 0,
                 input_mean: float = 128.0, input_std: float = 128.0):
        self.input_size = as_hw(input_size)
        self.dtype = str(np.dtype(dtype))
        self.scale, self.zero_point = float(scale), int(zero_point)
        self.input_mean, self.input_std = float(input_mean), float(input_std)
        if self.scale and self.dtype not in QUANTIZED_DTYPES:
            raise ValueError(f"input quantized with scale {self.scale} must be uint8 or int8, not {self.dtype}")
        if not self.scale and self.dtype != "float32":
            raise ValueError(f"a {self.dtype} input without quantization parameters is not supported "
                             "(expected float32, or uint8/int8 with a scale and zero point)")

    @property
    def quantized(self) -> bool:
        return self.scale > 0

    def pad_value(self) -> float:
        """The stored value that means a real 0 (the zero point for a quantized input)."""
        return float(self.zero_point) if self.quantized else 0.0

    def one(self, image: Image.Image) -> np.ndarray:
        """One image -> (in_h, in_w, 3) array of ``self.dtype``: resized (bilinear), top-left, padded."""
        im = image.convert("RGB")
        rows, cols = valid_region(im.height, im.width, self.input_size)
        im = im.resize((cols, rows), resample=Image.BILINEAR)
        real = (np.asarray(im, dtype=np.float64) - self.input_mean) / self.input_std
        stored = quantize(real, self.scale, self.zero_point, self.dtype) if self.quantized else real
        out = np.full((*self.input_size, 3), self.pad_value(), dtype=self.dtype)
        out[:rows, :cols] = stored
        return out

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Images -> tensor (N, in_h, in_w, 3) of the model's input dtype, on the CPU."""
        return torch.from_numpy(np.stack([self.one(im) for im in images]))

    def describe(self) -> dict:
        """The preprocessing as data, for results."""
        return {"resize": "bilinear", "pad": "bottom/right", "pad_value": self.pad_value(),
                "input_mean": self.input_mean, "input_std": self.input_std, "input_dtype": self.dtype,
                "input_quantization": {"scale": self.scale, "zero_point": self.zero_point} if self.quantized else None}
