"""Image preprocessing equal to the transformers image processors of the registry models
(PIL backend): resize the uint8 image with PIL, optionally center-crop, rescale by 1/255,
normalise with the processor's mean and std (:class:`ResizeNormalize`), and the original DPT
repository's inference transform (:class:`OriginalDPTTransform`). Picklable, so DataLoader
workers can run them; checked in tests against the processors themselves (pixel values within
1e-6) and against the original's resize (OpenCV ``INTER_CUBIC`` on float images).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def constrain_to_multiple(value: float, multiple: int) -> int:
    """``value`` rounded to the nearest multiple of ``multiple`` (ties to even, as numpy and
    transformers round), at least one multiple (the references would give an empty side)."""
    return max(multiple, int(round(value / multiple)) * multiple)


def keep_aspect_size(height: int, width: int, target: tuple[int, int], multiple: int = 1,
                     keep_aspect_ratio: bool = True) -> tuple[int, int]:
    """(H, W) of transformers' DPT processor resize (isl-org/DPT's ``resize_method="minimal"``).

    With ``keep_aspect_ratio``, of the two scales target/height and target/width the one closer to
    1 scales both sides (the image changes as little as possible); each side, scale x side as the
    references compute it in floating point, is rounded to a multiple of ``multiple``.
    """
    scale_h, scale_w = target[0] / height, target[1] / width
    if keep_aspect_ratio:
        if abs(1 - scale_w) < abs(1 - scale_h):
            scale_h = scale_w
        else:
            scale_w = scale_h
    return constrain_to_multiple(scale_h * height, multiple), constrain_to_multiple(scale_w * width, multiple)


class ResizeNormalize:
    """PIL images -> float32 (N, 3, H, W).

    size: {"height", "width"} (squash to that size) or {"shortest_edge"} (aspect kept, the
    short side set, the long side truncated as transformers does); keep_aspect_ratio /
    ensure_multiple_of: DPTImageProcessor's options (:func:`keep_aspect_size`; outputs then differ
    in size from image to image); crop_size: center crop {"height", "width"} after the resize
    when ``do_center_crop``; resample: a PIL filter id (2 bilinear, 3 bicubic); mean/std per
    channel applied to pixels in [0, 1].
    """

    def __init__(self, size: dict, image_mean: Sequence[float], image_std: Sequence[float], resample: int = 2,
                 do_resize: bool = True, do_rescale: bool = True, rescale_factor: float = 1 / 255,
                 do_normalize: bool = True, do_center_crop: bool = False, crop_size: dict | None = None,
                 keep_aspect_ratio: bool = False, ensure_multiple_of: int = 1):
        self.size = dict(size)
        self.keep_aspect_ratio = bool(keep_aspect_ratio)
        self.ensure_multiple_of = int(ensure_multiple_of or 1)
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
                "do_normalize", "do_center_crop", "crop_size", "keep_aspect_ratio", "ensure_multiple_of")
        return cls(**{k: d[k] for k in keys if k in d})

    @property
    def fixed_size(self) -> bool:
        """Whether every output has :attr:`output_size` (not so when the aspect ratio is kept)."""
        return (self.do_center_crop and bool(self.crop_size)) or (
            "height" in self.size and not self.keep_aspect_ratio and self.ensure_multiple_of == 1)

    @property
    def output_size(self) -> tuple[int, int]:
        """(H, W) of every output (the crop when cropping, else the squash size; shortest_edge: square).

        With ``keep_aspect_ratio`` the nominal size: the outputs' sides vary from image to image.
        """
        if self.do_center_crop and self.crop_size:
            return int(self.crop_size["height"]), int(self.crop_size["width"])
        if "height" in self.size:
            return int(self.size["height"]), int(self.size["width"])
        e = int(self.size["shortest_edge"])
        return e, e

    def _target(self, h: int, w: int) -> tuple[int, int]:
        if "height" in self.size:
            target = int(self.size["height"]), int(self.size["width"])
            if self.keep_aspect_ratio or self.ensure_multiple_of > 1:
                return keep_aspect_size(h, w, target, self.ensure_multiple_of, self.keep_aspect_ratio)
            return target
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
        # uint8 pixels: the rescale and normalisation of every possible value, looked up (the same floats)
        lut = self._table()
        out = np.empty((3, *arr.shape[:2]), dtype=np.float32)
        for c in range(3):
            np.take(lut[c], arr[..., c], out=out[c])
        return out

    def _table(self) -> np.ndarray:
        """(3, 256) float32: :meth:`scale` of each uint8 value per channel."""
        if getattr(self, "_lut", None) is None:
            values = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)  # (1, 256, 3)
            self._lut = np.ascontiguousarray(self.scale(values)[:, 0, :])
        return self._lut

    def scale(self, arr: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) -> float32 (3, H, W) as transformers computes it: rescale in float64, cast to
        float32, normalise in float32 (:meth:`one` looks each value up in a table of this)."""
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


