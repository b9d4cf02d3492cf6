"""Safe by default: remote code never runs unless the suite asks for it (and the report says so),
and result files cannot make segbench read or copy files outside their run directory."""

from __future__ import annotations

import json

import pytest
from fixtures_results import make_cell, write_run

import harness
from harness.merge import merge_runs
from harness.report.html import write_report
from harness.results import load_run


def _remote_code_model(tmp_path, marker):
    d = tmp_path / "remote"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({
        "model_type": "evil-seg", "num_labels": 3,
        "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModelForSemanticSegmentation": "evil.EvilModel"}}))
    (d / "evil.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
                               "from transformers import PretrainedConfig\nclass EvilConfig(PretrainedConfig):\n"
                               "    model_type = 'evil-seg'\n")
    (d / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "DPTImageProcessor",
                                                            "size": {"height": 32, "width": 32}}))
    return d


@pytest.mark.parametrize("weights", [None, "random"])
def test_remote_code_does_not_run_without_explicit_consent(tmp_path, weights):
    marker = tmp_path / "pwned"
    d = _remote_code_model(tmp_path, marker)
    with pytest.raises(Exception) as info:
        harness.load_model(str(d), weights=weights)
    assert not marker.exists()
    assert "evil-seg" in str(info.value) and "trust_remote_code: true" in str(info.value)


def test_report_marks_remote_code_cells(tmp_path):
    cell = make_cell("custom-model", miou=0.4)
    cell["weights"] = {"source": "hub", "id": "someone/custom", "trust_remote_code": True}
    run = write_run(tmp_path / "run", [cell, make_cell("plain", miou=0.3)])
    page = write_report([run], tmp_path / "r.html").read_text()
    assert "custom-model (remote code)" in page and "plain (remote code)" not in page


def test_merge_never_copies_files_from_outside_the_run(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not copy")
    cell = make_cell("m", miou=0.4)
    cell["samples"] = [{"id": "x", "image": "../secret.txt", "label": str(secret), "pred": "../../secret.txt"}]
    run = write_run(tmp_path / "runs" / "a", [cell])
    (run / "samples").mkdir()
    (run / "samples" / "link.png").symlink_to(secret)
    cell["samples"].append({"id": "y", "image": "samples/link.png", "label": None, "pred": "samples/link.png"})
    write_run(run, [cell])
    out = tmp_path / "merged"
    merge_runs([run], out, allow_missing=True)
    copied = [p for p in out.rglob("*") if p.is_file() and p.name not in ("run.json",) and p.suffix != ".json"]
    assert copied == []
    assert load_run(out).cells  # the results themselves are merged
