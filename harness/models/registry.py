"""The model registry: names users write in suites, and what each stands for."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture: its published checkpoint and its offline config files.

    ``builder`` is ``"auto"`` (transformers' AutoModelForSemanticSegmentation), ``"dpt-swin"``
    (a DPT neck and head on a Swin V2 backbone, composed in :mod:`harness.models.dpt_swin`) or
    ``"torchvision"`` (a torchvision segmentation model, behind the optional ``vision`` extra,
    whose architecture and preprocessing live in :mod:`harness.models.torchvision_models`
    rather than in configs/*.json). ``input_size`` is (height, width) in pixels;
    ``published_params_m`` the parameter count in millions the model's authors give.
    """

    name: str
    family: str  # "dpt" | "cnn" | "transformer"
    hub_id: str | None
    label_set: str
    input_size: tuple[int, int]
    description: str
    builder: str = "auto"
    published_params_m: float | None = None
    params: int | None = None  # exact count of the architecture (checked against a meta-device build in tests)

    @property
    def kind(self) -> str:
        """``"torchvision"`` or ``"hf"`` (a transformers architecture described by configs/<name>.json)."""
        return "torchvision" if self.builder == "torchvision" else "hf"

    @property
    def config_path(self) -> Path:
        return CONFIG_DIR / f"{self.name}.json"

    @property
    def processor_path(self) -> Path:
        return CONFIG_DIR / f"{self.name}.preprocessor.json"

    def config_dict(self) -> dict:
        return _read(self.config_path)

    def processor_dict(self) -> dict:
        return _read(self.processor_path)


@cache
def _read_cached(path: str) -> str:
    return Path(path).read_text()


def _read(path: Path) -> dict:
    return json.loads(_read_cached(str(path)))


_SPECS = [
    ModelSpec("dpt-large", "dpt", "Intel/dpt-large-ade", "ade20k", (480, 480),
              "DPT-Large (ViT-L/16) ADE20K, the pipeline of Intel/dpt-large-ade", published_params_m=344),
    ModelSpec("dpt-hybrid", "dpt", None, "ade20k", (384, 384),
              "DPT-Hybrid (ViT-B/16 on a ResNet-50 stem), ADE20K head; weights from an original "
              "dpt_hybrid-ade20k checkpoint file", published_params_m=123),
    ModelSpec("dpt-swinv2-tiny", "dpt", None, "ade20k", (256, 256),
              "DPT neck and head on a Swin V2 Tiny backbone (architecture for speed and memory)", builder="dpt-swin"),
    ModelSpec("upernet-convnext-tiny", "cnn", "openmmlab/upernet-convnext-tiny", "ade20k", (512, 512),
              "UperNet with a ConvNeXt-T backbone, ADE20K", published_params_m=60),
    ModelSpec("upernet-convnext-small", "cnn", "openmmlab/upernet-convnext-small", "ade20k", (512, 512),
              "UperNet with a ConvNeXt-S backbone, ADE20K", published_params_m=82),
    ModelSpec("upernet-convnext-base", "cnn", "openmmlab/upernet-convnext-base", "ade20k", (512, 512),
              "UperNet with a ConvNeXt-B backbone, ADE20K", published_params_m=122),
    ModelSpec("deeplabv3-mobilenetv2", "cnn", "google/deeplabv3_mobilenet_v2_1.0_513", "voc", (513, 513),
              "DeepLabV3 with a MobileNetV2 backbone, Pascal VOC", published_params_m=2.5),
] + [
    ModelSpec(f"segformer-{b}", "transformer", f"nvidia/segformer-{b}-finetuned-ade-{s}-{s}", "ade20k", (s, s),
              f"SegFormer-{b.upper()} fine-tuned on ADE20K", published_params_m=p)
    for b, s, p in (("b0", 512, 3.8), ("b1", 512, 13.7), ("b2", 512, 27.5), ("b3", 512, 47.3), ("b4", 512, 64.1),
                    ("b5", 640, 84.7))
]

_SPECS += [
    ModelSpec(name, "cnn", None, "voc", (520, 520), f"torchvision {desc} (COCO subset with the 20 VOC classes; "
              "needs the vision extra)", builder="torchvision", published_params_m=p)
    for name, desc, p in (("fcn-resnet50", "FCN-ResNet50", 35.3), ("fcn-resnet101", "FCN-ResNet101", 54.3),
                          ("deeplabv3-resnet50", "DeepLabV3-ResNet50", 42.0),
                          ("deeplabv3-resnet101", "DeepLabV3-ResNet101", 61.0),
                          ("lraspp-mobilenetv3", "LRASPP-MobileNetV3-Large", 3.2))
]

# exact parameter counts of the architectures as built here (transformers 5 / torchvision 0.29)
PARAMS = {"dpt-large": 343_960_364, "dpt-hybrid": 123_307_884, "dpt-swinv2-tiny": 41_231_808,
          "upernet-convnext-tiny": 60_242_636, "upernet-convnext-small": 81_877_196,
          "upernet-convnext-base": 122_102_956, "deeplabv3-mobilenetv2": 2_525_717, "segformer-b0": 3_752_694,
          "segformer-b1": 13_715_798, "segformer-b2": 27_461_974, "segformer-b3": 47_337_814,
          "segformer-b4": 64_108_374, "segformer-b5": 84_708_694, "fcn-resnet50": 35_322_218,
          "fcn-resnet101": 54_314_346, "deeplabv3-resnet50": 42_004_074, "deeplabv3-resnet101": 60_996_202,
          "lraspp-mobilenetv3": 3_221_538}

MODELS: dict[str, ModelSpec] = {s.name: replace(s, params=PARAMS.get(s.name)) for s in _SPECS}
# other names accepted for registry entries (name -> registry name)
ALIASES: dict[str, str] = {"dpt-swin": "dpt-swinv2-tiny"}


def resolve(name: str) -> ModelSpec | None:
    """The spec registered under ``name`` or one of its aliases, else None."""
    return MODELS.get(ALIASES.get(name, name))
