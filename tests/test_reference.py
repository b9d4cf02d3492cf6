"""The published reference table: each figure with its checkpoint, source and protocol, and a
measured cell paired with a figure only under the same protocol and checkpoint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.data import DATASETS
from harness.models import MODELS
from harness.reference import entries, match, published
from harness.suite import _protocol, _Validator

ADE_SCALES = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]


def validated(protocol: dict) -> dict:
    """A protocol as a suite gives it to a cell (defaults filled in)."""
    return _protocol(_Validator(Path("suite.yaml")), protocol)


def hub(repo: str) -> dict:
    return {"source": "hub", "id": repo, "revision": "0" * 40}


MMSEG_SLIDE = {"mode": "slide", "crop_size": 512, "stride": 341, "resize": {"short": 512, "long": 2048}}
MMSEG_MS = {"mode": "multiscale", "merge": "softmax", "scales": ADE_SCALES, "flip": True, "crop_size": 512,
            "stride": 341, "resize": {"short": 512, "long": 2048}}
PTE_MS = {"mode": "multiscale", "merge": "pytorch-encoding", "scales": ADE_SCALES, "flip": True}


def test_every_entry_is_well_formed():
    seen = set()
    for e in entries():
        assert e["model"] in MODELS and e["dataset"] in DATASETS, e
        assert 0 < e["mIoU"] < 100 and e["source"] and e["published_protocol"]
        proto = validated({k: v for k, v in e["protocol"].items()})
        assert all(proto[k] == v for k, v in e["protocol"].items()), (e["protocol"], proto)  # a suite can ask it
        for ckpt in e["checkpoints"]:
            if "hub" in ckpt:  # the registry's own pretrained weights are the checkpoint the figure belongs to
                assert ckpt["hub"] == MODELS[e["model"]].hub_id, e
            else:
                assert re.fullmatch(r"[0-9a-f]{8}", ckpt["sha256_prefix"]) and ckpt["sha256_prefix"] in ckpt["file"]
        for ckpt in e["checkpoints"]:
            key = (e["model"], e["dataset"], repr(sorted(e["protocol"].items())), ckpt.get("hub") or ckpt["file"])
            assert key not in seen, key  # one figure per cell at most
            seen.add(key)


# figures as the sources print them (mmsegmentation configs/convnext/README.md; the DPT paper)
MMSEG_README = {"tiny": (46.11, 46.62), "small": (48.56, 49.02), "base": (48.71, 49.54)}


@pytest.mark.parametrize("size", list(MMSEG_README))
def test_upernet_convnext_figures_are_mmsegmentations_for_its_checkpoints(size):
    weights = hub(f"openmmlab/upernet-convnext-{size}")
    ss, ms = MMSEG_README[size]
    single = published(f"upernet-convnext-{size}", "ade20k", validated(MMSEG_SLIDE), weights)
    multi = published(f"upernet-convnext-{size}", "ade20k", validated(MMSEG_MS), weights)
    assert single["mIoU"] == pytest.approx(ss / 100) and multi["mIoU"] == pytest.approx(ms / 100)
    assert "mmsegmentation" in single["source"] and single["checkpoint"] == f"openmmlab/upernet-convnext-{size}"


def test_dpt_figures_pair_with_the_released_files_by_their_hash():
    proto = validated(PTE_MS)
    hybrid = {"source": "file", "path": "w/dpt_hybrid-ade20k-53898607.pt", "sha256": "53898607" + "0" * 56}
    got = published("dpt-hybrid", "ade20k", proto, hybrid)
    assert got["mIoU"] == pytest.approx(0.4902) and got["aAcc"] == pytest.approx(0.8311)
    assert got["checkpoint"] == "dpt_hybrid-ade20k-53898607.pt" and "Table 4" in got["source"]
    renamed = {**hybrid, "path": "w/other.pt"}  # the content decides, not the name
    assert published("dpt-hybrid", "ade20k", proto, renamed)["mIoU"] == pytest.approx(0.4902)
    other = {**hybrid, "sha256": "ab" * 32}
    entry, why = match("dpt-hybrid", "ade20k", proto, other)
    assert entry is None and "dpt_hybrid-ade20k-53898607.pt" in why and "ababab" in why
    large = published("dpt-large", "ade20k", proto, hub("Intel/dpt-large-ade"))
    assert large["mIoU"] == pytest.approx(0.4763) and "numerics" in large["notes"]


def test_another_protocol_gets_no_figure():
    weights = {"source": "file", "path": "x.pt", "sha256": "53898607" + "0" * 56}
    for proto in ({**PTE_MS, "merge": "softmax"}, {**PTE_MS, "merge": "logits"}, {**PTE_MS, "scales": [0.5, 1.0]},
                  {**PTE_MS, "flip": False}, {"mode": "whole"}):
        entry, why = match("dpt-hybrid", "ade20k", validated(proto), weights)
        assert entry is None and "other protocols" in why, proto
    entry, why = match("upernet-convnext-tiny", "ade20k", validated({**MMSEG_SLIDE, "stride": 512}),
                       hub("openmmlab/upernet-convnext-tiny"))
    assert entry is None and "stride: [512, 512] vs [341, 341]" in why


def test_other_checkpoints_and_unknown_weights_get_no_figure(tmp_path):
    proto = validated(MMSEG_MS)
    local = {"source": "local", "path": str(tmp_path), "sha256": "f" * 64}
    for weights, fragment in ((local, "belongs to openmmlab/upernet-convnext-tiny"), ({"source": "random"}, "random"),
                              (None, "unknown"), (hub("someone/upernet-convnext-tiny-copy"), "belongs to")):
        entry, why = match("upernet-convnext-tiny", "ade20k", proto, weights)
        assert entry is None and fragment in why, (weights, why)
    assert published("upernet-convnext-tiny", "ade20k", "multiscale") is None  # the old three-argument call


def test_facebooks_convnext_figures_and_the_unreleased_pascal_context_model_are_never_paired():
    fb = [e for e in entries() if e["mIoU"] in (46.7, 49.6, 49.9)]
    assert len(fb) == 3 and all(not e["checkpoints"] and "Facebook" in e["notes"] for e in fb)
    pc = next(e for e in entries() if e["dataset"] == "pascal-context-59")
    assert pc["model"] == "dpt-hybrid" and pc["mIoU"] == 60.46 and not pc["checkpoints"]
    weights = {"source": "file", "path": "x.pt", "sha256": "53898607" + "0" * 56}
    entry, why = match("dpt-hybrid", "pascal-context-59", validated(PTE_MS), weights)
    assert entry is None and "unreleased" in why


def test_segformer_figures_need_mmsegmentations_resize_not_the_hub_processors_squash():
    weights = hub("nvidia/segformer-b0-finetuned-ade-512-512")
    single = {"mode": "multiscale", "merge": "softmax", "scales": [1.0], "flip": False,
              "resize": {"short": 512, "long": 2048}}
    assert published("segformer-b0", "ade20k", validated(single), weights)["mIoU"] == pytest.approx(0.374)
    assert published("segformer-b0", "ade20k", validated({"mode": "whole"}), weights) is None
    b5 = published("segformer-b5", "ade20k", validated({**single, "resize": {"short": 640, "long": 2048}}),
                   hub("nvidia/segformer-b5-finetuned-ade-640-640"))
    assert b5["mIoU"] == pytest.approx(0.51) and "AlignedResize" in b5["notes"]
