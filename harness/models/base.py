"""The model adapter contract: a module plus its exact preprocessing and postprocessing.

Every model segbench runs, whatever its runtime, is a :class:`SegmentationModel`:

- ``preprocess(images)`` turns RGB PIL images into the float32 batch the model's own image
  processor would produce (same resize, interpolation, rescale, normalisation), on the CPU,
  so it can run in DataLoader workers;
- ``forward(pixel_values)`` runs the network on ``self.device`` under the cell's precision
  and returns logits (N, C, h, w) -- or, when ``output_kind == "labels"``, label maps
  (N, h, w) for runtimes whose model does the argmax itself;
- ``postprocess(outputs, sizes)`` resizes logits to each (H, W) in ``sizes`` with
  ``self.upsample`` (bilinear or bicubic) and takes the argmax (or resizes label maps with
  nearest-neighbour) and returns int64 label maps in the model's label space;
- ``predict(images)`` chains the three.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from harness.errors import ConfigError
from harness.models.postprocess import upsample_argmax
from harness.runtimes import RUNTIMES
from harness.settings import AMP_MODES, HALF_PRECISIONS, PRECISIONS, UPSAMPLE_MODES

DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class SegmentationModel:
    """Base adapter. Subclasses set the attributes below and implement ``preprocess`` and ``_run``.

    Attributes:
        name: registry name or path the model was loaded from.
        family: ``"dpt"``, ``"cnn"`` or ``"transformer"`` (grouping in reports).
        num_labels: size of the model's label space.
        id2label: class names of the model's label space.
        input_size: native (height, width) in pixels the processor resizes to.
        weights: provenance dict: ``{"source": "random"}``, ``{"source": "hub", "id", "revision"}``,
            ``{"source": "local", "path", "sha256"}`` or ``{"source": "file", "path", "sha256"}``.
        output_kind: ``"logits"`` or ``"labels"``.
        runtime: ``"pytorch"``, ``"onnxruntime"`` or ``"litert"``.
        label_set: name of the label space (``"ade20k"``, ``"voc"``, ``"cityscapes"``...) or None.
        preprocessor: picklable callable ``images -> float32 (N,3,H,W)`` holding no reference to
            the network, so DataLoader workers can run it.
    """

    name: str = "model"
    family: str = "cnn"
    num_labels: int = 0
    id2label: dict[int, str] = {}
    input_size: tuple[int, int] = (512, 512)
    weights: dict = {"source": "random"}
    output_kind: str = "logits"
    runtime: str = "pytorch"
    module: torch.nn.Module | None = None
    label_set: str | None = None
    preprocessor = None
    # Normalisation applied after rescaling pixels to [0, 1]; used by the slide and
    # multiscale protocols, which resize images themselves. Adapters set the values of the
    # model's own image processor.
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __init__(self, device: str = "cpu", precision: str = "fp32", amp: str = "autocast",
                 upsample: str = "bilinear"):
        if precision not in PRECISIONS:
            raise ConfigError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        if amp not in AMP_MODES:
            raise ConfigError(f"amp {amp!r} is not one of {', '.join(AMP_MODES)}")
        if upsample not in UPSAMPLE_MODES:
            raise ConfigError(f"upsample {upsample!r} is not one of {', '.join(UPSAMPLE_MODES)}")
        self.device = torch.device(device)
        self.precision = precision
        self.amp = amp
        self.upsample = upsample

    # -- the three stages -------------------------------------------------------------
    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """RGB PIL images -> float32 tensor (N, 3, H, W) on the CPU, as the model's processor makes it."""
        if self.preprocessor is None:
            raise NotImplementedError(f"{type(self).__name__} has no preprocessor")
        return self.preprocessor(images)

    def _run(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Run the network on a batch already on ``self.device``; return logits or label maps."""
        raise NotImplementedError

    @torch.inference_mode()
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Move the batch to the device, apply the precision, run; returns outputs on the device."""
        x = pixel_values.to(self.device, non_blocking=True)
        if self.precision in HALF_PRECISIONS and self.amp == "cast" and RUNTIMES[self.runtime].applies_precision:
            x = x.to(DTYPES[self.precision])
        with self.precision_context():
            return self._run(x)

    def precision_context(self) -> contextlib.AbstractContextManager:
        """Autocast context for fp16/bf16 with ``amp == "autocast"``; a null context otherwise."""
        if RUNTIMES[self.runtime].applies_precision and self.precision in HALF_PRECISIONS and self.amp == "autocast":
            return torch.autocast(device_type=self.device.type, dtype=DTYPES[self.precision])
        return contextlib.nullcontext()

    @torch.inference_mode()
    def postprocess(self, outputs: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
        """Outputs of :meth:`forward` -> one int64 label map per image at its (H, W) in ``sizes``.

        Logits are resized in float32 with ``self.upsample`` (align_corners=False) and then
        argmax'd; label maps are resized with nearest-neighbour (pixel centres, as PIL does).
        """
        maps = []
        for i, (h, w) in enumerate(sizes):
            out = outputs[i : i + 1]
            if self.output_kind == "labels":
                lab = out.unsqueeze(1).float()
                lab = torch.nn.functional.interpolate(lab, size=(h, w), mode="nearest-exact")
                maps.append(lab[0, 0].long())
            else:
                maps.append(upsample_argmax(out[0], (h, w), self.upsample))
        return maps

    def predict(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """PIL images -> int64 label maps (numpy), each at its image's size, in the model's label space."""
        sizes = [(im.height, im.width) for im in images]
        outputs = self.forward(self.preprocess(images))
        return [m.cpu().numpy() for m in self.postprocess(outputs, sizes)]

    def place_module(self, module: torch.nn.Module, channels_last: bool = False, compile: bool = False) -> None:
        """Put ``module`` in eval mode on the device under the precision settings and keep it.

        ``tf32`` allows TF32 tensor cores for fp32 matmuls and cuDNN convolutions (other precisions
        forbid them); ``amp="cast"`` casts the weights to fp16/bf16; ``channels_last`` converts the
        weights' memory format (inputs follow in :meth:`channels_last_input`); ``compile`` wraps the
        call in ``torch.compile`` while ``self.module`` stays the plain module.
        """
        if self.device.type == "cuda":
            allow = self.precision == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = allow
            torch.backends.cudnn.allow_tf32 = allow
        module = module.eval().to(self.device)
        if self.amp == "cast" and self.precision in HALF_PRECISIONS:
            module = module.to(DTYPES[self.precision])
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        self.channels_last = channels_last
        self.compiled = compile
        self._call = torch.compile(module) if compile else module

    def channels_last_input(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The batch in the memory format the placed module expects."""
        if getattr(self, "channels_last", False):
            return pixel_values.contiguous(memory_format=torch.channels_last)
        return pixel_values

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1], shape (N, 3, H, W) -> the model's normalised input."""
        mean = torch.tensor(self.image_mean, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
        return (x01 - mean) / std

    # -- facts ------------------------------------------------------------------------
    def params(self) -> int:
        """Number of parameters (0 when the runtime does not expose them)."""
        if self.module is None:
            return 0
        return sum(p.numel() for p in self.module.parameters())

    def weight_bytes(self) -> int:
        """Bytes held by parameters and buffers (in their stored dtype)."""
        if self.module is None:
            return 0
        tensors = list(self.module.parameters()) + list(self.module.buffers())
        return sum(t.numel() * t.element_size() for t in tensors)
