"""``segbench init``: the datasets found in folders the tests write in their real layouts (and in the real
samples), the written suite's header, validity (schema and ``--dry-run``), and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from layouts import (
    write_ade20k,
    write_cityscapes,
    write_coco_stuff,
    write_folder,
    write_pascal_context,
    write_voc,
)

from harness.cli import main
from harness.init_suite import schema_reference
from harness.suite import load_suite
from harness.suite_schema import SCHEMA_PATH

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_ade20k(root / "ade", n=2)
    write_cityscapes(root, per_city=1)
    write_voc(root / "voc", n=2)
    write_pascal_context(root / "context", n=2)
    write_coco_stuff(root, n=2)
    write_folder(root, n=2, mask_suffix="_mask")
    return root


def init(capsys, *argv) -> tuple[int, str, str]:
    code = main(["init", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_finds_every_layout_and_the_suite_passes_the_dry_run(capsys, data, tmp_path):
    out = tmp_path / "suites" / "mine.yaml"
    code, text, _ = init(capsys, "--data", data, "--models", "segformer-b0", "--out", out, "--json")
    assert code == 0
    doc = json.loads(text)
    found = {d["name"]: d for d in doc["datasets"]}
    assert set(found) == {"ade20k", "cityscapes", "voc", "pascal-context-59", "coco-stuff-164k", "folder"}
    assert Path(found["ade20k"]["root"]) == data / "ade" / "ADEChallengeData2016"
    assert Path(found["voc"]["root"]) == data / "voc" / "VOCdevkit" / "VOC2012" and found["voc"]["split"] == "val"
    assert Path(found["cityscapes"]["root"]) == data / "cityscapes" and found["cityscapes"]["split"] == "val"
    assert found["coco-stuff-164k"]["split"] == "val2017" and found["ade20k"]["split"] == "validation"
    assert found["folder"]["options"] == {"mask_suffix": "_mask"} and found["folder"]["samples"] == 2
    written = out.read_text()
    first, second = written.splitlines()[:2]
    assert first == f"# yaml-language-server: $schema={schema_reference(out)}" and second.startswith("# $schema: ")
    suite = load_suite(out)
    assert {d["name"] for d in suite.data["datasets"]} == set(found)
    # segformer-b0 predicts ADE20K's 150 classes: only the ADE20K pair is included, the others are said
    assert [(c.model, c.dataset) for c in suite.cells()] == [("segformer-b0", "ade20k")] and doc["cells"] == 1
    assert written.count("# left out, the label spaces differ:") == 5
    assert main(["run", str(out), "--dry-run"]) == 0
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text())).validate(yaml.safe_load(written))


def test_refuses_to_overwrite_without_force(capsys, data, tmp_path):
    out = tmp_path / "s.yaml"
    out.write_text("keep me\n")
    code, _, err = init(capsys, "--data", data / "voc", "--out", out)
    assert code == 2 and f"{out}: already exists; pass --force" in err and out.read_text() == "keep me\n"
    code, text, _ = init(capsys, "--data", data / "voc", "--out", out, "--force", "--models", "deeplabv3-mobilenetv2")
    assert code == 0 and " ".join(text.split()).startswith(f"wrote {out}: 1 model(s) x 1 dataset(s), 1 cell(s)")
    assert load_suite(out).cells()[0].dataset == "voc"


def test_a_folder_of_no_known_layout_becomes_a_folder_entry_that_says_what_it_needs(capsys, tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"")
    out = tmp_path / "s.yaml"
    code, _, _ = init(capsys, "--data", tmp_path / "photos", "--models", "segformer-b0", "--out", out)
    assert code == 0
    entry = next(line for line in out.read_text().splitlines() if "name: folder" in line)
    assert "no known layout found here" in entry and "masks/NAME{mask_suffix}.png" in entry
    assert main(["run", str(out), "--dry-run", "-q"]) == 0  # valid; the run's preflight says what is missing


def test_bad_inputs_exit_2_and_write_nothing(capsys, data, tmp_path):
    out = tmp_path / "s.yaml"
    code, _, err = init(capsys, "--data", tmp_path / "nope", "--out", out)
    assert code == 2 and f"init --data {tmp_path / 'nope'}: not a folder" in err and not out.exists()
    code, _, err = init(capsys, "--data", data / "voc", "--models", "dpt-larg", "--out", out)
    assert code == 2 and "unknown model 'dpt-larg' (did you mean: dpt-large" in err and not out.exists()


def test_defaults_synthetic_data_and_the_models_found(capsys, tmp_path):
    out = tmp_path / "s.yaml"
    code, text, _ = init(capsys, "--out", out, "--json")
    doc = json.loads(text)
    assert code == 0 and [d["name"] for d in doc["datasets"]] == ["synthetic"] and doc["models"]
    assert load_suite(out).cells() and main(["run", str(out), "--dry-run", "-q"]) == 0


def test_schema_header_is_relative_in_a_checkout_and_absolute_elsewhere(tmp_path):
    assert schema_reference(ROOT / "suites" / "mine.yaml") == "../harness/schema/suite.schema.json"
    assert (ROOT / "suites" / schema_reference(ROOT / "suites" / "mine.yaml")).resolve() == SCHEMA_PATH
    assert schema_reference(tmp_path / "mine.yaml") == str(SCHEMA_PATH)


@pytest.mark.skipif(not SHARED.is_dir(), reason="the real samples (../shared/data) are not here")
def test_real_samples_are_found_in_their_own_layouts(capsys, tmp_path):
    out = tmp_path / "real.yaml"
    code, text, _ = init(capsys, "--data", SHARED, "--models", "deeplabv3-mnv2-voc-litert", "--out", out, "--json")
    assert code == 0
    found = {d["name"]: d for d in json.loads(text)["datasets"]}
    assert {"ade20k", "cityscapes", "voc", "folder"} <= set(found)
    assert found["voc"]["split"] == "all"  # the VOC sample ships no split file: every annotated image
    assert Path(found["folder"]["root"]).name == "camvid"
    assert found["folder"]["options"] == {"masks_dir": "labels", "mask_suffix": "_P"}
    assert [(c.model, c.dataset) for c in load_suite(out).cells()] == [("deeplabv3-mnv2-voc-litert", "voc")]
