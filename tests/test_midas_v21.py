"""MiDaS v2.1 from its release checkpoint layout, checked layer by layer against an independent
re-implementation of the original network (isl-org/MiDaS midas_net.py, midas_net_custom.py,
blocks.py; encoders as torch.hub builds them: torchvision's ResNeXt-101 32x8d and
gen-efficientnet's tf_efficientnet_lite3), written here with the original module names, so its
state dict has the release files' keys."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from harness.errors import WeightsError
from harness.models.depth import depth_param_count, load_depth_model
from harness.models.depth_preprocess import depth_preprocess_from_dict
from harness.models.depth_registry import DEPTH_MODELS
from harness.models.midas_v21 import build_midas_v21, load_midas_checkpoint, timm_available


# -- the original network, written from its description ------------------------------------
class RCU(nn.Module):
    """blocks.ResidualConvUnit (large) / ResidualConvUnit_custom (small: ReLU(False), no bn)."""

    def __init__(self, f: int, inplace: bool):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(f, f, 3, 1, 1, bias=True), nn.Conv2d(f, f, 3, 1, 1, bias=True)
        self.relu = nn.ReLU(inplace=inplace)

    def forward(self, x):
        out = self.relu(x)
        out = self.conv2(self.relu(self.conv1(out)))
        return out + x


class FFB(nn.Module):
    """FeatureFusionBlock (large, no out_conv) / FeatureFusionBlock_custom (small, out_conv after upsampling)."""

    def __init__(self, f: int, inplace: bool, out: int | None):
        super().__init__()
        self.resConfUnit1, self.resConfUnit2 = RCU(f, inplace), RCU(f, inplace)
        if out:
            self.out_conv = nn.Conv2d(f, out, 1, 1, 0, bias=True)

    def forward(self, *xs):
        output = xs[0]
        if len(xs) == 2:
            output = output + self.resConfUnit1(xs[1])
        output = nn.functional.interpolate(self.resConfUnit2(output), scale_factor=2, mode="bilinear",
                                           align_corners=True)
        return self.out_conv(output) if hasattr(self, "out_conv") else output


class TVBottleneck(nn.Module):
    """torchvision Bottleneck (ResNeXt: groups, width_per_group)."""

    def __init__(self, inplanes, planes, stride, groups, width_per_group):
        super().__init__()
        width = int(planes * (width_per_group / 64.0)) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def resnext_pretrained(layers, groups: int, width: int) -> nn.Module:
    """_make_resnet_backbone(torchvision resnext 32x8d): layer1 = conv1, bn1, relu, maxpool, layer1."""
    stages, inplanes = [], 64
    for i, n in enumerate(layers):
        planes = 64 * 2**i
        blocks = [TVBottleneck(inplanes, planes, 1 if i == 0 else 2, groups, width)]
        blocks += [TVBottleneck(planes * 4, planes, 1, groups, width) for _ in range(n - 1)]
        stages.append(nn.Sequential(*blocks))
        inplanes = planes * 4
    p = nn.Module()
    p.layer1 = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                             nn.MaxPool2d(3, 2, 1), stages[0])
    p.layer2, p.layer3, p.layer4 = stages[1:]
    return p


class SameConv(nn.Conv2d):
    """gen-efficientnet Conv2dSameExport: TF "same" zero padding fixed from the first input's size."""

    def __init__(self, cin, cout, k, stride=1, groups=1):
        super().__init__(cin, cout, k, stride, 0, groups=groups, bias=False)
        self.pad = None

    def forward(self, x):
        if self.pad is None:
            ih, iw = x.shape[-2:]
            k, s = self.kernel_size[0], self.stride[0]
            ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
            pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
            self.pad = nn.ZeroPad2d((pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return super().forward(self.pad(x))


def conv(cin, cout, k, stride=1, groups=1):
    """gen-efficientnet create_conv2d with pad_type 'same': static k//2 padding at stride 1."""
    return SameConv(cin, cout, k, stride, groups) if stride > 1 else nn.Conv2d(cin, cout, k, 1, k // 2,
                                                                               groups=groups, bias=False)


class GenBlock(nn.Module):
    """gen-efficientnet DepthwiseSeparableConv ('ds') / InvertedResidual ('ir'), lite: ReLU6, no SE."""

    def __init__(self, kind, cin, cout, k, stride, exp):
        super().__init__()
        self.kind, self.skip = kind, stride == 1 and cin == cout
        bn = lambda c: nn.BatchNorm2d(c, eps=1e-3)  # noqa: E731  (TF BN eps)
        if kind == "ds":
            self.conv_dw, self.bn1 = conv(cin, cin, k, stride, cin), bn(cin)
            self.conv_pw, self.bn2 = nn.Conv2d(cin, cout, 1, bias=False), bn(cout)
        else:
            mid = cin * exp
            self.conv_pw, self.bn1 = nn.Conv2d(cin, mid, 1, bias=False), bn(mid)
            self.conv_dw, self.bn2 = conv(mid, mid, k, stride, mid), bn(mid)
            self.conv_pwl, self.bn3 = nn.Conv2d(mid, cout, 1, bias=False), bn(cout)
        self.act = nn.ReLU6()

    def forward(self, x):
        if self.kind == "ds":
            y = self.bn2(self.conv_pw(self.act(self.bn1(self.conv_dw(x)))))
        else:
            y = self.act(self.bn1(self.conv_pw(x)))
            y = self.bn3(self.conv_pwl(self.act(self.bn2(self.conv_dw(y)))))
        return y + x if self.skip else y


def round_channels(c: float, multiplier: float = 1.2, divisor: int = 8) -> int:
    c *= multiplier
    new = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * c else new


def lite3_pretrained() -> nn.Module:
    """tf_efficientnet_lite3 decoded from the EfficientNet-Lite arch definition (x1.2 channels, x1.4 depth, ceil,
    first and last stages fixed, stem 32), cut as _make_efficientnet_backbone does."""
    arch = [("ds", 1, 3, 1, 1, 16), ("ir", 2, 3, 2, 6, 24), ("ir", 2, 5, 2, 6, 40), ("ir", 3, 3, 2, 6, 80),
            ("ir", 3, 5, 1, 6, 112), ("ir", 4, 5, 2, 6, 192), ("ir", 1, 3, 1, 6, 320)]
    stages, cin = [], 32
    for i, (kind, r, k, s, e, c) in enumerate(arch):
        repeats = r if i in (0, len(arch) - 1) else int(math.ceil(r * 1.4))
        cout, blocks = round_channels(c), []
        for j in range(repeats):
            blocks.append(GenBlock(kind, cin, cout, k, s if j == 0 else 1, e))
            cin = cout
        stages.append(nn.Sequential(*blocks))
    p = nn.Module()
    p.layer1 = nn.Sequential(conv(3, 32, 3, 2), nn.BatchNorm2d(32, eps=1e-3), nn.ReLU6(), stages[0], stages[1])
    p.layer2 = nn.Sequential(stages[2])
    p.layer3 = nn.Sequential(stages[3], stages[4])
    p.layer4 = nn.Sequential(stages[5], stages[6])
    return p


class OriginalMidas(nn.Module):
    """MidasNet (large, features 256) / MidasNet_small (features 64, expand) with the original names."""

    def __init__(self, small: bool, layers=(3, 4, 23, 3), groups: int = 32, width: int = 8):
        super().__init__()
        f = 64 if small else 256
        ins, outs = ((32, 48, 136, 384), (f, 2 * f, 4 * f, 8 * f)) if small else ((256, 512, 1024, 2048), (f,) * 4)
        self.pretrained = lite3_pretrained() if small else resnext_pretrained(layers, groups, width)
        self.scratch = nn.Module()
        for i in range(4):
            setattr(self.scratch, f"layer{i + 1}_rn", nn.Conv2d(ins[i], outs[i], 3, 1, 1, bias=False))
        for i in range(4):
            out = (outs[i] // 2 if i > 0 else outs[i]) if small else None
            setattr(self.scratch, f"refinenet{i + 1}", FFB(outs[i], not small, out))
        self.scratch.output_conv = nn.Sequential(
            nn.Conv2d(f, f // 2, 3, 1, 1), nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(f // 2, 32, 3, 1, 1), nn.ReLU(True), nn.Conv2d(32, 1, 1, 1, 0), nn.ReLU(True))

    def forward(self, x) -> dict:
        rec = {}
        p, s = self.pretrained, self.scratch
        layers = [p.layer1(x)]
        for name in ("layer2", "layer3", "layer4"):
            layers.append(getattr(p, name)(layers[-1]))
        rn = [getattr(s, f"layer{i + 1}_rn")(layers[i]) for i in range(4)]
        for i in range(4):  # recorded before the in-place ReLUs of the large model touch them
            rec[f"layer{i + 1}"], rec[f"layer{i + 1}_rn"] = layers[i].clone(), rn[i].clone()
        path = s.refinenet4(rn[3])
        rec["path_4"] = path.clone()
        for level in (3, 2, 1):
            path = getattr(s, f"refinenet{level}")(path, rn[level - 1])
            rec[f"path_{level}"] = path.clone()
        rec["out"] = s.output_conv(path)
        return rec


def randomize(model: nn.Module, seed: int) -> nn.Module:
    """Random weights and BatchNorm statistics (so that every BN matters), eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith(("bn1.weight", "bn2.weight", "bn3.weight")) or ".1.weight" in name:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * (0.5 / math.sqrt(max(1, t[0].numel()))))
    return model.eval()


# ResNeXt-101 32x8d shrunk for speed (2 blocks in stage 3, 4 groups of width 8): same code paths
SHRUNK = {"layers": (1, 1, 2, 1), "groups": 4, "width": 8}
SHRUNK_BUILTIN = {"depths": (1, 1, 2, 1), "groups": 4, "base_width": 8}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("midas")
    torch.manual_seed(0)
    large = randomize(OriginalMidas(small=False, **SHRUNK), 1)
    small = randomize(OriginalMidas(small=True), 2)
    paths = {"large": tmp / "midas_v21-f6b98070.pt", "small": tmp / "midas_v21_small-70d6b9c8.pt"}
    torch.save(large.state_dict(), paths["large"])
    torch.save({"model": small.state_dict(), "optimizer": {}}, paths["small"])  # the {model, optimizer} form
    return {"large": (large, paths["large"]), "small": (small, paths["small"])}


@pytest.mark.parametrize("kind,hw", [("large", (64, 96)), ("small", (96, 64))])
def test_layer_by_layer_equal_to_the_original_network(checkpoints, kind, hw):
    original, path = checkpoints[kind]
    if kind == "large":
        net = build_midas_v21("midas-v21", "builtin", resnext=SHRUNK_BUILTIN).eval()
    else:
        net = build_midas_v21("midas-v21-small", "builtin").eval()
    load_midas_checkpoint(net, path)
    x = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref, ours = original(x.clone()), net.forward_features(x.clone())
    assert set(ref) == set(ours)
    for key in ref:
        scale = float(ref[key].abs().max()) or 1.0
        assert ours[key].shape == ref[key].shape, key
        assert float((ours[key] - ref[key]).abs().max()) <= 1e-4 * scale, key
    assert ours["out"].shape[-2:] == hw and float(ours["out"].min()) >= 0  # non-negative head


def test_loaded_model_predicts_like_the_original_pipeline(checkpoints):
    """load_depth_model on the release file name: MiDaS preprocessing, the network, bicubic resize."""
    original, path = checkpoints["small"]
    model = load_depth_model(str(path))
    assert (model.name, model.family, model.depth_kind, model.align_space) == ("midas-v21-small", "cnn",
                                                                               "disparity", "disparity")
    assert model.weights["source"] == "file" and model.input_size == (256, 256)
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (60, 256, 3), dtype=np.uint8))
    (pred,) = model.predict([im])
    x = model.preprocess([im])
    assert tuple(x.shape) == (1, 3, 64, 256)  # upper bound 256, aspect kept, multiples of 32
    with torch.no_grad():
        out = original(x)["out"]
    ref = nn.functional.interpolate(out, size=(60, 256), mode="bicubic", align_corners=False)[0, 0].numpy()
    assert pred.dtype == np.float32 and np.abs(pred - ref).max() <= 1e-4 * float(np.abs(ref).max())


@pytest.mark.parametrize("name,published", [("midas-v21", 105), ("midas-v21-small", 21)])
def test_full_architectures_have_their_published_size(name, published):
    counted = depth_param_count(DEPTH_MODELS[name])
    assert abs(counted / 1e6 - published) <= 0.03 * published, counted


def test_midas_preprocessing_equals_the_original_transform():
    """MiDaS Resize(upper_bound, multiple of 32, INTER_CUBIC) + NormalizeImage + PrepareForNet, with cv2."""
    cv2 = pytest.importorskip("cv2", reason="the original transform resizes with OpenCV")
    spec = DEPTH_MODELS["midas-v21"]
    proc = depth_preprocess_from_dict(spec.processor_dict(), str(spec.processor_path))
    rng = np.random.default_rng(1)
    for h, w in ((480, 640), (375, 1242), (300, 200), (97, 40)):
        im = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img = im / 255.0
        scale = min(384 / w, 384 / h)  # upper bound: the smaller factor for both sides
        def fit(v):
            y = int(np.round(v / 32) * 32)
            return int(np.floor(v / 32) * 32) if y > 384 else y
        nw, nh = fit(scale * w), fit(scale * h)
        ref = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_CUBIC)
        ref = ((ref - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1).astype(np.float32)
        ours = proc([Image.fromarray(im)]).numpy()[0]
        assert ours.shape == ref.shape, (h, w)
        # OpenCV interpolates float images with float32 coefficients: 3e-4 here is < 0.02 grey levels
        assert np.abs(ours - ref).max() <= 3e-4 and np.abs(ours - ref).mean() <= 2e-5, (h, w)


def test_checkpoints_that_do_not_fit_are_refused_with_the_keys_named(checkpoints, tmp_path):
    _, path = checkpoints["small"]
    sd = torch.load(path, weights_only=True)["model"]
    sd["scratch.extra.weight"] = torch.zeros(1)
    sd["scratch.layer1_rn.weight"] = torch.zeros(1, 1, 3, 3)
    bad = tmp_path / "broken.pt"
    torch.save(sd, bad)
    with pytest.raises(WeightsError, match=r"broken.pt.*small.*unmapped original keys: scratch.extra.weight.*"
                                           r"shape mismatches: neck.0.weight"):
        load_midas_checkpoint(build_midas_v21("midas-v21-small", "builtin"), bad)
    with pytest.raises(WeightsError, match="does not fit the MiDaS v2.1 large"):
        load_midas_checkpoint(build_midas_v21("midas-v21", "builtin", resnext=SHRUNK_BUILTIN), path)


def test_missing_release_file_says_where_it_was_looked_for(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGBENCH_WEIGHTS", str(tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsError, match=r"midas_v21-f6b98070.pt not found in .*SEGBENCH_WEIGHTS"):
        load_depth_model("midas-v21")


@pytest.mark.skipif(not timm_available(), reason="timm is not importable here (it needs torchvision)")
@pytest.mark.parametrize("name", ["midas-v21", "midas-v21-small"])
def test_timm_encoders_match_the_builtin_ones(name):
    timm_net, builtin = build_midas_v21(name, "timm").eval(), build_midas_v21(name, "builtin").eval()
    a, b = timm_net.state_dict(), builtin.state_dict()
    assert {k: tuple(v.shape) for k, v in a.items()} == {k: tuple(v.shape) for k, v in b.items()}
    builtin.load_state_dict(a)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(timm_net(x), builtin(x), rtol=1e-4, atol=1e-5)
