"""LiteRT (TFLite) models through ``ai-edge-litert``: quantized inputs, label-map outputs,
letterboxed square inputs and label mappings into the dataset's label space.

Protocol ``letterbox`` (recorded in results): resize the image so its longer side equals the
model's input size (bilinear, on the uint8 image), pad bottom and right with the value that
dequantizes to 0, run, crop the output to the valid region, and resize the label map back
to the image's size with nearest-neighbour (pixel centres). Models that output logits
(N, H, W, C) are argmax'd after the crop, at the input resolution.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from harness.errors import ConfigError, UnsupportedError, WeightsError
from harness.models.base import SegmentationModel

# name -> file in the weights folder and how its labels map to the dataset's
LITERT_MODELS = {
    "deeplabv3-mnv2-ade20k-litert": {"file": "deeplabv3_mnv2_ade20k_uint8.tflite", "label_set": "ade20k",
                                     "label_map": "ade20k_reduce_zero",
                                     "description": "DeepLabV3-MobileNetV2, ADE20K, uint8 (LiteRT)"},
    "deeplabv3-mnv2-voc-litert": {"file": "deeplabv3_mnv2_pascal_quant.tflite", "label_set": "voc",
                                  "label_map": None, "description": "DeepLabV3-MobileNetV2, Pascal VOC, uint8 (LiteRT)"},
    "deeplabv3-edgetpu-cityscapes-litert": {"file": "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite",
                                            "label_set": "cityscapes", "label_map": None,
                                            "description": "DeepLab MobileNet-EdgeTPU slim, Cityscapes, uint8 (LiteRT)"},
}
LABEL_SETS = {"ade20k": 150, "voc": 21, "cityscapes": 19}
MISS = 255  # a model label with no dataset counterpart: counted as a miss by the metrics


def weights_dirs() -> list[Path]:
    """Where registered LiteRT files are looked for: $SEGBENCH_WEIGHTS, ../shared/weights, weights/."""
    env = os.environ.get("SEGBENCH_WEIGHTS")
    dirs = [Path(env)] if env else []
    return dirs + [Path("..") / "shared" / "weights", Path("weights")]


def find_weights(filename: str) -> Path | None:
    for d in weights_dirs():
        if (d / filename).is_file():
            return d / filename
    return None


def label_lut(label_map: str | dict | None, num_model_labels: int) -> np.ndarray | None:
    """Lookup table model label -> dataset label (MISS where the model label has no counterpart)."""
    if label_map is None:
        return None
    if label_map == "ade20k_reduce_zero":  # 0 = other (no dataset class), k -> k-1
        lut = np.arange(-1, num_model_labels - 1, dtype=np.int64)
        lut[0] = MISS
        return lut
    if isinstance(label_map, dict):
        lut = np.full(num_model_labels, MISS, dtype=np.int64)
        for k, v in label_map.items():
            lut[int(k)] = MISS if v is None else int(v)
        return lut
    raise ConfigError(f"label_map {label_map!r}: expected 'ade20k_reduce_zero', a mapping or null")


def valid_region(height: int, width: int, size: int) -> tuple[int, int]:
    """(rows, cols) the letterboxed image occupies in the square input of side ``size``."""
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


class LetterboxQuantize:
    """Picklable: PIL images -> uint8 (or float32) NHWC batch letterboxed into the model's square input.

    ``input_mean``/``input_std`` (pixel units) give the real value the model expects,
    (pixel - mean) / std; it is quantized with the model's own scale and zero point.
    """

    def __init__(self, size: int, dtype: str, scale: float, zero_point: int, input_mean: float = 128.0,
                 input_std: float = 128.0):
        self.size, self.dtype = int(size), dtype
        self.scale, self.zero_point = float(scale), int(zero_point)
        self.input_mean, self.input_std = float(input_mean), float(input_std)

    def pad_value(self) -> float:
        return self.zero_point if self.scale else 0.0  # dequantizes to 0

    def one(self, image: Image.Image) -> np.ndarray:
        im = image.convert("RGB")
        rh, rw = valid_region(im.height, im.width, self.size)
        im = im.resize((rw, rh), resample=Image.BILINEAR)
        real = (np.asarray(im, dtype=np.float64) - self.input_mean) / self.input_std
        if self.scale:
            q = np.round(real / self.scale + self.zero_point)
            info = np.iinfo(np.uint8 if self.dtype == "uint8" else np.int8)
            arr = np.clip(q, info.min, info.max)
        else:
            arr = real
        out = np.full((self.size, self.size, 3), self.pad_value(), dtype=np.float64)
        out[:rh, :rw] = arr
        return out.astype(self.dtype)

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.one(im) for im in images]))


class LiteRTModel(SegmentationModel):
    """A .tflite segmentation model run by the LiteRT interpreter on the CPU."""

    runtime = "litert"
    family = "cnn"

    def __init__(self, path: Path, name: str, label_set: str | None, label_map, num_threads: int | None,
                 input_mean: float, input_std: float, device: str = "cpu", precision: str = "fp32"):
        super().__init__(device=device, precision=precision)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ConfigError("LiteRT models need the `ai-edge-litert` package: pip install 'segbench[litert]'") from None
        self.path = Path(path)
        self.name = name
        self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads or torch.get_num_threads())
        self.interpreter.allocate_tensors()
        inp, out = self.interpreter.get_input_details()[0], self.interpreter.get_output_details()[0]
        self._in, self._out = inp["index"], out["index"]
        n, h, w, c = (int(x) for x in inp["shape"])
        if h != w or c != 3:
            raise ConfigError(f"{path}: input shape {list(inp['shape'])} is not a square NHWC RGB image")
        self.input_size = (h, w)
        self.output_kind = "labels" if len(out["shape"]) == 3 else "logits"
        self.num_labels = int(out["shape"][-1]) if self.output_kind == "logits" else LABEL_SETS.get(label_set or "", 0)
        scale, zp = inp["quantization"]
        self.preprocessor = LetterboxQuantize(h, np.dtype(inp["dtype"]).name, scale, zp, input_mean, input_std)
        self.image_mean = (input_mean / 255.0,) * 3
        self.image_std = (input_std / 255.0,) * 3
        self.label_set = label_set
        self.label_map = label_map
        self.lut = label_lut(label_map, 256 if self.output_kind == "labels" else self.num_labels)
        self.weights = {"source": "file", "path": str(self.path.resolve()), "sha256": _sha256(self.path)}
        self.protocol_note = {"mode": "letterbox", "pad": "bottom/right", "pad_value": self.preprocessor.pad_value(),
                              "resize": "bilinear", "label_resize": "nearest", "label_map": label_map,
                              "input_quantization": {"scale": scale, "zero_point": zp}}

    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        outs = []
        for i in range(batch.shape[0]):
            self.interpreter.set_tensor(self._in, batch[i:i + 1].cpu().numpy())
            self.interpreter.invoke()
            outs.append(torch.from_numpy(np.array(self.interpreter.get_tensor(self._out))))
        return torch.cat(outs)

    @torch.inference_mode()
    def postprocess(self, outputs: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
        maps = []
        for i, (h, w) in enumerate(sizes):
            rh, rw = valid_region(h, w, self.input_size[0])
            out = outputs[i, :rh, :rw]
            lab = out.argmax(-1) if self.output_kind == "logits" else out.long()
            if self.lut is not None:
                lab = torch.from_numpy(self.lut)[lab.clamp(0, len(self.lut) - 1)]
            lab = torch.nn.functional.interpolate(lab[None, None].float(), size=(h, w), mode="nearest-exact")
            maps.append(lab[0, 0].long())
        return maps

    def params(self) -> int | None:
        return None

    def weight_bytes(self) -> int:
        return self.path.stat().st_size


def _sha256(path: Path) -> str:
    from harness.models.hub import sha256_of

    return sha256_of([path])


def load_litert_model(name_or_path: str, device: str = "cpu", precision: str = "fp32", label_set: str | None = None,
                      label_map: str | dict | None = None, num_threads: int | None = None,
                      input_mean: float = 128.0, input_std: float = 128.0, weights: str | None = None,
                      **options) -> LiteRTModel:
    """A registered LiteRT model by name (file found in the weights folders) or any .tflite path."""
    if options:
        raise ConfigError(f"LiteRT model {name_or_path!r}: unknown option(s) {', '.join(sorted(options))}; "
                          "allowed: label_set, label_map, num_threads, input_mean, input_std")
    if torch.device(device).type != "cpu":
        raise UnsupportedError(f"LiteRT models run on the CPU here; device {device!r} is not supported")
    if precision != "fp32":
        raise UnsupportedError(f"LiteRT model {name_or_path!r} runs as stored (quantized); precision {precision!r} "
                          "does not apply: use fp32 for LiteRT cells")
    spec = LITERT_MODELS.get(name_or_path)
    if weights not in (None, "random") and Path(weights).is_file():
        path = Path(weights)
    elif spec is not None:
        path = find_weights(spec["file"])
        if path is None:
            raise WeightsError(f"{name_or_path!r}: {spec['file']} not found in "
                               f"{', '.join(str(d) for d in weights_dirs())}; set SEGBENCH_WEIGHTS to its folder")
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise WeightsError(f"{name_or_path}: no such .tflite file and not a registered LiteRT model "
                               f"({', '.join(LITERT_MODELS)})")
    if weights == "random":
        raise UnsupportedError(f"{name_or_path!r}: LiteRT models carry their weights; `weights: random` does not apply")
    return LiteRTModel(path, name=name_or_path, label_set=label_set or (spec or {}).get("label_set"),
                       label_map=label_map if label_map is not None else (spec or {}).get("label_map"),
                       num_threads=num_threads, input_mean=input_mean, input_std=input_std, device=device,
                       precision=precision)


def litert_model_infos() -> list[dict]:
    """Rows for ``segbench models``."""
    rows = []
    for name, spec in LITERT_MODELS.items():
        path = find_weights(spec["file"])
        rows.append({"name": name, "family": "cnn", "params": None, "input_size": None, "label_set": spec["label_set"],
                     "runtime": "litert", "weights_from": spec["file"], "present": path is not None,
                     "description": spec["description"]})
    return rows
