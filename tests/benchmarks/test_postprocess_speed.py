"""Postprocessing speed on real trained logits: the reference resize + argmax against the CPU bilinear
shortcut (harness.models.postprocess), same label maps required.

The logits are those of the three real trained DeepLabV3 LiteRT models in ../shared/weights on
the real images in ../shared/data: each model is run on its letterboxed image with every tensor
kept, and the tensor its own RESIZE_BILINEAR ops start from (before the in-model argmax) is dequantized,
cropped to the image's valid region and resized to the image's size, as segbench resizes logits.

No trained 150-class network is available offline, so a second case uses synthetic logits shaped
like a trained ADE20K network's (150 classes at 128x128, a few classes dominating smooth regions),
labelled as such.

Run: .venv/bin/pytest tests/benchmarks/test_postprocess_speed.py --benchmark-enable -s
Targets (asserted with --benchmark-enable): the default postprocess (the compiled one-sweep kernel
where numba is installed, else the shortcut where it applies) is never slower than the reference
over the real samples (>= 0.9x, timing noise allowed), and at least 2x faster on the synthetic
150-class logits. The shortcut (``shortcut=True``) is timed beside them.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from harness.models.letterbox import valid_region
from harness.models.postprocess import upsample_argmax

from .conftest import best_of

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SAMPLES = [
    ("deeplabv3_mnv2_ade20k_uint8.tflite", "data/ade20k/ADEChallengeData2016/images/validation/*.jpg"),
    ("deeplabv3_mnv2_pascal_quant.tflite", "data/voc2012/VOCdevkit/VOC2012/JPEGImages/*.jpg"),
    ("deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite", "data/cityscapes/leftImg8bit/*/*/*.png"),
]


def trained_logits(tflite: Path, image: Image.Image) -> torch.Tensor:
    """float32 logits (C, h, w) of ``image``'s valid region, read before the model's own resize."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from harness.models.litert import load_litert_model

    model = load_litert_model(str(tflite))
    it = Interpreter(model_path=str(tflite), experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], model.preprocess([image]).numpy())
    it.invoke()
    ops = it._get_ops_details()
    producer = {int(t): op for op in ops for t in op["outputs"]}
    tensor = int(next(op for op in ops if op["op_name"] == "ARG_MAX")["inputs"][0])
    while producer[tensor]["op_name"] == "RESIZE_BILINEAR":  # walk back to the logits before any resize
        tensor = int(producer[tensor]["inputs"][0])
    details = next(d for d in it.get_tensor_details() if d["index"] == tensor)
    scale, zero_point = details["quantization"]
    q = it.get_tensor(details["index"])[0].astype(np.float32)  # (h, w, C)
    logits = torch.from_numpy((q - zero_point) * scale).permute(2, 0, 1).contiguous()
    rows, cols = valid_region(image.height, image.width, model.input_size)
    h, w = logits.shape[1:]
    return logits[:, : math.ceil(rows * h / model.input_size[0]), : math.ceil(cols * w / model.input_size[1])]


def test_shortcut_on_trained_logits(benchmark, enforce_targets):
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (pip install 'segbench[litert]')")
    cases = [(SHARED / "weights" / model, path) for model, pattern in SAMPLES
             for path in sorted(SHARED.glob(pattern))]
    cases = [(model, path) for model, path in cases if model.exists()]
    if not cases:
        pytest.skip(f"no real samples and weights in {SHARED}")
    total_ref = total_fast = 0.0
    print()
    for model, path in cases:
        image = Image.open(path).convert("RGB")
        logits, size = trained_logits(model, image), (image.height, image.width)
        for shortcut in (True, None):
            fast = upsample_argmax(logits, size, "bilinear", shortcut=shortcut)
            assert torch.equal(fast, upsample_argmax(logits, size, "bilinear", shortcut=False)), path.name
        ref_s = best_of(lambda: upsample_argmax(logits, size, "bilinear", shortcut=False))  # noqa: B023
        cut_s = best_of(lambda: upsample_argmax(logits, size, "bilinear", shortcut=True))  # noqa: B023
        fast_s = best_of(lambda: upsample_argmax(logits, size, "bilinear"))  # noqa: B023
        total_ref, total_fast = total_ref + ref_s, total_fast + fast_s
        print(f"  {path.name}: logits {tuple(logits.shape)} -> {size[0]}x{size[1]}: reference {1e3 * ref_s:.1f} ms, "
              f"shortcut {1e3 * cut_s:.1f} ms, default {1e3 * fast_s:.1f} ms ({ref_s / fast_s:.2f}x)")
    benchmark.pedantic(lambda: None, rounds=1)
    print(f"  all {len(cases)} images: reference {1e3 * total_ref:.1f} ms, default {1e3 * total_fast:.1f} ms "
          f"({total_ref / total_fast:.2f}x), {torch.get_num_threads()} threads")
    if enforce_targets:
        assert total_ref / total_fast >= 0.9


def test_shortcut_on_synthetic_150_class_logits(benchmark, enforce_targets):
    """Synthetic logits shaped like a trained ADE20K network's, resized to ADE20K image sizes."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from test_postprocess import trained_like

    total_one = total_ref = total_fast = total_cut = 0.0
    print()
    for seed, (cells, size) in enumerate([(4, (512, 683)), (6, (480, 640)), (8, (512, 683)), (6, (683, 512))]):
        logits = trained_like(150, 128, 128, cells, seed=seed)
        fast = upsample_argmax(logits, size, "bilinear")
        assert torch.equal(fast, upsample_argmax(logits, size, "bilinear", shortcut=False))
        assert torch.equal(fast, upsample_argmax(logits, size, "bilinear", shortcut=True))
        ref_s = best_of(lambda: upsample_argmax(logits, size, "bilinear", shortcut=False))  # noqa: B023
        cut_s = best_of(lambda: upsample_argmax(logits, size, "bilinear", shortcut=True))  # noqa: B023
        fast_s = best_of(lambda: upsample_argmax(logits, size, "bilinear"))  # noqa: B023
        one_s = best_of(lambda: F.interpolate(logits[None], size=size, mode="bilinear")[0].argmax(0))  # noqa: B023
        total_one, total_ref, total_fast = total_one + one_s, total_ref + ref_s, total_fast + fast_s
        total_cut += cut_s
        print(f"  synthetic 150-class logits (128x128, {cells}x{cells} smooth cells) -> {size[0]}x{size[1]}, "
              f"{int(fast.unique().numel())} classes present: one-piece resize + argmax {1e3 * one_s:.1f} ms, "
              f"chunked reference {1e3 * ref_s:.1f} ms, shortcut {1e3 * cut_s:.1f} ms, "
              f"default {1e3 * fast_s:.1f} ms ({ref_s / fast_s:.2f}x)")
    benchmark.pedantic(lambda: None, rounds=1)
    print(f"  all: one-piece {1e3 * total_one:.1f} ms, chunked reference {1e3 * total_ref:.1f} ms "
          f"({total_one / total_ref:.2f}x), shortcut {1e3 * total_cut:.1f} ms, default {1e3 * total_fast:.1f} ms "
          f"({total_ref / total_fast:.2f}x the reference, {total_one / total_fast:.2f}x one-piece), "
          f"{torch.get_num_threads()} threads")
    if enforce_targets:
        assert total_ref / total_fast >= 2.0
