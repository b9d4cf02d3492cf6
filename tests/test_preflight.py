"""Preflight (missing weights and data listed before a run), --available-only, protocols through the
runner, and published reference numbers attached to cells."""

from __future__ import annotations

import pytest
import yaml
from layouts import write_ade20k
from tiny_models import save_tiny_segformer

import harness
from harness.errors import ConfigError
from harness.protocols import predict_with_protocol
from harness.results import load_run
from harness.runner import run_suite


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))


def _write(tmp_path, data):
    p = tmp_path / "suite.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_missing_weights_and_data_are_listed_once_before_running(tmp_path, offline_cache):
    model = save_tiny_segformer(tmp_path / "m")
    ade = write_ade20k(tmp_path / "data", n=2)
    suite = _write(tmp_path, {
        "name": "pre", "models": ["segformer-b0", {"name": "dpt-hybrid", "weights": str(tmp_path / "no.pt")},
                                  {"name": str(model), "label": "tiny"}],
        "datasets": [{"name": "ade20k", "root": str(ade)}, {"name": "cityscapes", "root": str(tmp_path / "nocity")}],
        "measure": {"iters": 1, "stages": False, "flops": False}})
    with pytest.raises(ConfigError) as info:
        run_suite(suite, out_dir=tmp_path / "r", echo=False)
    msg = str(info.value)
    assert "5 cell(s) cannot run" in msg
    assert "nvidia/segformer-b0-finetuned-ade-512-512 is not in the Hugging Face cache" in msg
    assert f"weights path {tmp_path / 'no.pt'} does not exist" in msg
    assert "cityscapes root" in msg and "--available-only" in msg
    assert not list((tmp_path / "r").glob("*"))  # nothing half-started

    summary = run_suite(suite, out_dir=tmp_path / "r", echo=False, available_only=True)
    cells = {(c.identity.model, c.identity.dataset): c for c in load_run(summary.run_dir).cells.values()}
    assert cells[("tiny", "ade20k")].status == "ok"
    assert cells[("segformer-b0", "ade20k")].status == "skipped"
    assert "not available" in cells[("segformer-b0", "ade20k")].error
    assert summary.exit_code == 0


def test_multiscale_protocol_through_the_runner_equals_a_direct_call(tmp_path):
    model = save_tiny_segformer(tmp_path / "m")
    ade = write_ade20k(tmp_path / "data", n=3)
    proto = {"mode": "multiscale", "scales": [0.75, 1.25], "flip": True}
    suite = _write(tmp_path, {"name": "ms", "models": [{"name": str(model), "label": "tiny"}],
                              "datasets": [{"name": "ade20k", "root": str(ade)}], "protocol": proto,
                              "measure": {"iters": 1, "stages": False, "flops": False}})
    summary = run_suite(suite, out_dir=tmp_path / "r", echo=False)
    cell = next(iter(load_run(summary.run_dir).cells.values()))
    assert cell.status == "ok" and cell.identity.protocol["mode"] == "multiscale" and "multiscale" in cell.cell_id
    m = harness.load_model(str(model))
    ds = harness.load_dataset("ade20k", root=str(ade))
    metrics = harness.SegmentationMetrics(150)
    for i in range(len(ds)):
        s = ds.load(i)
        metrics.update(predict_with_protocol(m, s.image, cell.identity.protocol), s.label)
    assert cell.accuracy.metrics["mIoU"] == pytest.approx(metrics.compute()["mIoU"], abs=1e-12)


def test_a_local_checkpoint_is_never_paired_with_a_published_figure(tmp_path):
    """A tiny local model under a registry name is not the checkpoint the paper's figure belongs to."""
    model = save_tiny_segformer(tmp_path / "m")
    ade = write_ade20k(tmp_path / "data", n=2)
    suite = _write(tmp_path, {"name": "pub", "models": [{"name": "segformer-b0", "weights": str(model)},
                                                        {"name": "segformer-b0", "weights": "random", "label": "rnd"}],
                              "datasets": [{"name": "ade20k", "root": str(ade)}],
                              "measure": {"iters": 1, "stages": False, "flops": False}})
    summary = run_suite(suite, out_dir=tmp_path / "r", echo=False)
    cells = {c.identity.model: c for c in load_run(summary.run_dir).cells.values()}
    assert cells["segformer-b0"].status == "ok" and cells["segformer-b0"].provenance.published is None
    assert cells["rnd"].provenance.published is None  # random weights are never compared with a paper


