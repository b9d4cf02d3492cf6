"""The two encoders of MiDaS v2.1, built as timm builds them, with timm's module names.

MiDaS v2.1 takes its encoders from ``torch.hub``: ``facebookresearch/WSL-Images``
``resnext101_32x8d_wsl`` (torchvision's ResNeXt-101 32x8d) for the large model and
``rwightman/gen-efficientnet-pytorch`` ``tf_efficientnet_lite3`` for the small one. timm ships
both architectures (``resnext101_32x8d``, ``tf_efficientnet_lite3``) under the same parameter
names, and :mod:`harness.models.midas_v21` uses timm's when ``import timm`` works. timm needs
torchvision, which the CPU-only installs of this project do not have, so the same two
architectures are also written here with timm's module and parameter names (a checkpoint
mapped for one loads into the other; tests compare both when timm is present):

- ResNeXt-101 32x8d: 7x7/2 stem, 3x3/2 max pool, bottleneck stages of [3, 4, 23, 3] blocks,
  32 groups of width 8 x stage, stride on the 3x3 convolution, BatchNorm eps 1e-5, ReLU;
- EfficientNet-Lite3 (channel x1.2, depth x1.4, first and last stages not deepened, fixed
  32-channel stem, no squeeze-excitation, ReLU6), TensorFlow "same" padding (stride-2
  convolutions pad ``total // 2`` before and the rest after, from the input size),
  BatchNorm eps 1e-3 with the activation inside (timm's ``BatchNormAct2d``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

RESNEXT101_DEPTHS = (3, 4, 23, 3)
# EfficientNet-Lite3 stages after scaling: (block, repeats, kernel, stride, expansion, out channels)
LITE3_STAGES = (("ds", 1, 3, 1, 1, 24), ("ir", 3, 3, 2, 6, 32), ("ir", 3, 5, 2, 6, 48), ("ir", 5, 3, 2, 6, 96),
                ("ir", 5, 5, 1, 6, 136), ("ir", 6, 5, 2, 6, 232), ("ir", 1, 3, 1, 6, 384))


# -- ResNeXt ------------------------------------------------------------------------------
class Bottleneck(nn.Module):
    """ResNeXt bottleneck (timm/torchvision names): 1x1 -> grouped 3x3 (stride) -> 1x1 (x4), residual."""

    def __init__(self, cin: int, planes: int, stride: int, groups: int, base_width: int):
        super().__init__()
        width = int(planes * base_width / 64) * groups
        out = planes * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.act2(self.bn2(self.conv2(y)))
        return self.act3(self.bn3(self.conv3(y)) + shortcut)


class ResNeXt(nn.Module):
    """ResNeXt without its classifier; ``depths`` blocks per stage (101 layers: (3, 4, 23, 3))."""

    def __init__(self, depths=RESNEXT101_DEPTHS, groups: int = 32, base_width: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for i, depth in enumerate(depths):
            planes, blocks = 64 * 2**i, []
            for b in range(depth):
                blocks.append(Bottleneck(cin, planes, 2 if (b == 0 and i > 0) else 1, groups, base_width))
                cin = planes * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))


# -- EfficientNet-Lite ---------------------------------------------------------------------
class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding computed from each input's size (timm's Conv2dSame)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, padding=0, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation, strict=True):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        x = nn.functional.pad(x, [pads[1][0], pads[1][1], pads[0][0], pads[0][1]])
        return nn.functional.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def same_conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """timm's ``create_conv2d(padding="same")``: static symmetric padding at stride 1, dynamic at stride 2."""
    if stride == 1:
        return nn.Conv2d(cin, cout, k, padding=(k - 1) // 2, groups=groups, bias=False)
    return Conv2dSame(cin, cout, k, stride=stride, groups=groups, bias=False)


class BatchNormAct2d(nn.BatchNorm2d):
    """BatchNorm followed by an activation, with BatchNorm's parameter names (timm's BatchNormAct2d)."""

    def __init__(self, channels: int, act: bool = True, eps: float = 1e-3):
        super().__init__(channels, eps=eps)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))


class DepthwiseSeparable(nn.Module):
    """Depthwise k x k (+BN, ReLU6), pointwise 1x1 (+BN); residual when shapes match."""

    def __init__(self, cin: int, cout: int, k: int, stride: int):
        super().__init__()
        self.conv_dw = same_conv(cin, cin, k, stride, groups=cin)
        self.bn1 = BatchNormAct2d(cin)
        self.conv_pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn2 = BatchNormAct2d(cout, act=False)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv_pw(self.bn1(self.conv_dw(x))))
        return y + x if self.skip else y


class InvertedResidual(nn.Module):
    """Pointwise expansion (+BN, ReLU6), depthwise k x k (+BN, ReLU6), pointwise projection (+BN)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expansion: int):
        super().__init__()
        mid = cin * expansion
        self.conv_pw = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = BatchNormAct2d(mid)
        self.conv_dw = same_conv(mid, mid, k, stride, groups=mid)
        self.bn2 = BatchNormAct2d(mid)
        self.conv_pwl = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = BatchNormAct2d(cout, act=False)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn3(self.conv_pwl(self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))))
        return y + x if self.skip else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite without its head: ``conv_stem``, ``bn1``, ``blocks`` (one Sequential per stage)."""

    def __init__(self, stages=LITE3_STAGES, stem: int = 32):
        super().__init__()
        self.conv_stem = same_conv(3, stem, 3, 2)
        self.bn1 = BatchNormAct2d(stem)
        cin, seq = stem, []
        for kind, repeats, k, stride, expansion, cout in stages:
            blocks = []
            for r in range(repeats):
                s = stride if r == 0 else 1
                blocks.append(DepthwiseSeparable(cin, cout, k, s) if kind == "ds"
                              else InvertedResidual(cin, cout, k, s, expansion))
                cin = cout
            seq.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*seq)
