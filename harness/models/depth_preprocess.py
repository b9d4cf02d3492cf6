"""Image preprocessing of the depth models, equal to each model's own image processor.

One picklable :class:`DepthPreprocess` reproduces five pipelines, named by ``kind``:

- ``"dpt"`` -- transformers' DPTImageProcessor (PIL backend; DPT, DPT-BEiT/Swin, Depth Anything):
  output size from ``size`` with ``keep_aspect_ratio`` (scale as little as possible) and
  ``ensure_multiple_of`` (round half to even, as Python's ``round``), PIL resize of the uint8
  image with ``resample``, rescale, normalise, then with ``do_pad`` a centred zero pad to a
  multiple of ``size_divisor``;
- ``"glpn"`` -- GLPNImageProcessor: PIL resize to the size rounded *down* to a multiple of
  ``size_divisor``, rescale, normalise only when ``do_normalize``;
- ``"zoedepth"`` -- ZoeDepthImageProcessor: rescale, reflect pad by ``int(sqrt(side / 2) * 3)``
  on each border, resize of the float image with ``torch.nn.functional.interpolate``
  (``align_corners=True``), normalise;
- ``"depth_pro"`` -- DepthProImageProcessor: rescale and normalise first (fused: pixel values
  0..255 against mean x 255 and std x 255 in float32), then a bilinear resize of the float
  tensor (``align_corners=False``, no antialiasing);
- ``"midas"`` -- the original MiDaS ``Resize`` + ``NormalizeImage`` + ``PrepareForNet``
  transforms: RGB / 255 in float64, size from ``resize_method`` (``upper_bound``,
  ``lower_bound`` or ``minimal``) kept to multiples of ``ensure_multiple_of``, bicubic resize
  of the float image (cv2 ``INTER_CUBIC``: a = -0.75, half-pixel centres, edge pixels
  repeated; computed with torch's bicubic on float64), normalise, float32.

All return float32 arrays (3, H, W). Images whose processed sizes differ cannot be stacked
into one batch: :meth:`DepthPreprocess.__call__` says so (use :func:`group_by_shape`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from harness.errors import ConfigError
from harness.models.hf import _plain, _stem

KINDS = ("dpt", "glpn", "zoedepth", "depth_pro", "midas")
RESIZE_METHODS = ("minimal", "upper_bound", "lower_bound")


def to_multiple(value: float, multiple: float, min_val: float = 0, max_val: float | None = None) -> int:
    """``value`` rounded (half to even) to a multiple of ``multiple``; floored when above ``max_val``,
    ceiled when below ``min_val`` (the rule of the DPT, ZoeDepth and MiDaS resizers)."""
    x = np.round(value / multiple) * multiple
    if max_val is not None and x > max_val:
        x = np.floor(value / multiple) * multiple
    if x < min_val:
        x = np.ceil(value / multiple) * multiple
    return int(x)


def aspect_size(h: int, w: int, out_h: int, out_w: int, keep_aspect_ratio: bool, multiple: float,
                method: str = "minimal") -> tuple[int, int]:
    """Output (height, width) in pixels for an (h, w) image and a target (out_h, out_w).

    ``method``: ``minimal`` scales as little as possible (the transformers processors),
    ``upper_bound`` fits inside the target, ``lower_bound`` covers it (MiDaS ``Resize``).
    """
    sh, sw = out_h / h, out_w / w
    if keep_aspect_ratio:
        if method == "minimal":
            s = sw if abs(1 - sw) < abs(1 - sh) else sh
        elif method == "upper_bound":
            s = sw if sw < sh else sh
        else:
            s = sw if sw > sh else sh
        sh = sw = s
    if method == "upper_bound":
        return to_multiple(sh * h, multiple, max_val=out_h), to_multiple(sw * w, multiple, max_val=out_w)
    if method == "lower_bound":
        return to_multiple(sh * h, multiple, min_val=out_h), to_multiple(sw * w, multiple, min_val=out_w)
    return to_multiple(sh * h, multiple), to_multiple(sw * w, multiple)


def _normalize(x: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(3, H, W) -> (x - mean) / std per channel, in the array's dtype (as transformers' numpy normalize)."""
    m = np.asarray(mean, dtype=x.dtype)[:, None, None]
    s = np.asarray(std, dtype=x.dtype)[:, None, None]
    return (x - m) / s


def _rescale(x: np.ndarray, factor: float) -> np.ndarray:
    """uint8 or float (3, H, W) -> float32 ``x * factor`` computed in float64 (transformers' rescale)."""
    return (x.astype(np.float64) * factor).astype(np.float32)


