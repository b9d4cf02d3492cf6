"""Adapter for transformers semantic-segmentation models: the network plus its own image processor."""

from __future__ import annotations

import torch

from harness.errors import ConfigError
from harness.models.base import DTYPES, SegmentationModel
from harness.models.preprocess import ResizeNormalize

CNN_TYPES = {"mobilenet_v2", "mobilevit", "mobilevitv2", "upernet", "convnext", "resnet"}
TRANSFORMER_TYPES = {"segformer", "beit", "data2vec-vision", "mask2former", "maskformer", "oneformer", "dinat"}
ATTENTION_TYPES = {"dpt", "segformer", "beit", "data2vec-vision"}


UNSUPPORTED = {"keep_aspect_ratio": False, "do_pad": False, "ensure_multiple_of": 1, "do_reduce_labels": None}


def preprocessor_from_dict(d: dict, source: str) -> ResizeNormalize:
    """The model's preprocessing from its processor config dict (preprocessor_config.json)."""
    for key, neutral in UNSUPPORTED.items():
        if neutral is not None and d.get(key, neutral) not in (neutral, None):
            raise ConfigError(f"{source}: image processor option {key}={d[key]!r} is not supported "
                              f"(segbench reproduces resize, center crop, rescale and normalise)")
    size = d.get("size")
    if isinstance(size, int):
        size = {"height": size, "width": size}
    if not isinstance(size, dict) or not ({"height", "width"} <= set(size) or "shortest_edge" in size):
        raise ConfigError(f"{source}: image processor size {size!r} is not supported "
                          "(expected {height, width} or {shortest_edge})")
    return ResizeNormalize.from_processor_dict({**d, "size": size})


def family_of(config) -> str:
    mt = getattr(config, "model_type", "")
    if mt == "dpt":
        return "dpt"
    if mt == "upernet":
        bb = getattr(getattr(config, "backbone_config", None), "model_type", "")
        return "transformer" if bb in ("swin", "swinv2", "beit") else "cnn"
    if mt in TRANSFORMER_TYPES:
        return "transformer"
    return "cnn"


class HFSegmentationModel(SegmentationModel):
    """A transformers model whose forward returns ``.logits`` (N, C, h, w)."""

    def __init__(self, module: torch.nn.Module, processor: ResizeNormalize, name: str, weights: dict, label_set: str | None,
                 family: str | None = None, device: str = "cpu", precision: str = "fp32", amp: str = "autocast",
                 upsample: str = "bilinear", channels_last: bool = False, compile: bool = False):
        super().__init__(device=device, precision=precision, amp=amp, upsample=upsample)
        config = module.config
        self.name = name
        self.family = family or family_of(config)
        self.weights = weights
        self.label_set = label_set
        self.num_labels = int(config.num_labels)
        self.id2label = {int(k): v for k, v in (config.id2label or {}).items()}
        self.preprocessor = processor
        self.input_size = processor.output_size
        self.image_mean = tuple(float(x) for x in processor.image_mean)
        self.image_std = tuple(float(x) for x in processor.image_std)
        self.channels_last = channels_last
        _set_matmul_precision(self.device, precision)
        module = module.eval().to(self.device)
        if amp == "cast" and precision in ("fp16", "bf16"):
            module = module.to(DTYPES[precision])
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        self._call = torch.compile(module) if compile else module
        self.compiled = compile

    def _run(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        return self._call(pixel_values=pixel_values).logits


def _set_matmul_precision(device: torch.device, precision: str) -> None:
    """tf32 allows TF32 tensor cores for fp32 matmuls and convolutions; fp32 keeps full precision."""
    if device.type != "cuda":
        return
    allow = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow
