"""Image preprocessing equal to the transformers image processors of the registry models
(PIL backend): resize the uint8 image with PIL, optionally center-crop, rescale by 1/255,
normalise with the processor's mean and std. Picklable, so DataLoader workers can run it;
checked against the processors themselves in tests (pixel values within 1e-6).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image


class ResizeNormalize:
    """PIL images -> float32 (N, 3, H, W).

    size: {"height", "width"} (squash to that size) or {"shortest_edge"} (aspect kept, the
    short side set, the long side truncated as transformers does); crop_size: center crop
    {"height", "width"} after the resize when ``do_center_crop``; resample: a PIL filter id
    (2 bilinear, 3 bicubic); mean/std per channel applied to pixels in [0, 1].
    """

    def __init__(self, size: dict, image_mean: Sequence[float], image_std: Sequence[float], resample: int = 2,
                 do_resize: bool = True, do_rescale: bool = True, rescale_factor: float = 1 / 255,
                 do_normalize: bool = True, do_center_crop: bool = False, crop_size: dict | None = None):
        self.size = dict(size)
        self.image_mean = tuple(float(x) for x in image_mean)
        self.image_std = tuple(float(x) for x in image_std)
        self.resample = int(resample)
        self.do_resize, self.do_rescale, self.do_normalize = do_resize, do_rescale, do_normalize
        self.rescale_factor = float(rescale_factor)
        self.do_center_crop = bool(do_center_crop)
        self.crop_size = dict(crop_size) if crop_size else None

    @classmethod
    def from_processor_dict(cls, d: dict) -> ResizeNormalize:
        keys = ("size", "image_mean", "image_std", "resample", "do_resize", "do_rescale", "rescale_factor",
                "do_normalize", "do_center_crop", "crop_size")
        return cls(**{k: d[k] for k in keys if k in d})

    @property
    def output_size(self) -> tuple[int, int]:
        """(H, W) of every output (the crop when cropping, else the squash size; shortest_edge: square)."""
        if self.do_center_crop and self.crop_size:
            return int(self.crop_size["height"]), int(self.crop_size["width"])
        if "height" in self.size:
            return int(self.size["height"]), int(self.size["width"])
        e = int(self.size["shortest_edge"])
        return e, e

    def _target(self, h: int, w: int) -> tuple[int, int]:
        if "height" in self.size:
            return int(self.size["height"]), int(self.size["width"])
        short = int(self.size["shortest_edge"])
        if h <= w:
            return short, int(short * w / h)
        return int(short * h / w), short

    def one(self, image: Image.Image) -> np.ndarray:
        im = image.convert("RGB")
        if self.do_resize:
            th, tw = self._target(im.height, im.width)
            if (th, tw) != (im.height, im.width):
                im = im.resize((tw, th), resample=Image.Resampling(self.resample))
        arr = np.asarray(im)
        if self.do_center_crop and self.crop_size:
            arr = _center_crop(arr, int(self.crop_size["height"]), int(self.crop_size["width"]))
        out = arr.astype(np.float64) * self.rescale_factor if self.do_rescale else arr.astype(np.float64)
        out = out.astype(np.float32)
        if self.do_normalize:
            out = (out - np.array(self.image_mean, dtype=np.float32)) / np.array(self.image_std, dtype=np.float32)
        return out.transpose(2, 0, 1)

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.one(im) for im in images])).float()


def _center_crop(arr: np.ndarray, ch: int, cw: int) -> np.ndarray:
    """Center crop (H, W, 3) to (ch, cw), zero-padding first when the image is smaller (as transformers does)."""
    h, w = arr.shape[:2]
    if h < ch or w < cw:
        ph, pw = max(ch, h), max(cw, w)
        padded = np.zeros((ph, pw, arr.shape[2]), dtype=arr.dtype)
        top, left = (ph - h) // 2, (pw - w) // 2
        padded[top:top + h, left:left + w] = arr
        arr, h, w = padded, ph, pw
    top, left = (h - ch) // 2, (w - cw) // 2
    return arr[top:top + ch, left:left + cw]
