"""The suite's `corruptions` axis: validation (file, key, value, allowed values), expansion into
one accuracy-only cell per corruption x severity plus clean, ids of clean cells unchanged, the
measure switches of the boundary and calibration engines, filters and --dry-run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from harness.cell import skeleton
from harness.cell_result import CellResult
from harness.errors import ConfigError
from harness.suite import Cell, load_suite

BASE = {
    "name": "r",
    "models": [{"name": "segformer-b0", "label": "SF-B0"}, "upernet-convnext-tiny",
               {"name": "dpt-large", "weights": "random"}],
    "datasets": [{"name": "synthetic", "options": {"num_samples": 2}}],
}


def write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def suite(tmp_path: Path, **kw):
    return load_suite(write(tmp_path, {**BASE, **kw}))


def test_each_accuracy_cell_becomes_one_cell_per_point_plus_clean(tmp_path):
    s = suite(tmp_path, corruptions={"names": ["gaussian_noise", "fog"], "severities": [1, 3, 5]})
    cells = s.cells()
    by_model: dict[str, list[Cell]] = {}
    for c in cells:
        by_model.setdefault(c.model, []).append(c)
    for model in ("segformer-b0", "upernet-convnext-tiny"):
        tags = [c.corruption_tag for c in by_model[model]]
        assert tags == [None] + [f"{n}-{k}" for n in ("gaussian_noise", "fog") for k in (1, 3, 5)]
    # a random-weights model has no accuracy to degrade: its clean cell only
    assert [c.corruption for c in by_model["dpt-large"]] == [None]
    assert s.data["corruptions"] == {"names": ["gaussian_noise", "fog"], "severities": [1, 3, 5], "clean": True,
                                     "seed": 0, "reference": None}


def test_corrupted_cells_are_accuracy_only_and_clean_cells_keep_their_ids(tmp_path):
    plain = suite(tmp_path).cells()
    with_axis = suite(tmp_path, corruptions={"names": "noise", "severities": 2, "seed": 7}).cells()
    clean = [c for c in with_axis if c.corruption is None]
    assert [c.cell_id for c in clean] == [c.cell_id for c in plain]
    corrupted = [c for c in with_axis if c.corruption is not None]
    assert len(corrupted) == 2 * 3
    for c in corrupted:
        assert c.measure["accuracy"] and not (c.measure["latency"] or c.measure["stages"] or c.measure["flops"])
        assert c.corruption["seed"] == 7 and c.corruption["severity"] == 2
        assert c.identity()["corruption"] == c.corruption and c.corruption_tag in c.cell_id
    assert "corruption" not in clean[0].identity()
    assert len({c.cell_id for c in with_axis}) == len(with_axis)
    # the cell travels to its worker as data and back unchanged
    assert Cell.from_dict(json.loads(json.dumps(corrupted[0].to_dict()))) == corrupted[0]


def test_the_result_says_why_a_corrupted_cell_has_no_latency(tmp_path):
    cell = next(c for c in suite(tmp_path, corruptions={"names": ["fog"], "severities": [4]}).cells()
                if c.corruption is not None)
    result = CellResult.from_dict(json.loads(json.dumps(skeleton(cell).to_dict())))
    assert result.identity.corruption == {"name": "fog", "severity": 4, "seed": 0}
    assert "does not depend on the image content" in result.latency.note
    assert result.identity.settings["corruption"]["name"] == "fog"


def test_clean_false_drops_the_clean_cells_and_the_reference_is_stored_by_display_name(tmp_path):
    s = suite(tmp_path, corruptions={"names": ["fog"], "severities": [1], "clean": False, "reference": "segformer-b0"})
    assert s.data["corruptions"]["reference"] == "SF-B0"
    assert [c.corruption_tag for c in s.cells()] == ["fog-1", "fog-1", None]
    assert suite(tmp_path, corruptions={"names": ["fog"], "reference": "SF-B0"}).data["corruptions"]["reference"] \
        == "SF-B0"


@pytest.mark.parametrize("spec, key, words", [
    ({"names": ["gausian_noise"]}, "corruptions.names", ["'gausian_noise'", "gaussian_noise", "expected"]),
    ({"names": []}, "corruptions.names", ["non-empty list"]),
    ({"severities": [0, 3]}, "corruptions.severities", ["0", "1..5"]),
    ({"severities": [2, 2]}, "corruptions.severities", ["repeats"]),
    ({"clean": "yes"}, "corruptions.clean", ["true or false"]),
    ({"seed": -1}, "corruptions.seed", ["integer >= 0"]),
    ({"reference": "dpt-hybrid"}, "corruptions.reference", ["'dpt-hybrid'", "segformer-b0", "upernet-convnext-tiny"]),
    ({"level": 3}, "corruptions", ["'level'", "names, severities, clean, seed, reference"]),
    ("all", "corruptions", ["expected a mapping"]),
])
def test_bad_settings_name_the_file_key_value_and_allowed_values(tmp_path, spec, key, words):
    with pytest.raises(ConfigError) as e:
        suite(tmp_path, corruptions=spec)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 's.yaml'}: {key}")
    for w in words:
        assert w in msg, msg


def test_corruptions_need_accuracy(tmp_path):
    with pytest.raises(ConfigError, match=r"corruptions: .*measure.accuracy: true"):
        suite(tmp_path, corruptions={"names": ["fog"]}, measure={"accuracy": False})


def test_measure_switches_default_on_and_are_validated(tmp_path):
    m = suite(tmp_path).cells()[0].measure
    assert (m["boundary"], m["calibration"], m["boundary_dilation_ratio"], m["calibration_bins"]) == (True, True,
                                                                                                    0.02, 15)
    assert m["trimap_widths"] == [1, 2, 5, 10, 20, 40]
    off = suite(tmp_path, measure={"boundary": False, "calibration": False, "trimap_widths": [3, 8]}).cells()[0]
    assert not off.measure["boundary"] and not off.measure["calibration"] and off.measure["trimap_widths"] == [3, 8]
    for bad, key in (({"boundary": 1}, "measure.boundary"), ({"calibration": "no"}, "measure.calibration"),
                     ({"boundary_dilation_ratio": 0.9}, "measure.boundary_dilation_ratio"),
                     ({"calibration_bins": 0}, "measure.calibration_bins"),
                     ({"trimap_widths": [2, 2]}, "measure.trimap_widths"),
                     ({"trimap_widths": [0]}, "measure.trimap_widths[0]")):
        with pytest.raises(ConfigError, match=f": {re.escape(key)}: "):
            suite(tmp_path, measure=bad)


def test_include_and_exclude_filter_on_the_corruption(tmp_path):
    spec = {"names": ["gaussian_noise", "fog"], "severities": [1, 2]}
    kept = suite(tmp_path, corruptions=spec, include=[{"corruption": ["clean", "fog"]}]).cells()
    assert {c.corruption_tag for c in kept} == {None, "fog-1", "fog-2"}
    dropped = suite(tmp_path, corruptions=spec, exclude=[{"corruption": "gaussian_noise-2"}]).cells()
    assert "gaussian_noise-2" not in {c.corruption_tag for c in dropped} and len(dropped) == 2 * 4 + 1


def test_dry_run_lists_the_corruption_of_each_cell(tmp_path, capsys):
    from harness.cli import main

    path = write(tmp_path, {**BASE, "corruptions": {"names": ["fog"], "severities": [5]}})
    assert main(["run", str(path), "--dry-run", "--json"]) == 0
    cells = json.loads(capsys.readouterr().out)
    assert [(c["corruption"] or {}).get("name", "clean") for c in cells] == ["clean", "fog", "clean", "fog", "clean"]
    assert main(["run", str(path), "--dry-run"]) == 0  # the human listing names each cell's corruption
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[-1] for line in lines[2:]] == ["clean", "fog-5", "clean", "fog-5", "clean"]


def test_shipped_robustness_suites_expand(capsys):
    from harness.cli import main

    root = Path(__file__).resolve().parents[1]
    path = root / "suites" / "robustness-ade20k.yaml"
    assert main(["run", str(path), "--dry-run", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3 * (1 + 19 * 5)
    s = load_suite(path)
    assert s.data["corruptions"]["reference"] == "upernet-convnext-base" and len(s.data["corruptions"]["names"]) == 19
    assert {c.model for c in s.cells()} == {"dpt-large", "upernet-convnext-base", "segformer-b5"}
    real = load_suite(root / "suites" / "robustness-real-samples.yaml").cells()
    assert len(real) == 12 and {c.corruption_tag for c in real} == {None, "gaussian_noise-1", "gaussian_noise-3",
                                                                   "gaussian_noise-5"}


def test_preflight_names_the_missing_package_of_corrupted_cells(tmp_path, monkeypatch):
    import importlib.util

    from harness import preflight

    cells = suite(tmp_path, corruptions={"names": ["fog"], "severities": [1]}).cells()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "imagecorruptions" else real(name, *a))
    reasons = {c.cell_id: preflight.missing_corruptions(c) for c in cells}
    assert [c.corruption_tag for c in cells if reasons[c.cell_id]] == ["fog-1", "fog-1"]
    assert "pip install 'segbench[robustness]'" in next(r for r in reasons.values() if r)
