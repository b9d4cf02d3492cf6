"""torchvision's segmentation models (FCN, DeepLabV3-ResNet, LRASPP) behind the optional ``vision`` extra.

Their pretrained weights (``COCO_WITH_VOC_LABELS_V1``) predict the 21 VOC classes. The
preprocessing equals the weights' own transform (``SemanticSegmentation(resize_size=520)``):
resize the shorter side to 520 pixels (bilinear, PIL), rescale to [0, 1], normalise with
the ImageNet mean and std. Images of different aspect ratios give different sizes, so a
batch larger than 1 needs images of one aspect ratio (the reference evaluation uses batch 1).

Pretrained weights are read from torch.hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints``)
and never downloaded here: a missing file is a WeightsError naming the file and the folder.
"""

from __future__ import annotations

from pathlib import Path

import torch

from harness.errors import ConfigError, WeightsError
from harness.models.base import SegmentationModel
from harness.models.cnn import check_attention_setting
from harness.models.preprocess import ResizeNormalize

RANDOM_SEED = 0
NUM_CLASSES = 21
RESIZE_SHORTER_SIDE = 520  # pixels, as torchvision's SemanticSegmentation preset
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# registry name -> (torchvision builder, weights enum, has an auxiliary classifier)
BUILDERS = {
    "fcn-resnet50": ("fcn_resnet50", "FCN_ResNet50_Weights", True),
    "fcn-resnet101": ("fcn_resnet101", "FCN_ResNet101_Weights", True),
    "deeplabv3-resnet50": ("deeplabv3_resnet50", "DeepLabV3_ResNet50_Weights", True),
    "deeplabv3-resnet101": ("deeplabv3_resnet101", "DeepLabV3_ResNet101_Weights", True),
    "lraspp-mobilenetv3": ("lraspp_mobilenet_v3_large", "LRASPP_MobileNet_V3_Large_Weights", False),
}
INSTALL_HINT = ("install the vision extra (`pip install 'segbench[vision]'`, which pins torch==2.14.1 and "
                "torchvision==0.29.1, ~5.5 GB)")


def torchvision_available() -> bool:
    """Whether torchvision can be imported here."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return False
    return True


def _segmentation_module():
    try:
        from torchvision.models import segmentation
    except ImportError as e:
        raise ConfigError(f"torchvision models need torchvision, which is not installed: {INSTALL_HINT} ({e})") from e
    return segmentation


def preprocessor() -> ResizeNormalize:
    """The weights' transform: shorter side to 520 px bilinear, [0, 1], ImageNet mean/std."""
    return ResizeNormalize(size={"shortest_edge": RESIZE_SHORTER_SIDE}, image_mean=IMAGENET_MEAN,
                           image_std=IMAGENET_STD, resample=2)


def build(name: str, seed: int = RANDOM_SEED) -> torch.nn.Module:
    """The architecture of registry entry ``name`` with torchvision's initialisation, seeded, no weights."""
    if name not in BUILDERS:
        raise ConfigError(f"{name!r} is not a torchvision registry model ({', '.join(BUILDERS)})")
    fn, _, aux = BUILDERS[name]
    seg = _segmentation_module()
    torch.manual_seed(seed)
    kwargs = {"aux_loss": True} if aux else {}
    return getattr(seg, fn)(weights=None, weights_backbone=None, num_classes=NUM_CLASSES, **kwargs)


def checkpoint_path(name: str) -> Path | None:
    """Where torch.hub keeps the pretrained file of ``name`` (None without torchvision)."""
    if not torchvision_available():
        return None
    seg = _segmentation_module()
    enum = getattr(seg, BUILDERS[name][1])
    url = enum.DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def weights_present(name: str) -> bool | None:
    """Whether the pretrained file of ``name`` is in torch.hub's checkpoint folder (None without torchvision)."""
    path = checkpoint_path(name)
    return None if path is None else path.is_file()


def meta_param_count(name: str) -> int | None:
    """Parameters of ``name`` counted on the meta device (None without torchvision)."""
    if not torchvision_available():
        return None
    with torch.device("meta"):
        module = build(name)
    return sum(p.numel() for p in module.parameters())


def _load_state(module: torch.nn.Module, path: Path) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"{path}: cannot read a PyTorch state dict ({type(e).__name__}: {e})") from e
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{path}: does not fit the architecture: {e}") from e


class TorchvisionSegmentationModel(SegmentationModel):
    """A torchvision segmentation model; ``forward`` returns the ``"out"`` logits (N, 21, H, W)."""

    def __init__(self, module: torch.nn.Module, name: str, weights: dict, device: str = "cpu",
                 precision: str = "fp32", amp: str = "autocast", upsample: str = "bilinear",
                 channels_last: bool = False, compile: bool = False):
        super().__init__(device=device, precision=precision, amp=amp, upsample=upsample)
        from harness.data.voc import CLASSES

        self.name = name
        self.family = "cnn"
        self.label_set = "voc"
        self.weights = weights
        self.num_labels = NUM_CLASSES
        self.id2label = dict(enumerate(CLASSES))
        self.preprocessor = preprocessor()
        self.input_size = (RESIZE_SHORTER_SIDE, RESIZE_SHORTER_SIDE)
        self.image_mean, self.image_std = IMAGENET_MEAN, IMAGENET_STD
        self.place_module(module, channels_last=channels_last, compile=compile)

    def _run(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self._call(self.channels_last_input(pixel_values))["out"]


def load_torchvision_model(spec, weights: str | None = None, attn_implementation: str | None = None,
                           name: str | None = None, **adapter_kwargs) -> TorchvisionSegmentationModel:
    """Adapter for a torchvision registry spec: ``weights`` None (torch.hub cache), ``"random"`` or a .pth path."""
    from harness.models.hub import local_provenance

    check_attention_setting(spec.name, "cnn", attn_implementation)
    module = build(spec.name)
    if weights == "random":
        provenance: dict = {"source": "random", "seed": RANDOM_SEED}
    elif weights is None:
        path = checkpoint_path(spec.name)
        if path is None or not path.is_file():
            raise WeightsError(f"weights for {spec.name!r} are not available: {path.name if path else '?'} is not in "
                               f"torch.hub's checkpoint folder {path.parent if path else '?'} (set TORCH_HOME to use "
                               f"another). Download it on a connected machine and copy it there, or give "
                               f"`weights: /path/to/file.pth`, or `weights: random` to measure speed and memory only")
        _load_state(module, path)
        provenance = {"source": "file", "path": str(path.resolve()), "sha256": local_provenance(path)["sha256"]}
    else:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"weights {weights!r} for {spec.name!r}: no such file (expected a torchvision "
                               f"state dict .pth)")
        _load_state(module, path)
        provenance = local_provenance(path)
    return TorchvisionSegmentationModel(module, name=name or spec.name, weights=provenance, **adapter_kwargs)