class DepthPreprocess:
    """RGB PIL images -> float32 (N, 3, H, W): the preprocessing of one depth model (see the module doc).

    size: {"height", "width"} target in pixels (unused by ``glpn``); resample: PIL filter id
    (2 bilinear, 3 bicubic) for ``dpt``/``glpn``, and for ``zoedepth``/``depth_pro`` it picks the
    torch mode (2 -> bilinear, 3 -> bicubic); image_mean/std apply to pixels in [0, 1].
    """

    def __init__(self, kind: str, size: dict | None = None, image_mean: Sequence[float] = (0.5, 0.5, 0.5),
                 image_std: Sequence[float] = (0.5, 0.5, 0.5), resample: int = 3, do_resize: bool = True,
                 do_rescale: bool = True, rescale_factor: float = 1 / 255, do_normalize: bool = True,
                 keep_aspect_ratio: bool = False, ensure_multiple_of: float = 1, do_pad: bool = False,
                 size_divisor: int | None = None, resize_method: str = "minimal"):
        if kind not in KINDS:
            raise ConfigError(f"depth preprocessing kind {kind!r} is not one of {', '.join(KINDS)}")
        if resize_method not in RESIZE_METHODS:
            raise ConfigError(f"resize_method {resize_method!r} is not one of {', '.join(RESIZE_METHODS)}")
        if kind != "glpn" and do_resize and not (size and {"height", "width"} <= set(size)):
            raise ConfigError(f"{kind} preprocessing needs size {{height, width}}, got {size!r}")
        self.kind = kind
        self.size = {k: int(v) for k, v in (size or {}).items() if v is not None}
        self.image_mean = tuple(float(x) for x in image_mean) if image_mean is not None else None
        self.image_std = tuple(float(x) for x in image_std) if image_std is not None else None
        self.resample = int(resample)
        self.do_resize, self.do_rescale, self.do_normalize = bool(do_resize), bool(do_rescale), bool(do_normalize)
        self.rescale_factor = float(rescale_factor)
        self.keep_aspect_ratio = bool(keep_aspect_ratio)
        self.ensure_multiple_of = ensure_multiple_of
        self.do_pad = bool(do_pad)
        self.size_divisor = int(size_divisor) if size_divisor else None
        self.resize_method = resize_method
        if self.do_normalize and (self.image_mean is None or self.image_std is None):
            raise ConfigError(f"{kind} preprocessing normalises but has no image_mean/image_std")

    # -- facts ------------------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int]:
        """Nominal (height, width) in pixels (the processor's ``size``; GLPN: none, (0, 0))."""
        if self.kind == "glpn" or not self.size:
            return (0, 0)
        return self.size["height"], self.size["width"]

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """(height, width) of the network input for an (h, w) image, padding included."""
        if self.kind == "glpn":
            d = self.size_divisor or 32
            return (h // d * d, w // d * d) if self.do_resize else (h, w)
        if self.kind == "zoedepth" and self.do_pad:
            h, w = h + 2 * zoe_pad(h), w + 2 * zoe_pad(w)
        if self.do_resize:
            method = self.resize_method if self.kind == "midas" else "minimal"
            h, w = aspect_size(h, w, self.size["height"], self.size["width"], self.keep_aspect_ratio,
                               self.ensure_multiple_of, method)
        if self.kind == "dpt" and self.do_pad and self.size_divisor:
            h, w = (math.ceil(h / self.size_divisor) * self.size_divisor,
                    math.ceil(w / self.size_divisor) * self.size_divisor)
        return h, w

    def describe(self) -> dict:
        """The settings as plain data (recorded in results)."""
        keys = ("kind", "size", "image_mean", "image_std", "resample", "do_resize", "do_rescale", "rescale_factor",
                "do_normalize", "keep_aspect_ratio", "ensure_multiple_of", "do_pad", "size_divisor", "resize_method")
        d = {k: getattr(self, k) for k in keys}
        d["size"] = dict(self.size)
        d["image_mean"] = list(self.image_mean) if self.image_mean else None
        d["image_std"] = list(self.image_std) if self.image_std else None
        return d

    # -- the pipelines ----------------------------------------------------------------
    def one(self, image: Image.Image) -> np.ndarray:
        """One RGB PIL image -> float32 (3, H, W)."""
        im = image.convert("RGB")
        return getattr(self, f"_{self.kind}")(im).astype(np.float32, copy=False)

    def _pil_resized(self, im: Image.Image, h: int, w: int) -> np.ndarray:
        if (h, w) != (im.height, im.width):
            im = im.resize((w, h), resample=Image.Resampling(self.resample))
        return np.asarray(im).transpose(2, 0, 1)

    def _dpt(self, im: Image.Image) -> np.ndarray:
        if self.do_resize:
            h, w = aspect_size(im.height, im.width, self.size["height"], self.size["width"],
                               self.keep_aspect_ratio, self.ensure_multiple_of)
            x = self._pil_resized(im, h, w)
        else:
            x = np.asarray(im).transpose(2, 0, 1)
        x = _rescale(x, self.rescale_factor) if self.do_rescale else x.astype(np.float32)
        if self.do_normalize:
            x = _normalize(x, self.image_mean, self.image_std)
        if self.do_pad and self.size_divisor:
            x = _center_pad(x, self.size_divisor)
        return x

    def _glpn(self, im: Image.Image) -> np.ndarray:
        h, w = self.output_size(im.height, im.width)
        x = self._pil_resized(im, h, w)
        x = _rescale(x, self.rescale_factor) if self.do_rescale else x.astype(np.float32)
        return _normalize(x, self.image_mean, self.image_std) if self.do_normalize else x

    def _zoedepth(self, im: Image.Image) -> np.ndarray:
        x = np.asarray(im).transpose(2, 0, 1)
        x = _rescale(x, self.rescale_factor) if self.do_rescale else x.astype(np.float32)
        if self.do_pad:
            ph, pw = zoe_pad(x.shape[1]), zoe_pad(x.shape[2])
            x = np.pad(x, ((0, 0), (ph, ph), (pw, pw)), mode="reflect")
        if self.do_resize:
            h, w = aspect_size(x.shape[1], x.shape[2], self.size["height"], self.size["width"],
                               self.keep_aspect_ratio, self.ensure_multiple_of)
            mode = "bicubic" if self.resample == 3 else "bilinear"
            t = torch.nn.functional.interpolate(torch.from_numpy(np.ascontiguousarray(x))[None], (h, w), mode=mode,
                                                align_corners=True)
            x = t[0].numpy()
        return _normalize(x, self.image_mean, self.image_std) if self.do_normalize else x

    def _depth_pro(self, im: Image.Image) -> torch.Tensor:
        t = torch.from_numpy(np.asarray(im).transpose(2, 0, 1).copy())
        if self.do_rescale and self.do_normalize:
            mean = torch.tensor(self.image_mean) * (1.0 / self.rescale_factor)
            std = torch.tensor(self.image_std) * (1.0 / self.rescale_factor)
            t = (t.to(torch.float32) - mean[:, None, None]) / std[:, None, None]
        elif self.do_rescale:
            t = t.to(torch.float32) * self.rescale_factor
        elif self.do_normalize:
            t = (t.to(torch.float32) - torch.tensor(self.image_mean)[:, None, None]) / \
                torch.tensor(self.image_std)[:, None, None]
        if self.do_resize:
            mode = "bicubic" if self.resample == 3 else "bilinear"
            t = torch.nn.functional.interpolate(t[None].float(), (self.size["height"], self.size["width"]), mode=mode,
                                                align_corners=False, antialias=False)[0]
        return t.numpy()

    def _midas(self, im: Image.Image) -> np.ndarray:
        x = np.asarray(im).astype(np.float64) / 255.0
        if self.do_resize:
            h, w = aspect_size(im.height, im.width, self.size["height"], self.size["width"], self.keep_aspect_ratio,
                               self.ensure_multiple_of, self.resize_method)
            t = torch.from_numpy(x.transpose(2, 0, 1).copy())[None]
            x = cubic_resize(t, h, w)[0].numpy().transpose(1, 2, 0)
        x = (x - np.asarray(self.image_mean)) / np.asarray(self.image_std)
        return np.ascontiguousarray(x.transpose(2, 0, 1)).astype(np.float32)

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        arrays = [self.one(im) for im in images]
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            sizes = ", ".join(f"{im.width}x{im.height}" for im in images)
            raise ConfigError(f"images of sizes {sizes} give network inputs of different sizes "
                              f"({', '.join(f'{s[2]}x{s[1]}' for s in sorted(shapes))}) under this model's "
                              f"aspect-preserving preprocessing, so they cannot form one batch: use batch size 1 "
                              f"or images of one size (predict() groups them itself)")
        return torch.from_numpy(np.stack(arrays))


def cubic_resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Bicubic resize of (N, C, H, W) as cv2 ``INTER_CUBIC`` does (a = -0.75, half-pixel centres,
    border pixels repeated, no antialiasing): torch's bicubic with ``align_corners=False``."""
    if tuple(x.shape[-2:]) == (h, w):
        return x
    return torch.nn.functional.interpolate(x, (h, w), mode="bicubic", align_corners=False)


def zoe_pad(side: int) -> int:
    """ZoeDepth's reflect padding in pixels for a side of ``side`` pixels: ``int(sqrt(side / 2) * 3)``."""
    return int(np.sqrt(side / 2) * 3)


def _center_pad(x: np.ndarray, divisor: int) -> np.ndarray:
    """Zero-pad (C, H, W) to multiples of ``divisor``, the extra row/column at the bottom/right (DPT pad_image)."""
    pads = []
    for side in x.shape[1:]:
        extra = math.ceil(side / divisor) * divisor - side
        pads.append((extra // 2, extra - extra // 2))
    return np.pad(x, ((0, 0), *pads))


def group_by_shape(preprocessor: DepthPreprocess, images: Sequence[Image.Image]) -> list[list[int]]:
    """Indices of ``images`` grouped so that each group's network inputs share one size (input order kept)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(preprocessor.output_size(im.height, im.width), []).append(i)
    return list(groups.values())


# image-processor type stem -> (pipeline kind, PIL-backend module and class; None = no PIL class)
PROCESSOR_KINDS = {
    "DPT": ("dpt", "transformers.models.dpt.image_processing_pil_dpt", "DPTImageProcessorPil"),
    "GLPN": ("glpn", "transformers.models.glpn.image_processing_pil_glpn", "GLPNImageProcessorPil"),
    "ZoeDepth": ("zoedepth", "transformers.models.zoedepth.image_processing_pil_zoedepth",
                 "ZoeDepthImageProcessorPil"),
    "DepthPro": ("depth_pro", None, None),
}
# DepthProImageProcessor's class defaults (its only implementation needs torchvision, so they are written here)
DEPTH_PRO_DEFAULTS = {"size": {"height": 1536, "width": 1536}, "resample": 2, "image_mean": [0.5, 0.5, 0.5],
                      "image_std": [0.5, 0.5, 0.5], "do_resize": True, "do_rescale": True,
                      "rescale_factor": 1 / 255, "do_normalize": True}
OPTION_KEYS = ("size", "image_mean", "image_std", "resample", "do_resize", "do_rescale", "rescale_factor",
               "do_normalize", "keep_aspect_ratio", "ensure_multiple_of", "do_pad", "size_divisor")


def processor_stem(d: dict) -> str | None:
    """``"DPT"`` for ``DPTImageProcessor``/``DPTImageProcessorFast``/``DPTFeatureExtractor``..., else None."""
    return _stem(d)


def resolved_options(d: dict, source: str) -> dict:
    """Effective options of a depth image-processor config dict, the class defaults filled in.

    ``d`` is the content of a preprocessor_config.json (or segbench's own ``{"kind": "midas", ...}``).
    The PIL-backend class named by ``image_processor_type`` is built from ``d`` so that absent keys
    take that class's defaults (DPT resizes bicubically, ZoeDepth pads, GLPN floors to 32...).
    """
    if d.get("kind") == "midas":
        return {k: v for k, v in d.items() if k != "image_processor_type"}
    stem = processor_stem(d)
    if stem not in PROCESSOR_KINDS:
        raise ConfigError(f"{source}: image processor type {d.get('image_processor_type')!r} is not a depth "
                          f"processor segbench reproduces (expected one of "
                          f"{', '.join(k + 'ImageProcessor' for k in PROCESSOR_KINDS)})")
    kind, module, cls_name = PROCESSOR_KINDS[stem]
    known = {k: v for k, v in d.items() if k not in ("image_processor_type", "feature_extractor_type",
                                                      "processor_class", "auto_map")}
    if module is None:
        opts = {**DEPTH_PRO_DEFAULTS, **{k: v for k, v in known.items() if k in OPTION_KEYS}}
    else:
        import importlib

        cls = getattr(importlib.import_module(module), cls_name)
        try:
            proc = cls(**known)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{source}: {cls_name} refuses this configuration: {e}") from e
        opts = {k: getattr(proc, k, None) for k in OPTION_KEYS}
    for key in ("do_resize", "do_rescale", "do_normalize", "do_pad", "keep_aspect_ratio"):
        opts[key] = bool(opts.get(key))  # None (a class without the step) means the step is off
    opts["kind"] = kind
    opts["size"] = _plain(opts.get("size"))
    if opts.get("resample") is not None:
        opts["resample"] = int(opts["resample"])
    return {k: v for k, v in opts.items() if v is not None}


def depth_preprocess_from_dict(d: dict, source: str) -> DepthPreprocess:
    """The model's preprocessing from its processor config dict (see :func:`resolved_options`)."""
    opts = resolved_options(d, source)
    try:
        return DepthPreprocess(**opts)
    except TypeError as e:
        raise ConfigError(f"{source}: unsupported preprocessing option: {e}") from e