class OriginalDPTTransform:
    """PIL images -> float32 (N, 3, H, W) as isl-org/DPT's ``run_segmentation.py`` prepares them.

    The original reads the image with OpenCV as float64 RGB in [0, 1], resizes it with
    ``Resize(480, 480, keep_aspect_ratio=True, ensure_multiple_of=32, resize_method="minimal",
    image_interpolation_method=cv2.INTER_CUBIC)`` (:func:`keep_aspect_size`), normalises with
    mean 0.5 and std 0.5 in float64 and casts to float32. Here the bicubic resize is
    ``F.interpolate(mode="bicubic", align_corners=False)`` in float64 (Keys cubic, a = -0.75,
    half-pixel centres, edges clamped: OpenCV's ``INTER_CUBIC``), equal to a float64 numpy
    bicubic within float32 rounding and to OpenCV within 6e-5 of the normalised values when
    shrinking and 4e-6 when enlarging (OpenCV keeps its cubic coefficients in float32;
    ``tests/test_preprocess_dpt.py``); images are decoded by PIL, not OpenCV (JPEG decoders
    may differ by one level). A side the original would round to 0 keeps one multiple.
    Sizes vary with the aspect ratio, so batches need images of one shape (batch size 1).
    """

    def __init__(self, size: int = 480, ensure_multiple_of: int = 32,
                 image_mean: Sequence[float] = (0.5, 0.5, 0.5), image_std: Sequence[float] = (0.5, 0.5, 0.5)):
        self.size = int(size)
        self.ensure_multiple_of = int(ensure_multiple_of)
        self.image_mean = tuple(float(x) for x in image_mean)
        self.image_std = tuple(float(x) for x in image_std)

    @classmethod
    def from_dict(cls, d: dict) -> OriginalDPTTransform:
        keys = ("size", "ensure_multiple_of", "image_mean", "image_std")
        return cls(**{k: d[k] for k in keys if k in d})

    fixed_size = False

    @property
    def output_size(self) -> tuple[int, int]:
        """The nominal (H, W); outputs keep each image's aspect ratio."""
        return self.size, self.size

    def one(self, image: Image.Image) -> np.ndarray:
        arr = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
        h, w = arr.shape[:2]
        th, tw = keep_aspect_size(h, w, (self.size, self.size), self.ensure_multiple_of)
        x = torch.from_numpy(arr).permute(2, 0, 1)[None]
        if (th, tw) != (h, w):
            x = F.interpolate(x, size=(th, tw), mode="bicubic", align_corners=False)
        mean = torch.tensor(self.image_mean, dtype=torch.float64).view(3, 1, 1)
        std = torch.tensor(self.image_std, dtype=torch.float64).view(3, 1, 1)
        return ((x[0] - mean) / std).to(torch.float32).numpy()

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.one(im) for im in images])).float()
