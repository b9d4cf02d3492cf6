"""LiteRT (TFLite) segmentation models through ``ai-edge-litert``, on the CPU.

Protocol ``letterbox`` (recorded in each result's ``protocol``): the image is resized with its
aspect ratio kept so it fits the model's fixed input (bilinear), padded bottom/right with the
value that dequantizes to 0 (see :mod:`harness.models.letterbox`), and run; the output is
cropped to the image's valid region and resized to the image's size -- label maps with
nearest-neighbour (pixel centres), logits with the cell's upsampling mode before the argmax.
Outputs at a resolution other than the input's are first resized to the input's resolution,
then cropped. A ``label_map`` then takes the model's labels into the dataset's label space.

Registered files (:data:`LITERT_MODELS`) are looked up in ``$SEGBENCH_WEIGHTS``, then
``../shared/weights`` and ``weights/`` relative to the working directory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from harness.errors import ConfigError, UnsupportedError, WeightsError, did_you_mean
from harness.models.base import SegmentationModel
from harness.models.letterbox import LetterboxQuantize, valid_region
from harness.models.postprocess import upsample_argmax
from harness.runtimes import RUNTIMES

__all__ = ["LITERT_MODELS", "LABEL_SETS", "MISS", "LiteRTModel", "load_litert_model", "litert_model_infos",
           "label_lut", "weights_dirs", "find_weights", "valid_region"]

# registry name -> file in the weights folder, its native input (height, width) in pixels, and
# how its labels map into the dataset's label space
LITERT_MODELS = {
    "deeplabv3-mnv2-ade20k-litert": {
        "file": "deeplabv3_mnv2_ade20k_uint8.tflite", "input_size": (512, 512), "label_set": "ade20k",
        "label_map": "ade20k_reduce_zero", "description": "DeepLabV3-MobileNetV2, ADE20K, uint8 (LiteRT)"},
    "deeplabv3-mnv2-voc-litert": {
        "file": "deeplabv3_mnv2_pascal_quant.tflite", "input_size": (513, 513), "label_set": "voc",
        "label_map": None, "description": "DeepLabV3-MobileNetV2, Pascal VOC, uint8 (LiteRT)"},
    "deeplabv3-edgetpu-cityscapes-litert": {
        "file": "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite", "input_size": (513, 513),
        "label_set": "cityscapes", "label_map": None,
        "description": "DeepLab MobileNet-EdgeTPU slim, Cityscapes, uint8 (LiteRT)"},
}
LABEL_SETS = {"ade20k": 150, "voc": 21, "cityscapes": 19}  # label set -> number of dataset classes
LABEL_MAPS = ("ade20k_reduce_zero",)
MISS = 255  # dataset label for a model label with no dataset counterpart: never a true class, so a miss
INSTALL_HINT = "pip install 'segbench[litert]'"


def weights_dirs() -> list[Path]:
    """Folders searched for registered LiteRT files, in order: $SEGBENCH_WEIGHTS, ../shared/weights, weights/."""
    env = os.environ.get("SEGBENCH_WEIGHTS")
    dirs = [Path(env)] if env else []
    return dirs + [Path("..") / "shared" / "weights", Path("weights")]


def find_weights(filename: str) -> Path | None:
    """The first ``filename`` found in :func:`weights_dirs`, or None."""
    for d in weights_dirs():
        if (d / filename).is_file():
            return d / filename
    return None


def label_lut(label_map: str | dict | None, num_model_labels: int) -> np.ndarray | None:
    """Lookup table model label -> dataset label, of length ``num_model_labels`` (None = identity).

    ``"ade20k_reduce_zero"``: model 0 ("other") -> :data:`MISS`, k -> k - 1. A dict maps model
    labels to dataset labels; model labels it leaves out, or maps to None, become :data:`MISS`.
    """
    if label_map is None:
        return None
    if label_map == "ade20k_reduce_zero":
        lut = np.arange(-1, num_model_labels - 1, dtype=np.int64)
        lut[0] = MISS
        return lut
    if isinstance(label_map, dict):
        lut = np.full(num_model_labels, MISS, dtype=np.int64)
        for k, v in label_map.items():
            try:
                src = int(k)
                dst = MISS if v is None else int(v)
            except (TypeError, ValueError):
                raise ConfigError(f"label_map entry {k!r}: {v!r}: expected integer model label -> integer "
                                  "dataset label (or null)") from None
            if not 0 <= src < num_model_labels:
                raise ConfigError(f"label_map key {k!r} is outside the model's labels 0..{num_model_labels - 1}")
            lut[src] = dst
        return lut
    raise ConfigError(f"label_map {label_map!r}: expected one of {', '.join(LABEL_MAPS)}, a mapping "
                      "{model label: dataset label} or null")


def apply_lut(labels: torch.Tensor, lut: np.ndarray | None) -> torch.Tensor:
    """Map int64 ``labels`` through ``lut``; labels outside the table become :data:`MISS`."""
    if lut is None:
        return labels
    table = torch.from_numpy(lut)
    inside = (labels >= 0) & (labels < len(lut))
    return torch.where(inside, table[labels.clamp(0, len(lut) - 1)], torch.full_like(labels, MISS))


class LiteRTModel(SegmentationModel):
    """A .tflite segmentation model (one NHWC RGB input, one output) run by the LiteRT interpreter.

    ``forward`` returns label maps (N, h, w) int64 when the model does its own argmax
    (``output_kind == "labels"``), else dequantized float32 logits (N, C, h, w). Batches run
    image by image (the files have a fixed batch of 1).
    """

    runtime = "litert"
    family = "cnn"

    def __init__(self, path: Path, name: str, label_set: str | None = None, label_map: str | dict | None = None,
                 num_threads: int | None = None, input_mean: float = 128.0, input_std: float = 128.0,
                 device: str = "cpu", precision: str = "fp32", upsample: str = "bilinear"):
        super().__init__(device=device, precision=precision, upsample=upsample)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ConfigError(f"LiteRT models need the `ai-edge-litert` package: {INSTALL_HINT}") from None
        self.path = Path(path)
        self.name = name
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads or torch.get_num_threads())
        except (ValueError, RuntimeError) as e:
            raise WeightsError(f"{path}: not a readable LiteRT/TFLite model: {e}") from None
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ConfigError(f"{path}: {len(inputs)} inputs and {len(outputs)} outputs; expected one image "
                              "input and one output")
        inp = inputs[0]
        shape = [int(x) for x in inp["shape"]]
        if len(shape) != 4 or shape[3] != 3:
            raise ConfigError(f"{path}: input shape {shape} is not an NHWC RGB image batch (N, H, W, 3)")
        if shape[0] != 1:
            self.interpreter.resize_tensor_input(inp["index"], [1, *shape[1:]])
        self.interpreter.allocate_tensors()
        inp, out = self.interpreter.get_input_details()[0], self.interpreter.get_output_details()[0]
        self._in, self._out = inp["index"], out["index"]
        self.input_size = (shape[1], shape[2])
        scale, zero_point = inp["quantization"]
        try:
            self.preprocessor = LetterboxQuantize(self.input_size, np.dtype(inp["dtype"]).name, scale, zero_point,
                                                  input_mean, input_std)
        except ValueError as e:
            raise ConfigError(f"{path}: {e}") from None
        self.image_mean = (input_mean / 255.0,) * 3
        self.image_std = (input_std / 255.0,) * 3
        self._read_output(out, label_set)
        self.label_set = label_set
        self.label_map = label_map
        lut_size = self.num_labels if self.output_kind == "logits" else max(256, self._max_label(label_map) + 1)
        self.lut = label_lut(label_map, lut_size)
        self.weights = {"source": "file", "path": str(self.path.resolve()), "sha256": _sha256(self.path)}
        self.protocol_note = {"mode": "letterbox", **self.preprocessor.describe(),
                              "output": self.output_kind,
                              "label_resize": "nearest" if self.output_kind == "labels" else self.upsample,
                              "label_map": label_map}

    def _read_output(self, out: dict, label_set: str | None) -> None:
        """Set ``output_kind``, ``num_labels`` and the output's layout and dequantization from its details."""
        shape = [int(x) for x in out["shape"]]
        integer = np.issubdtype(np.dtype(out["dtype"]), np.integer)
        scale, zero_point = out["quantization"]
        if len(shape) == 3 or (len(shape) == 4 and shape[3] == 1 and integer and not scale):
            self.output_kind = "labels"
            self.num_labels = LABEL_SETS.get(label_set or "", 0)
        elif len(shape) == 4:
            self.output_kind = "logits"
            self.num_labels = shape[3]
        else:
            raise ConfigError(f"{self.path}: output shape {shape} is neither a label map (N, H, W) nor NHWC "
                              "logits (N, H, W, C)")
        self._out_scale, self._out_zero_point = float(scale), int(zero_point)
        self.output_size = (shape[1], shape[2])
        self.id2label = {i: str(i) for i in range(self.num_labels)}

    @staticmethod
    def _max_label(label_map) -> int:
        return max((int(k) for k in label_map), default=0) if isinstance(label_map, dict) else 0

    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        expected = (*self.input_size, 3)
        if batch.dim() != 4 or tuple(batch.shape[1:]) != expected or str(batch.dtype) != f"torch.{self.preprocessor.dtype}":
            raise UnsupportedError(f"{self.name}: the LiteRT model takes the batches of its own letterbox "
                                   f"preprocessor ({self.preprocessor.dtype} N x {expected[0]} x {expected[1]} x 3); "
                                   f"got {str(batch.dtype).removeprefix('torch.')} {list(batch.shape)} (protocols "
                                   "that resize and normalise images themselves, slide and multiscale, do not apply)")
        outs = []
        for i in range(batch.shape[0]):
            self.interpreter.set_tensor(self._in, batch[i:i + 1].cpu().numpy())
            self.interpreter.invoke()
            outs.append(np.array(self.interpreter.get_tensor(self._out)))
        out = np.concatenate(outs)
        if self.output_kind == "labels":
            return torch.from_numpy(out.reshape(out.shape[:3]).astype(np.int64))
        if self._out_scale:
            out = (out.astype(np.float32) - self._out_zero_point) * np.float32(self._out_scale)
        return torch.from_numpy(np.ascontiguousarray(out.astype(np.float32).transpose(0, 3, 1, 2)))

    @torch.inference_mode()
    def postprocess(self, outputs: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
        """Per image: crop the valid region of its letterbox, resize to its (H, W), map labels (int64)."""
        maps = []
        labels = self.output_kind == "labels"
        for i, (h, w) in enumerate(sizes):
            rows, cols = valid_region(h, w, self.input_size)
            out = outputs[i].cpu()
            if labels:
                out = out[None].float()  # (1, h_out, w_out)
            if tuple(out.shape[-2:]) != self.input_size:
                out = torch.nn.functional.interpolate(out[None].float(), size=self.input_size,
                                                      mode="nearest-exact" if labels else self.upsample,
                                                      align_corners=None if labels else False)[0]
            out = out[:, :rows, :cols]
            if labels:
                lab = torch.nn.functional.interpolate(out[None], size=(h, w), mode="nearest-exact")[0, 0].long()
            else:
                lab = upsample_argmax(out, (h, w), self.upsample)
            maps.append(apply_lut(lab, self.lut))
        return maps

    def params(self) -> int | None:
        """Not exposed by the interpreter: None."""
        return None

    def weight_bytes(self) -> int:
        """Size of the .tflite file in bytes."""
        return self.path.stat().st_size


def _sha256(path: Path) -> str:
    from harness.models.hub import sha256_of

    return sha256_of([path])


def load_litert_model(path: str, device: str = "cpu", precision: str = "fp32", label_set: str | None = None,
                      label_map: str | dict | None = None, num_threads: int | None = None,
                      input_mean: float = 128.0, input_std: float = 128.0, weights: str | None = None,
                      upsample: str = "bilinear", **options) -> LiteRTModel:
    """A registered LiteRT model by name (its file found in :func:`weights_dirs`) or any .tflite path.

    ``label_set``/``label_map`` default to the registry's for registered names (identity and no
    label set for other files). ``input_mean``/``input_std`` (pixel units) define the real input
    value ``(pixel - mean) / std`` before quantization. ``weights`` may name the .tflite file
    instead of ``path``. Only ``device="cpu"`` and ``precision="fp32"`` (the model as stored).
    """
    if options:
        raise ConfigError(f"LiteRT model {path!r}: unknown option(s) {', '.join(sorted(options))}; allowed: "
                          "label_set, label_map, num_threads, input_mean, input_std")
    RUNTIMES["litert"].check(device=device, precision=precision, weights=weights)
    if label_set is not None and label_set not in LABEL_SETS:
        raise ConfigError(f"LiteRT model {path!r}: label_set {label_set!r} is not one of {', '.join(LABEL_SETS)}")
    spec = LITERT_MODELS.get(path, {})
    if weights is not None:
        file = Path(weights)
        if not file.is_file():
            raise WeightsError(f"{path!r}: weights file {weights} does not exist")
    elif spec:
        file = find_weights(spec["file"])
        if file is None:
            raise WeightsError(f"{path!r}: {spec['file']} not found in {', '.join(str(d) for d in weights_dirs())}; "
                               "set SEGBENCH_WEIGHTS to the folder holding it")
    else:
        file = Path(path)
        if not file.is_file():
            raise WeightsError(f"{path}: no such .tflite file and not a registered LiteRT model "
                               f"({', '.join(LITERT_MODELS)})")
    return LiteRTModel(file, name=path, label_set=label_set or spec.get("label_set"),
                       label_map=label_map if label_map is not None else spec.get("label_map"),
                       num_threads=num_threads, input_mean=input_mean, input_std=input_std, device=device,
                       precision=precision, upsample=upsample)


def litert_model_infos() -> list[dict]:
    """Rows for ``segbench models``: name, family, params (None), input_size [H, W] pixels, label_set,
    runtime, weights_from (the file name), present (whether the file is found), path, description."""
    rows = []
    for name, spec in LITERT_MODELS.items():
        path = find_weights(spec["file"])
        rows.append({"name": name, "family": "cnn", "params": None, "input_size": list(spec["input_size"]),
                     "label_set": spec["label_set"], "runtime": "litert", "weights_from": spec["file"],
                     "present": path is not None, "path": str(path) if path else None,
                     "description": spec["description"], "aliases": []})
    return rows


def load(name_or_path: str, weights: str | None = None, device: str = "cpu", precision: str = "fp32",
         upsample: str = "bilinear", amp: str = "autocast", channels_last: bool = False, compile: bool = False,
         attn_implementation: str | None = None, trust_remote_code: bool = False, task: str = "segmentation",
         **options) -> LiteRTModel:
    """The runtime entry (see :mod:`harness.runtimes`): :func:`load_litert_model`, or for ``task="depth"``
    :func:`harness.models.depth_litert.load_litert_depth_model`; PyTorch-only settings (amp,
    channels_last, attention, remote code) do not apply to a stored TFLite graph."""
    extra = {"weights": weights} if weights is not None else {}
    if task == "depth":
        from harness.models.depth import load_depth_model

        return load_depth_model(name_or_path, device=device, precision=precision, runtime="litert", **extra, **options)
    return load_litert_model(name_or_path, device=device, precision=precision, upsample=upsample, **extra, **options)


def _depth_entry(name: str):
    """The LiteRT entry of the depth registry registered as ``name`` (or an alias), else None."""
    from harness.models.depth_registry import resolve_depth

    spec = resolve_depth(name)
    return spec if spec is not None and spec.builder == "litert" else None


def check_name(name: str, task: str = "segmentation") -> None:
    """ConfigError when ``name`` is neither a registered LiteRT model (of the task) nor a .tflite path."""
    if task == "depth":
        if _depth_entry(name) is None and not name.endswith(".tflite"):
            from harness.models.depth_registry import DEPTH_MODELS

            litert = [n for n, s in DEPTH_MODELS.items() if s.builder == "litert"]
            raise ConfigError(f"unknown LiteRT depth model {name!r}; registered: {', '.join(litert)}, or a path "
                              "to a .tflite file")
        return
    if name not in LITERT_MODELS and not name.endswith(".tflite"):
        raise ConfigError(f"unknown LiteRT model {name!r}{did_you_mean(name, LITERT_MODELS)}; registered: "
                          f"{', '.join(LITERT_MODELS)}, or a path to a .tflite file")


def missing_weights(name: str, weights: str | None = None, task: str = "segmentation") -> str | None:
    """Why the .tflite file of ``name`` is not available (None when it is)."""
    if weights is not None and weights != "random":
        return None if Path(weights).exists() else f"weights path {weights} does not exist"
    if task == "depth" and _depth_entry(name) is not None:
        from harness.models.depth import missing_depth_weights

        return missing_depth_weights(name)
    spec = LITERT_MODELS.get(name)
    if spec is None:
        return None if Path(name).is_file() else f"{name} does not exist"
    if find_weights(spec["file"]) is None:
        return (f"{spec['file']} not found in {', '.join(map(str, weights_dirs()))} "
                "(set SEGBENCH_WEIGHTS to the folder holding it)")
    return None


def model_infos() -> list[dict]:
    """The registered LiteRT segmentation models, then the depth registry's LiteRT entries."""
    from harness.models.depth import depth_model_infos

    rows = [{**r, "task": "segmentation"} for r in litert_model_infos()]
    return rows + [r for r in depth_model_infos() if r["runtime"] == "litert"]
