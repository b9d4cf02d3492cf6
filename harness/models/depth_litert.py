"""LiteRT (TFLite) depth models through ``ai-edge-litert``, on the CPU: the real trained PyDNet++
(``pydnet_plusplus_depth.tflite``, mobilePydnet) and any float32 NHWC depth network.

Protocol (recorded by :meth:`LiteRTDepthModel.describe`): the image is resized to the network's
fixed input without keeping its aspect ratio, with an area filter (PIL ``BOX``; mobilePydnet's
evaluation scripts resize with TensorFlow's ``AREA`` method, the same area-averaging rule),
scaled to [0, 1] (RGB / 255), run; the first output (N, h, w, 1) is the prediction, resized
back to the image bilinearly (``align_corners=False``, as their ``cv2.resize`` does).

PyDNet++'s output is depth-like (larger = farther) at an arbitrary scale: ``depth_kind
"relative"``, aligned in depth space. Measured on the real frames of ../shared/data/depth
(Spearman rank correlation with the ground truth over valid pixels; tests/test_depth_litert.py):
KITTI 0.87 / 0.90, SUN RGB-D 0.95, the NYU frames with their white border 0.43-0.66.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from harness.errors import ConfigError, UnsupportedError, WeightsError
from harness.models.depth_base import DepthModel, check_semantics
from harness.models.litert import INSTALL_HINT, find_weights, weights_dirs

RESAMPLE = {"box": Image.Resampling.BOX, "bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


class SquashRescale:
    """RGB PIL images -> float32 (N, 3, H, W): resized to (H, W) ignoring the aspect ratio, pixels / ``scale``."""

    def __init__(self, size: tuple[int, int], resample: str = "box", scale: float = 255.0):
        if resample not in RESAMPLE:
            raise ConfigError(f"resample {resample!r} is not one of {', '.join(RESAMPLE)}")
        self.size, self.resample, self.scale = (int(size[0]), int(size[1])), resample, float(scale)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.size

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        return self.size

    def describe(self) -> dict:
        return {"kind": "squash", "size": {"height": self.size[0], "width": self.size[1]},
                "resample": self.resample, "scale": 1.0 / self.scale}

    def one(self, image: Image.Image) -> np.ndarray:
        im = image.convert("RGB")
        if (im.height, im.width) != self.size:
            im = im.resize((self.size[1], self.size[0]), resample=RESAMPLE[self.resample])
        return (np.asarray(im).astype(np.float32) / np.float32(self.scale)).transpose(2, 0, 1)

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.one(im) for im in images]))


class LiteRTDepthModel(DepthModel):
    """A .tflite depth network (one float32 NHWC RGB input; the chosen output (N, h, w[, 1])) on the CPU."""

    runtime = "litert"
    family = "cnn"
    resize_mode = "bilinear"

    def __init__(self, path: Path, name: str, depth_kind: str = "relative", num_threads: int | None = None,
                 output: int | str = 0, resample: str = "box", max_depth: float | None = None):
        super().__init__(device="cpu", precision="fp32")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ConfigError(f"LiteRT models need the `ai-edge-litert` package: {INSTALL_HINT}") from None
        self.path, self.name = Path(path), name
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads or torch.get_num_threads())
        except (ValueError, RuntimeError) as e:
            raise WeightsError(f"{path}: not a readable LiteRT/TFLite model: {e}") from None
        self.interpreter.allocate_tensors()
        inputs = self.interpreter.get_input_details()
        shape = [int(x) for x in inputs[0]["shape"]] if len(inputs) == 1 else []
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3 or np.dtype(inputs[0]["dtype"]) != np.float32:
            raise ConfigError(f"{path}: expected one float32 input of shape (1, H, W, 3); got "
                              f"{[(list(d['shape']), np.dtype(d['dtype']).name) for d in inputs]}")
        self._in = inputs[0]["index"]
        self._out = self._pick_output(output)
        self.depth_kind = depth_kind
        self.align_space = {"metric": "none", "disparity": "disparity"}.get(depth_kind, "depth")
        check_semantics(name, self.depth_kind, self.align_space)
        self.max_depth = max_depth
        self.preprocessor = SquashRescale((shape[1], shape[2]), resample)
        self.input_size = self.preprocessor.input_size
        from harness.models.hub import sha256_of

        self.weights = {"source": "file", "path": str(self.path.resolve()), "sha256": sha256_of([self.path])}

    def _pick_output(self, output: int | str) -> int:
        """Tensor index of output ``output`` (its position, or its name); ConfigError listing the outputs."""
        details = self.interpreter.get_output_details()
        names = [d["name"] for d in details]
        if isinstance(output, str) and output in names:
            return details[names.index(output)]["index"]
        if isinstance(output, int) and 0 <= output < len(details):
            return details[output]["index"]
        raise ConfigError(f"{self.path}: output {output!r} is neither a position 0..{len(details) - 1} nor one of "
                          f"the outputs {names}")

    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dim() != 4 or tuple(batch.shape[1:]) != (3, *self.input_size) or batch.dtype != torch.float32:
            raise UnsupportedError(f"{self.name}: the LiteRT model takes float32 batches (N, 3, {self.input_size[0]}, "
                                   f"{self.input_size[1]}) from its own preprocessing; got "
                                   f"{str(batch.dtype).removeprefix('torch.')} {list(batch.shape)}")
        outs = []
        for i in range(batch.shape[0]):
            self.interpreter.set_tensor(self._in, np.ascontiguousarray(batch[i:i + 1].cpu().numpy().transpose(0, 2, 3, 1)))
            self.interpreter.invoke()
            out = np.array(self.interpreter.get_tensor(self._out), dtype=np.float32)
            outs.append(out.reshape(out.shape[1], out.shape[2]))
        return torch.from_numpy(np.stack(outs))

    def params(self) -> int | None:
        """Not exposed by the interpreter: None."""
        return None

    def weight_bytes(self) -> int:
        """Size of the .tflite file in bytes."""
        return self.path.stat().st_size


def load_litert_depth_model(name: str, spec=None, weights: str | None = None, device: str = "cpu",
                            precision: str = "fp32", depth_kind: str | None = None, num_threads: int | None = None,
                            output: int | str = 0, resample: str = "box",
                            max_depth: float | None = None) -> LiteRTDepthModel:
    """A registered LiteRT depth model (its file found in :func:`harness.models.litert.weights_dirs`) or a .tflite path.

    ``depth_kind`` defaults to the registry's (``"relative"`` for unregistered files); only
    ``device="cpu"`` and ``precision="fp32"`` (the network as stored).
    """
    if torch.device(device).type != "cpu":
        raise UnsupportedError(f"LiteRT models run on the CPU here; device {device!r} is not supported")
    if precision != "fp32":
        raise UnsupportedError(f"LiteRT model {name!r} runs as stored; precision {precision!r} does not apply")
    if weights == "random":
        raise UnsupportedError(f"{name!r}: LiteRT models carry their weights; `weights: random` does not apply")
    if weights is not None:
        file = Path(weights)
    elif spec is not None and spec.checkpoint:
        found = find_weights(spec.checkpoint)
        if found is None:
            raise WeightsError(f"{name!r}: {spec.checkpoint} not found in {', '.join(str(d) for d in weights_dirs())}; "
                               "set SEGBENCH_WEIGHTS to the folder holding it")
        file = found
    else:
        file = Path(name)
    if not file.is_file():
        raise WeightsError(f"{name!r}: LiteRT file {file} does not exist")
    kind = depth_kind or (spec.depth_kind if spec is not None else "relative")
    return LiteRTDepthModel(file, name=spec.name if spec is not None else name, depth_kind=kind,
                            num_threads=num_threads, output=output, resample=resample, max_depth=max_depth)
