"""The suite JSON Schema: generated from the validator's declarations, shipped up to date, accepting
every shipped suite, and rejecting the same bad suites as the validator (``harness.suite``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from test_suite import BAD, BASE, with_, write

from harness.errors import ConfigError
from harness.suite import load_suite
from harness.suite_schema import SCHEMA_PATH, schema_text, shipped_text, suite_schema
from harness.suite_spec import MEASURE, TOP, VALIDATOR_ONLY

jsonschema = pytest.importorskip("jsonschema", reason="the schema tests need jsonschema (pip install 'segbench[dev]')")

ROOT = Path(__file__).resolve().parents[1]
SUITES = sorted((ROOT / "suites").glob("*.yaml"))


@pytest.fixture(scope="module")
def validators():
    schema = json.loads(shipped_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    draft7 = {k: v for k, v in schema.items() if k != "$schema"}  # what a draft-07 editor sees
    return [jsonschema.Draft202012Validator(schema), jsonschema.Draft7Validator(draft7)]


def schema_errors(validators, data) -> list[str]:
    """The schema's complaints about ``data``; both drafts must agree on whether there is one."""
    found = [[e.message for e in v.iter_errors(data)] for v in validators]
    assert bool(found[0]) == bool(found[1]), f"draft 2020-12 and draft-07 disagree on {data}: {found}"
    return found[0]


def test_shipped_schema_is_up_to_date():
    assert shipped_text() == schema_text(), ("harness/schema/suite.schema.json is stale: "
                                             "run python scripts/make_suite_schema.py")
    assert SCHEMA_PATH.relative_to(ROOT / "harness")  # inside the package (package-data ships it)


def test_schema_is_made_of_the_declarations():
    schema = suite_schema()
    assert list(schema["properties"]) == list(TOP)
    measure = schema["$defs"]["measure"]["properties"]
    assert list(measure) == list(MEASURE)
    assert measure["iters"]["default"] == MEASURE["iters"].default and measure["warmup"]["minimum"] == 0
    assert schema["$defs"]["model"]["anyOf"][0]["properties"]["runtime"]["anyOf"][0]["enum"] == [
        "pytorch", "onnxruntime", "litert"]


@pytest.mark.parametrize("path", SUITES, ids=[p.name for p in SUITES])
def test_every_shipped_suite_validates_against_the_schema(validators, path):
    assert load_suite(path).cells()
    assert schema_errors(validators, yaml.safe_load(path.read_text())) == []


# Bad cases of tests/test_suite.py that only the validator can reject (harness.suite_spec.VALIDATOR_ONLY:
# a comparison between two values); the schema accepts them, and this test says so if that changes.
VALIDATOR_ONLY_CASES = {"protocol.stride:[600, 600] is larger than crop_size [512, 512]",
                        "protocol.stride:[341, 300] is larger than crop_size [512, 256]",
                        "protocol.crop_size:square crops"}


