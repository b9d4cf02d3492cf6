"""The real LiteRT models and the real samples in ../shared they were trained for (skipping with a
clear reason when the package, the weights or the samples are absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
# dataset -> (model file in ../shared/weights, data root in ../shared, dataset options, label map)
REAL = {
    "ade20k": ("deeplabv3_mnv2_ade20k_uint8.tflite", "data/ade20k/ADEChallengeData2016", {}, "ade20k_reduce_zero"),
    "voc": ("deeplabv3_mnv2_pascal_quant.tflite", "data/voc2012/VOCdevkit/VOC2012", {"split": "all"}, None),
    "cityscapes": ("deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite", "data/cityscapes", {}, None),
}


def load_real(dataset: str):
    """(dataset, LiteRT model) for ``dataset`` (a key of REAL)."""
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (pip install 'segbench[litert]')")
    import harness
    from harness.models.litert import load_litert_model

    file, root, opts, label_map = REAL[dataset]
    for p in (SHARED / "weights" / file, SHARED / root):
        if not p.exists():
            pytest.skip(f"{p} is not present (real samples and weights live in ../shared beside the repository)")
    ds = harness.load_dataset(dataset, root=str(SHARED / root), **opts)
    return ds, load_litert_model(str(SHARED / "weights" / file), label_set=dataset, label_map=label_map)
