"""The depth model adapter contract: a network plus its exact preprocessing and postprocessing.

Every depth model segbench runs, whatever its runtime, is a :class:`DepthModel`:

- ``preprocess(images)`` turns RGB PIL images into the float32 batch (N, 3, H, W) the model's
  own image processor would produce, on the CPU (picklable, so DataLoader workers can run it);
- ``forward(pixel_values)`` runs the network on ``self.device`` under the cell's precision and
  returns the raw prediction (N, h, w) at the network's resolution, in the model's output space;
- ``postprocess(outputs, sizes)`` resizes each prediction to its image's (H, W) exactly as the
  model's own ``post_process_depth_estimation`` does (bicubic for DPT, Depth Anything, GLPN and
  MiDaS; ZoeDepth removes its reflect padding first; Depth Pro resizes bilinearly and inverts)
  and returns float32 (H, W) maps in the model's output space;
- ``predict(images)`` chains the three (grouping images whose network inputs differ in size).

What the numbers mean is declared, never guessed downstream:

- ``depth_kind``: ``"metric"`` (metres), ``"relative"`` (depth up to an unknown scale and shift)
  or ``"disparity"`` (relative inverse depth: larger = nearer, MiDaS/DPT/Depth Anything);
- ``align_space``: where a scale-and-shift alignment to ground truth applies: ``"none"`` for
  metric heads, ``"depth"`` or ``"disparity"``;
- ``max_depth``: the upper end of a metric head's range in metres (None when unbounded).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from harness.errors import ConfigError
from harness.models.base import SegmentationModel

DEPTH_KINDS = ("metric", "relative", "disparity")
ALIGN_SPACES = ("none", "depth", "disparity")
RESIZE_MODES = ("bicubic", "bilinear")


def check_semantics(name: str, depth_kind: str, align_space: str) -> None:
    """ConfigError unless ``depth_kind`` and ``align_space`` are known and consistent."""
    if depth_kind not in DEPTH_KINDS:
        raise ConfigError(f"model {name!r}: depth_kind {depth_kind!r} is not one of {', '.join(DEPTH_KINDS)}")
    if align_space not in ALIGN_SPACES:
        raise ConfigError(f"model {name!r}: align_space {align_space!r} is not one of {', '.join(ALIGN_SPACES)}")
    if depth_kind == "metric" and align_space != "none":
        raise ConfigError(f"model {name!r}: a metric model aligns in space 'none', not {align_space!r}")
    if depth_kind != "metric" and align_space == "none":
        raise ConfigError(f"model {name!r}: a {depth_kind} model needs an alignment space ('depth' or 'disparity')")


class DepthModel:
    """Base adapter. Subclasses set the attributes below and implement ``_run``.

    Attributes:
        name: registry name, hub id or path the model was loaded from.
        family: ``"dpt"``, ``"cnn"`` or ``"transformer"`` (grouping in reports).
        weights: provenance dict (``{"source": "random", "seed"}``, ``{"source": "hub", "id", "revision"}``,
            ``{"source": "local"|"file", "path", "sha256"}``).
        input_size: nominal (height, width) in pixels of the network input (the processor's size).
        runtime: ``"pytorch"`` or ``"litert"``.
        depth_kind, align_space, max_depth: what the output means (see the module docstring).
        resize_mode: interpolation of :meth:`postprocess` (``"bicubic"`` or ``"bilinear"``).
        preprocessor: picklable callable ``images -> float32 (N, 3, H, W)`` holding no network.
    """

    task = "depth"
    name: str = "depth-model"
    family: str = "dpt"
    weights: dict = {"source": "random"}
    input_size: tuple[int, int] = (384, 384)
    runtime: str = "pytorch"
    depth_kind: str = "disparity"
    align_space: str = "disparity"
    max_depth: float | None = None
    resize_mode: str = "bicubic"
    module: torch.nn.Module | None = None
    preprocessor = None

    def __init__(self, device: str = "cpu", precision: str = "fp32", amp: str = "autocast"):
        SegmentationModel.__init__(self, device=device, precision=precision, amp=amp)

    # device, precision and module placement are those of the segmentation adapters
    forward = SegmentationModel.forward
    precision_context = SegmentationModel.precision_context
    place_module = SegmentationModel.place_module
    channels_last_input = SegmentationModel.channels_last_input
    params = SegmentationModel.params
    weight_bytes = SegmentationModel.weight_bytes

    # -- the three stages -------------------------------------------------------------
    # preprocess(images) -> float32 (N, 3, H, W) on the CPU: ``self.preprocessor(images)``
    preprocess = SegmentationModel.preprocess

    def _run(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Run the network on a batch already on ``self.device``; return its prediction (N, h, w)."""
        raise NotImplementedError

    @torch.inference_mode()
    def postprocess(self, outputs: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
        """Outputs of :meth:`forward` -> one float32 (H, W) map per image at its size in ``sizes``.

        Default: ``F.interpolate(mode=self.resize_mode, align_corners=False)`` in float32, as
        DPT's, Depth Anything's and GLPN's ``post_process_depth_estimation`` and MiDaS's run.py do.
        """
        if len(outputs) != len(sizes):
            raise ConfigError(f"{self.name}: {len(outputs)} predictions but {len(sizes)} target sizes")
        return [resize_map(outputs[i], (h, w), self.resize_mode) for i, (h, w) in enumerate(sizes)]

    def predict(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """PIL images -> float32 (H, W) numpy maps, each at its image's size, in the model's output space.

        Images whose network inputs differ in size (aspect-preserving processors) run in separate
        batches; the order of ``images`` is kept.
        """
        results: list[np.ndarray | None] = [None] * len(images)
        for idx in self._groups(images):
            batch = [images[i] for i in idx]
            maps = self.postprocess(self.forward(self.preprocess(batch)), [(im.height, im.width) for im in batch])
            for i, m in zip(idx, maps, strict=True):
                results[i] = m.detach().cpu().numpy().astype(np.float32, copy=False)
        return results  # type: ignore[return-value]

    def _groups(self, images: Sequence[Image.Image]) -> list[list[int]]:
        output_size = getattr(self.preprocessor, "output_size", None)
        if not callable(output_size):
            return [list(range(len(images)))]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(tuple(output_size(im.height, im.width)), []).append(i)
        return list(groups.values())

    # -- facts ------------------------------------------------------------------------
    def describe(self) -> dict:
        """What a result records about the model's output and protocol (plain data)."""
        describe = getattr(self.preprocessor, "describe", None)
        return {"task": self.task, "depth_kind": self.depth_kind, "align_space": self.align_space,
                "max_depth": self.max_depth, "resize": self.resize_mode, "input_size": list(self.input_size),
                "preprocess": describe() if callable(describe) else None, **self.protocol_extra()}

    @property
    def protocol_note(self) -> dict:
        """What a cell's protocol records as run: the resize of the prediction to the image
        (``upsample``: this model's own post-processing mode, not a suite setting)."""
        return {"upsample": self.resize_mode}

    def protocol_extra(self) -> dict:
        """Model-specific protocol settings (ZoeDepth's flip, Depth Pro's field of view...)."""
        return {}


def resize_map(pred: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """One prediction (h, w) -> float32 (H, W) with ``F.interpolate(mode, align_corners=False)``."""
    x = pred.detach().float()
    while x.dim() > 2 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 2:
        raise ConfigError(f"a depth prediction must be (h, w) per image, got shape {tuple(pred.shape)}")
    return torch.nn.functional.interpolate(x[None, None], size=tuple(size), mode=mode, align_corners=False)[0, 0]
