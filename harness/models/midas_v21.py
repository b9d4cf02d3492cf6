"""MiDaS v2.1, the CNN that the DPT paper compares against, from its released checkpoint files
(``midas_v21-f6b98070.pt``: ResNeXt-101 32x8d WSL encoder, 384; ``midas_v21_small-70d6b9c8.pt``:
EfficientNet-Lite3 encoder, 256), rebuilt from timm's encoders (or the same architectures in
:mod:`harness.models.midas_backbones` when timm is not importable) and a decoder written here,
loaded by an explicit key mapping.

What it reproduces (isl-org/MiDaS ``midas/midas_net.py``, ``midas_net_custom.py``, ``blocks.py``,
``run.py``): four encoder stages -> 3x3 convolutions to the decoder width (``scratch.layer*_rn``;
the small model widens them x1, x2, x4, x8, "expand") -> four fusion blocks applied deepest
first (``refinenet4`` .. ``refinenet1``): add a residual unit of the skip feature, one more
residual unit, x2 bilinear upsampling with ``align_corners=True`` (the small model then a 1x1
``out_conv``) -> head: 3x3 conv, x2 bilinear upsampling (``align_corners=False``), 3x3 conv,
ReLU, 1x1 conv to one channel, ReLU. Output: relative inverse depth at the input resolution.
The large model's residual units use an in-place ReLU on their input, so their skip adds
``relu(x)`` rather than ``x``; the small model's do not (``nn.ReLU(False)``). Both are kept.

Preprocessing is MiDaS's ``Resize(keep_aspect_ratio=True, ensure_multiple_of=32,
resize_method="upper_bound", INTER_CUBIC)`` + ImageNet normalisation (see
:mod:`harness.models.depth_preprocess`, kind ``"midas"``); the prediction is resized to the
image bicubically (``align_corners=False``), as ``run.py`` does.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn

from harness.errors import ConfigError, WeightsError
from harness.models.depth_base import DepthModel
from harness.models.depth_preprocess import depth_preprocess_from_dict
from harness.models.midas_backbones import EfficientNetLite, ResNeXt

RANDOM_SEED = 0
BACKBONES = ("auto", "timm", "builtin")
# name -> (timm model, encoder stage channels, decoder width, expand, residual skip adds relu(x))
ARCHS = {"midas-v21": ("resnext101_32x8d", (256, 512, 1024, 2048), 256, False, True),
         "midas-v21-small": ("tf_efficientnet_lite3", (32, 48, 136, 384), 64, True, False)}


class ResidualUnit(nn.Module):
    """``x' + conv2(relu(conv1(relu(x))))`` where ``x'`` is ``relu(x)`` (``relu_skip``) or ``x``."""

    def __init__(self, features: int, relu_skip: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)
        self.relu_skip = relu_skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(x)
        y = self.conv2(torch.relu(self.conv1(a)))
        return y + (a if self.relu_skip else x)


class FusionBlock(nn.Module):
    """``unit2(x + unit1(skip))``, x2 bilinear (align_corners=True), then ``out_conv`` when present."""

    def __init__(self, features: int, relu_skip: bool, out_features: int | None):
        super().__init__()
        self.unit1 = ResidualUnit(features, relu_skip)
        self.unit2 = ResidualUnit(features, relu_skip)
        self.out_conv = nn.Conv2d(features, out_features, 1) if out_features else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.unit1(skip)
        x = nn.functional.interpolate(self.unit2(x), scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x) if self.out_conv is not None else x


class MidasV21Net(nn.Module):
    """Encoder (timm-named) + decoder; ``forward`` -> (N, H, W) relative inverse depth."""

    def __init__(self, name: str, encoder: nn.Module):
        super().__init__()
        _, channels, features, expand, relu_skip = ARCHS[name]
        widths = [features * 2**i for i in range(4)] if expand else [features] * 4
        self.small = expand
        self.encoder = encoder
        self.neck = nn.ModuleList(nn.Conv2d(c, w, 3, padding=1, bias=False) for c, w in zip(channels, widths, strict=True))
        # fusion[0] is the deepest block (refinenet4); expand halves the width after each but the last
        outs = [widths[i] // 2 if (expand and i > 0) else (widths[i] if expand else None) for i in (3, 2, 1, 0)]
        self.fusion = nn.ModuleList(FusionBlock(widths[i], relu_skip, o) for i, o in zip((3, 2, 1, 0), outs, strict=True))
        self.head = nn.Sequential(nn.Conv2d(features, features // 2, 3, padding=1),
                                  nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                  nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 1, 1), nn.ReLU())

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four encoder stages MiDaS taps (ResNeXt: after layer1..4; EfficientNet: blocks 1, 2, 4, 6)."""
        e = self.encoder
        if self.small:
            x = e.blocks[1](e.blocks[0](e.bn1(e.conv_stem(x))))
            l2 = e.blocks[2](x)
            l3 = e.blocks[4](e.blocks[3](l2))
            return [x, l2, l3, e.blocks[6](e.blocks[5](l3))]
        x = e.layer1(e.maxpool(e.act1(e.bn1(e.conv1(x)))))
        l2 = e.layer2(x)
        l3 = e.layer3(l2)
        return [x, l2, l3, e.layer4(l3)]

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every intermediate the original names: layer1..4, layer1_rn..4_rn, path_4..path_1, out (N, 1, H, W)."""
        feats = {f"layer{i + 1}": t for i, t in enumerate(self.encode(x))}
        feats.update({f"layer{i + 1}_rn": conv(feats[f"layer{i + 1}"]) for i, conv in enumerate(self.neck)})
        path = self.fusion[0](feats["layer4_rn"])
        feats["path_4"] = path
        for j, level in enumerate((3, 2, 1), start=1):
            path = self.fusion[j](path, feats[f"layer{level}_rn"])
            feats[f"path_{level}"] = path
        feats["out"] = self.head(path)
        return feats

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.forward_features(pixel_values)["out"][:, 0]


def timm_available() -> bool:
    """Whether ``import timm`` works here (it needs torchvision)."""
    try:
        import timm  # noqa: F401
    except Exception:
        return False
    return True


def _timm_encoder(model_name: str) -> nn.Module:
    import timm

    enc = timm.create_model(model_name, pretrained=False)
    for head in ("fc", "global_pool", "conv_head", "bn2", "classifier"):
        if hasattr(enc, head):
            setattr(enc, head, nn.Identity())  # MiDaS uses no classifier: keep it out of params and weights
    return enc


def build_midas_v21(name: str, backbone: str = "auto", resnext: dict | None = None) -> MidasV21Net:
    """The MiDaS v2.1 network ``name`` (``midas-v21`` or ``midas-v21-small``) with default initialisation.

    backbone: ``"timm"`` (timm's encoder), ``"builtin"`` (:mod:`harness.models.midas_backbones`) or
    ``"auto"`` (timm when importable). ``resnext`` (``depths``, ``groups``, ``base_width``) shrinks the
    builtin ResNeXt for tests.
    """
    if name not in ARCHS:
        raise ConfigError(f"unknown MiDaS v2.1 model {name!r}; expected one of {', '.join(ARCHS)}")
    if backbone not in BACKBONES:
        raise ConfigError(f"MiDaS backbone {backbone!r} is not one of {', '.join(BACKBONES)}")
    impl = ("timm" if timm_available() else "builtin") if backbone == "auto" else backbone
    if impl == "timm":
        if not timm_available():
            raise ConfigError("backbone='timm' needs timm (pip install 'segbench[midas]'; timm needs torchvision)")
        encoder = _timm_encoder(ARCHS[name][0])
    elif name == "midas-v21-small":
        encoder = EfficientNetLite()
    else:
        encoder = ResNeXt(**(resnext or {}))
    net = MidasV21Net(name, encoder)
    net.backbone_impl = impl
    return net


# -- original checkpoint keys -> these modules -------------------------------------------
_LARGE_ENC = [(re.compile(r"^pretrained\.layer1\.0\.(.+)$"), r"encoder.conv1.\1"),
              (re.compile(r"^pretrained\.layer1\.1\.(.+)$"), r"encoder.bn1.\1"),
              (re.compile(r"^pretrained\.layer1\.4\.(.+)$"), r"encoder.layer1.\1"),
              (re.compile(r"^pretrained\.layer([234])\.(.+)$"), r"encoder.layer\1.\2")]
_SMALL_ENC = [(re.compile(r"^pretrained\.layer1\.0\.(.+)$"), r"encoder.conv_stem.\1"),
              (re.compile(r"^pretrained\.layer1\.1\.(.+)$"), r"encoder.bn1.\1")]
# original (layer, index in it) of the EfficientNet stages -> blocks.<stage>
_SMALL_STAGES = {("1", "3"): 0, ("1", "4"): 1, ("2", "0"): 2, ("3", "0"): 3, ("3", "1"): 4, ("4", "0"): 5,
                 ("4", "1"): 6}
_STAGE = re.compile(r"^pretrained\.layer([1234])\.(\d+)\.(.+)$")
_RN = re.compile(r"^scratch\.layer([1234])_rn\.weight$")
_FUSE = re.compile(r"^scratch\.refinenet([1234])\.(?:resConfUnit([12])\.(conv[12])|(out_conv))\.(weight|bias)$")
_HEAD = re.compile(r"^scratch\.output_conv\.([024])\.(weight|bias)$")


def map_midas_key(key: str, small: bool) -> str | None:
    """The key in :class:`MidasV21Net` of an original MiDaS v2.1 checkpoint key (None when unknown)."""
    for pattern, target in (_SMALL_ENC if small else _LARGE_ENC):
        if pattern.match(key):
            return pattern.sub(target, key)
    m = _STAGE.match(key)
    if small and m and (m[1], m[2]) in _SMALL_STAGES:
        return f"encoder.blocks.{_SMALL_STAGES[(m[1], m[2])]}.{m[3]}"
    m = _RN.match(key)
    if m:
        return f"neck.{int(m[1]) - 1}.weight"
    m = _FUSE.match(key)
    if m:
        block = 4 - int(m[1])  # refinenet4 runs first
        part = f"unit{m[2]}.{m[3]}" if m[2] else "out_conv"
        return f"fusion.{block}.{part}.{m[5]}"
    m = _HEAD.match(key)
    return f"head.{m[1]}.{m[2]}" if m else None


def convert_midas_state_dict(original: dict[str, torch.Tensor], small: bool) -> tuple[dict, list[str]]:
    """(state dict of :class:`MidasV21Net`, original keys that map nowhere)."""
    out, unmapped = {}, []
    for key, value in original.items():
        target = map_midas_key(key, small)
        if target is None:
            unmapped.append(key)
        else:
            out[target] = value
    return out, unmapped


def load_midas_checkpoint(net: MidasV21Net, path: Path) -> None:
    """Load original file ``path`` into ``net``; WeightsError listing every key that does not fit."""
    from harness.models.dpt_original import read_checkpoint

    converted, unmapped = convert_midas_state_dict(read_checkpoint(Path(path)), net.small)
    expected = net.state_dict()
    missing = [k for k in expected if k not in converted and not k.endswith("num_batches_tracked")]
    shapes = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
              for k, v in converted.items() if k in expected and v.shape != expected[k].shape]
    extra = [k for k in converted if k not in expected]
    problems = [f"{len(items)} {title}: " + ", ".join(items[:8]) + (" ..." if len(items) > 8 else "")
                for title, items in (("unmapped original keys", unmapped), ("missing keys", missing),
                                     ("shape mismatches", shapes), ("keys the model does not have", extra)) if items]
    if problems:
        kind = "small (EfficientNet-Lite3)" if net.small else "large (ResNeXt-101)"
        raise WeightsError(f"{path}: does not fit the MiDaS v2.1 {kind} architecture: " + "; ".join(problems))
    net.load_state_dict(converted, strict=False)


def checkpoint_dirs() -> list[Path]:
    """Folders searched for the release files: $SEGBENCH_WEIGHTS, ../shared/weights, weights/, torch.hub's."""
    from harness.models.litert import weights_dirs

    return [*weights_dirs(), Path(torch.hub.get_dir()) / "checkpoints"]


def find_checkpoint(filename: str) -> Path | None:
    """The first ``filename`` found in :func:`checkpoint_dirs`, or None."""
    return next((d / filename for d in checkpoint_dirs() if (d / filename).is_file()), None)


class MidasV21Model(DepthModel):
    """MiDaS v2.1 (large or small): relative inverse depth, bicubic resize to the image."""

    family = "cnn"
    depth_kind = "disparity"
    align_space = "disparity"

    def __init__(self, net: MidasV21Net, spec, weights: dict, device: str = "cpu", precision: str = "fp32",
                 amp: str = "autocast", channels_last: bool = False, compile: bool = False):
        super().__init__(device=device, precision=precision, amp=amp)
        self.name = spec.name
        self.weights = weights
        self.backbone_impl = getattr(net, "backbone_impl", "builtin")
        self.preprocessor = depth_preprocess_from_dict(spec.processor_dict(), str(spec.processor_path))
        self.input_size = self.preprocessor.input_size
        self.place_module(net, channels_last=channels_last, compile=compile)

    def _run(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self._call(self.channels_last_input(pixel_values))

    def protocol_extra(self) -> dict:
        return {"backbone_impl": self.backbone_impl}


def load_midas_v21(spec, weights: str | None = None, backbone: str = "auto", **adapter) -> MidasV21Model:
    """MiDaS v2.1 registry model ``spec`` with its release weights, ``"random"`` ones, or those of file ``weights``.

    weights None looks for ``spec.checkpoint`` in :func:`checkpoint_dirs`; ``adapter``: device,
    precision, amp, channels_last, compile.
    """
    from harness.models.hub import local_provenance

    if weights == "random":
        torch.manual_seed(RANDOM_SEED)
        net = build_midas_v21(spec.name, backbone)
        provenance: dict = {"source": "random", "seed": RANDOM_SEED}
    else:
        path = Path(os.path.expanduser(weights)) if weights is not None else find_checkpoint(spec.checkpoint)
        if path is None:
            raise WeightsError(f"{spec.name}: {spec.checkpoint} not found in "
                               f"{', '.join(str(d) for d in checkpoint_dirs())}: download it from the MiDaS v2.1 "
                               "release, put it in one of these folders (or set SEGBENCH_WEIGHTS), or set "
                               f"`weights: /path/to/{spec.checkpoint}`")
        if not path.is_file():
            raise WeightsError(f"{spec.name}: weights file {path} does not exist")
        net = build_midas_v21(spec.name, backbone)
        load_midas_checkpoint(net, path)
        provenance = local_provenance(path)
    provenance["backbone_impl"] = net.backbone_impl
    return MidasV21Model(net, spec, provenance, **adapter)