@pytest.mark.parametrize("override,key,fragment", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_schema_rejects_the_validators_bad_suites(tmp_path, validators, override, key, fragment):
    data = with_(**copy.deepcopy(override))
    with pytest.raises(ConfigError):
        load_suite(write(tmp_path, data))
    errors = schema_errors(validators, data)
    if f"{key}:{fragment}" in VALIDATOR_ONLY_CASES:
        assert errors == [], "the schema now rejects this case: drop it from VALIDATOR_ONLY_CASES"
    else:
        assert errors, f"the schema accepts a suite the validator rejects ({key}: {fragment})"


MORE_BAD = [
    {"models": [""]}, {"models": [{"name": ""}]}, {"datasets": [{"name": "synthetic", "limit": 10**8}]},
    {"devices": []}, {"devices": "cpu"}, {"batch_sizes": [True]}, {"batch_sizes": [1.5]}, {"seed": 2**31},
    {"seed": 1.5}, {"name": "x" * 65}, {"name": 5}, {"variants": []}, {"variants": [{"channels_last": None}]},
    {"protocol": []}, {"protocol": "whole"}, {"protocol": {"scales": []}}, {"protocol": {"scales": [1.0] * 17}},
    {"protocol": {"crop_size": [512]}}, {"protocol": {"crop_size": 9000, "mode": "slide"}},
    {"protocol": {"resize": {"short": 512, "long": 2048, "max": 1}}}, {"protocol": {"flip": None}},
    {"protocol": [{"mode": "whole"}, {"mode": "slide"}]}, {"measure": "fast"}, {"measure": {"warmup_cv": 0.0001}},
    {"measure": {"timeout_s": 10**8}}, {"measure": {"min_time_s": 4000}}, {"measure": {"allow_large": "yes"}},
    {"measure": {"iters": 10**10, "allow_large": True}}, {"include": [{}]}, {"exclude": {"device": "cpu"}},
    {"models": [{"name": "dpt-large", "trust_remote_code": None}]},
    {"datasets": [{"name": "synthetic", "split": None}]},
]


@pytest.mark.parametrize("override", MORE_BAD, ids=[json.dumps(o)[:60] for o in MORE_BAD])
def test_schema_and_validator_reject_more_bad_suites(tmp_path, validators, override):
    data = with_(**copy.deepcopy(override))
    with pytest.raises(ConfigError):
        load_suite(write(tmp_path, data))
    assert schema_errors(validators, data), f"the schema accepts {override}"


GOOD = [
    {}, {"measure": {"iters": 10**6, "allow_large": True}, "batch_sizes": [8192]},
    {"measure": {"warmup_cv": None, "timeout_s": 60}}, {"models": [{"name": "dpt-large", "weights": None,
                                                                   "options": None, "label": "big"}]},
    {"datasets": [{"name": "synthetic", "root": None, "limit": 2, "options": {"num_samples": 2}}]},
    {"devices": ["cpu", "cuda", "cuda:1", "mps"], "precisions": ["fp16"], "amp": ["cast"]},
    {"variants": [{"channels_last": True}, {"attn_implementation": "sdpa", "compile": False}]},
    {"protocol": {"mode": "slide", "crop_size": [512, 256], "stride": 200}},
    {"protocol": {"mode": "multiscale", "merge": "pytorch-encoding", "base_size": 520, "crop_size": 480}},
    {"protocol": [{"mode": "whole", "resize": {"short": 512, "long": 2048}}, {"mode": "multiscale", "flip": False,
                                                                            "scales": [0.5, 1.0]}]},
    {"include": [{"model": ["dpt-large"], "batch_size": 2}], "exclude": [{"precision": "bf16"}]},
    # an empty YAML key (null) is the default for these sections, to the validator and to the schema
    {"protocol": None, "measure": None, "variants": None, "include": None, "exclude": None},
    {"protocol": {"mode": "slide", "crop_size": 64, "resize": None}},
]


@pytest.mark.parametrize("override", GOOD, ids=[json.dumps(o)[:60] for o in GOOD])
def test_schema_and_validator_accept_the_same_good_suites(tmp_path, validators, override):
    data = with_(**copy.deepcopy(override))
    assert load_suite(write(tmp_path, data)).cells()
    assert schema_errors(validators, data) == []


def test_extends_makes_models_and_datasets_optional(tmp_path, validators):
    write(tmp_path, BASE, "base.yaml")
    child = {"extends": "base.yaml", "precisions": ["fp32"]}
    assert load_suite(write(tmp_path, child, "child.yaml")).cells()
    assert schema_errors(validators, child) == []
    no_models = {"datasets": ["synthetic"]}
    with pytest.raises(ConfigError, match="models: missing"):
        load_suite(write(tmp_path, no_models))
    assert schema_errors(validators, no_models)


def test_names_stay_free_strings():
    """Model and dataset names are checked against the registries at load, not by the schema."""
    schema = suite_schema()
    for entry in ("model", "dataset"):
        bare, mapping = schema["$defs"][entry]["anyOf"][1], schema["$defs"][entry]["anyOf"][0]
        assert bare["type"] == "string" and "enum" not in bare
        assert "enum" not in mapping["properties"]["name"]
    assert any("registry" in line for line in VALIDATOR_ONLY)


def test_schema_command_prints_and_writes_the_shipped_file(tmp_path, capsys):
    from harness.cli import main

    assert main(["schema"]) == 0
    assert capsys.readouterr().out == shipped_text()
    out = tmp_path / "editor" / "suite.schema.json"
    assert main(["schema", "--out", str(out)]) == 0
    assert out.read_text() == shipped_text() and str(out) in capsys.readouterr().err
    assert main(["schema", "--path"]) == 0
    assert Path(capsys.readouterr().out.strip()) == SCHEMA_PATH


def _null_cases() -> list[tuple[str, dict]]:
    from harness.suite_spec import DATASET, MODEL, PROTOCOL, VARIANT

    cases = [(f"{k}", {k: None}) for k in TOP if k != "extends"]
    cases += [(f"models[0].{k}", {"models": [{"name": "dpt-large", k: None}]}) for k in MODEL]
    cases += [(f"datasets[0].{k}", {"datasets": [{"name": "synthetic", k: None}]}) for k in DATASET]
    cases += [(f"measure.{k}", {"measure": {k: None}}) for k in MEASURE]
    cases += [(f"variants[0].{k}", {"variants": [{k: None}]}) for k in VARIANT]
    for mode, base in (("whole", {}), ("slide", {"crop_size": 64}), ("multiscale", {})):
        cases += [(f"protocol[{mode}].{k}", {"protocol": {"mode": mode, **base, k: None}}) for k in PROTOCOL]
    return cases


NULLS = _null_cases()


@pytest.mark.parametrize("label,override", NULLS, ids=[c[0] for c in NULLS])
def test_every_declared_key_set_to_null_gets_the_same_answer(tmp_path, validators, label, override):
    """An empty YAML value is null: accepted (meaning the default) or refused alike by both."""
    data = with_(**override)
    try:
        load_suite(write(tmp_path, data))
        accepted = True
    except ConfigError:
        accepted = False
    assert (schema_errors(validators, data) == []) == accepted, f"{label}: validator accepted={accepted}"


def test_the_validator_reads_the_declarations_the_schema_is_made_of():
    """After a merge, a key added to a tuple in harness/suite.py but not to harness/suite_spec.py fails here:
    declare it once in suite_spec (docs/CLI.md, "Adding a suite key") and regenerate the schema."""
    import harness.suite as suite
    import harness.suite_spec as spec

    for name, table in (("TOP_KEYS", spec.TOP), ("MODEL_KEYS", spec.MODEL), ("DATASET_KEYS", spec.DATASET),
                        ("VARIANT_KEYS", spec.VARIANT), ("PROTOCOL_KEYS", spec.PROTOCOL),
                        ("MEASURE_KEYS", spec.MEASURE)):
        assert tuple(getattr(suite, name)) == tuple(table), name
    assert suite.DEFAULT_MEASURE == {k: s.default for k, s in spec.MEASURE.items()}
    assert suite.DEFAULT_PROTOCOL == {"mode": "whole", "upsample": "bilinear"} == spec.DEFAULT_PROTOCOL
    assert suite.LIMITS is spec.LIMITS
