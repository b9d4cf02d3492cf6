"""Suite validation (every field with a bad value) and matrix expansion."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.errors import ConfigError
from harness.suite import Cell, load_suite

BASE = {
    "name": "t",
    "models": [{"name": "dpt-large", "weights": "random"}, "upernet-convnext-tiny"],
    "datasets": [{"name": "synthetic", "options": {"num_samples": 2}}],
    "devices": ["cpu"],
    "precisions": ["fp32", "bf16"],
    "batch_sizes": [1, 2],
}


def write(tmp_path: Path, data, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


def with_(**kw) -> dict:
    d = {k: (list(v) if isinstance(v, list) else v) for k, v in BASE.items()}
    d.update(kw)
    return d


def test_expansion_is_the_cartesian_product(tmp_path):
    cells = load_suite(write(tmp_path, BASE)).cells()
    assert len(cells) == 2 * 1 * 1 * 2 * 2
    assert {(c.model, c.precision, c.batch_size) for c in cells} == {
        (m, p, b) for m in ("dpt-large", "upernet-convnext-tiny") for p in ("fp32", "bf16") for b in (1, 2)}
    assert len({c.cell_id for c in cells}) == len(cells)
    # short model form gets pretrained weights (None), long form keeps 'random'
    assert {c.model: c.weights for c in cells} == {"dpt-large": "random", "upernet-convnext-tiny": None}


def test_cell_ids_are_stable_and_file_safe(tmp_path):
    a = [c.cell_id for c in load_suite(write(tmp_path, BASE)).cells()]
    b = [c.cell_id for c in load_suite(write(tmp_path, BASE, "other.yaml")).cells()]
    assert a == b
    for cid in a:
        assert "/" not in cid and " " not in cid


def test_cell_round_trips_through_dict(tmp_path):
    cell = load_suite(write(tmp_path, BASE)).cells()[0]
    again = Cell.from_dict(cell.to_dict())
    assert again == cell and again.cell_id == cell.cell_id


def test_include_and_exclude_trim_the_matrix(tmp_path):
    s = with_(include=[{"model": "dpt-large"}], exclude=[{"precision": "bf16", "batch_size": 2}])
    cells = load_suite(write(tmp_path, s)).cells()
    assert {(c.model, c.precision, c.batch_size) for c in cells} == {
        ("dpt-large", "fp32", 1), ("dpt-large", "fp32", 2), ("dpt-large", "bf16", 1)}


def test_include_with_list_values(tmp_path):
    s = with_(include=[{"model": ["dpt-large", "upernet-convnext-tiny"], "precision": "fp32"}])
    cells = load_suite(write(tmp_path, s)).cells()
    assert {c.precision for c in cells} == {"fp32"} and len(cells) == 4


def test_everything_excluded_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="leave no cell"):
        load_suite(write(tmp_path, with_(exclude=[{"device": "cpu"}])))


def test_defaults_are_filled_in(tmp_path):
    s = load_suite(write(tmp_path, {"models": ["dpt-large"], "datasets": ["synthetic"]}, "mini.yaml"))
    assert s.name == "mini"
    c = s.cells()[0]
    assert (c.device, c.precision, c.amp, c.batch_size, c.runtime) == ("cpu", "fp32", "autocast", 1, "pytorch")
    assert c.protocol == {"mode": "whole", "upsample": "bilinear"}
    assert c.measure["warmup"] >= 1 and c.measure["iters"] >= 1


def test_litert_models_get_the_litert_runtime(tmp_path):
    s = load_suite(write(tmp_path, with_(models=["deeplabv3-mnv2-ade20k-litert", "x/model.tflite", "dpt-large"])))
    assert {c.model: c.runtime for c in s.cells()} == {
        "deeplabv3-mnv2-ade20k-litert": "litert", "x/model.tflite": "litert", "dpt-large": "pytorch"}


BAD = [
    # (override, key path in message, fragment of the message)
    ({"colour": 1}, "colour", "unknown key"),
    ({"name": "has space"}, "name", "letters, digits"),
    ({"models": []}, "models", "non-empty list"),
    ({"models": "dpt-large"}, "models", "non-empty list"),
    ({"models": [{"name": "dpt-large", "wieghts": "random"}]}, "models[0].wieghts", "did you mean: weights"),
    ({"models": [{"name": "dpt-large", "weights": 5}]}, "models[0].weights", "'random' or a path"),
    ({"models": [{"weights": "random"}]}, "models[0].name", "model name"),
    ({"models": [{"name": "dpt-large", "runtime": "tensorrt"}]}, "models[0].runtime", "pytorch, onnxruntime, litert"),
    ({"models": [{"name": "dpt-large", "options": [1]}]}, "models[0].options", "mapping"),
    ({"models": [{"name": "m", "trust_remote_code": "yes"}]}, "models[0].trust_remote_code", "true or false"),
    ({"models": [{"name": "m", "label": 3}]}, "models[0].label", "display name"),
    ({"datasets": [{"name": "synthetic", "limit": 0}]}, "datasets[0].limit", "out of range"),
    ({"datasets": [{"name": "synthetic", "limit": "ten"}]}, "datasets[0].limit", "integer"),
    ({"datasets": [{"name": "synthetic", "root": 3}]}, "datasets[0].root", "path string"),
    ({"datasets": [{"name": "synthetic", "split": 1}]}, "datasets[0].split", "string"),
    ({"datasets": [{"name": "synthetic", "options": "x"}]}, "datasets[0].options", "mapping"),
    ({"datasets": [{"name": "synthetic", "shuffle": True}]}, "datasets[0].shuffle", "unknown key"),
    ({"devices": ["gpu"]}, "devices[0]", "cpu, cuda, cuda:N or mps"),
    ({"precisions": ["fp64"]}, "precisions[0]", "fp32, tf32, fp16, bf16"),
    ({"precisions": ["bf61"]}, "precisions[0]", "did you mean: bf16"),
    ({"amp": ["auto"]}, "amp[0]", "autocast, cast"),
    ({"batch_sizes": [0]}, "batch_sizes[0]", "out of range"),
    ({"batch_sizes": ["1"]}, "batch_sizes[0]", "integer"),
    ({"batch_sizes": [100000]}, "batch_sizes[0]", "allow_large"),
    ({"runtimes": ["tvm"]}, "runtimes[0]", "pytorch, onnxruntime, litert"),
    ({"variants": [{"fuse": True}]}, "variants[0].fuse", "unknown key"),
    ({"variants": [{"compile": "yes"}]}, "variants[0].compile", "true or false"),
    ({"variants": [{"attn_implementation": "flash"}]}, "variants[0].attn_implementation", "eager, sdpa"),
    ({"protocol": {"mode": "tiles"}}, "protocol.mode", "whole, slide, multiscale"),
    ({"protocol": {"upsample": "nearest"}}, "protocol.upsample", "bilinear, bicubic"),
    ({"protocol": {"mode": "slide"}}, "protocol.crop_size", "crop_size"),
    ({"protocol": {"mode": "slide", "crop_size": 0}}, "protocol.crop_size", "1..8192"),
    ({"protocol": {"scales": [0.0]}}, "protocol.scales", "0.1..4"),
    ({"protocol": {"flip": "yes"}}, "protocol.flip", "true or false"),
    ({"protocol": {"resize": [1, 2, 3]}}, "protocol.resize", "short side"),
    ({"protocol": {"mode": "whole", "tta": 1}}, "protocol.tta", "unknown key"),
    ({"protocol": {"mode": "slide", "crop_size": 512, "stride": 600}}, "protocol.stride",
     "[600, 600] is larger than crop_size [512, 512]"),
    ({"protocol": {"mode": "multiscale", "crop_size": [512, 256], "stride": [341, 300]}}, "protocol.stride",
     "[341, 300] is larger than crop_size [512, 256]"),
    ({"protocol": {"mode": "multiscale", "stride": 300}}, "protocol.stride", "needs crop_size"),
    ({"protocol": {"mode": "multiscale", "merge": "mean"}}, "protocol.merge", "softmax, pytorch-encoding, logits"),
    ({"protocol": {"mode": "multiscale", "merge": "sofmtax"}}, "protocol.merge", "did you mean: softmax"),
    ({"protocol": {"mode": "slide", "crop_size": 64, "merge": "softmax"}}, "protocol.merge", "multiscale only"),
    ({"protocol": {"merge": "softmax"}}, "protocol.merge", "mode multiscale only"),
    ({"protocol": {"mode": "multiscale", "base_size": 520}}, "protocol.base_size", "pytorch-encoding only"),
    ({"protocol": {"mode": "multiscale", "merge": "pytorch-encoding", "stride": 320, "crop_size": 480}},
     "protocol.stride", "int(crop_size * 2/3)"),
    ({"protocol": {"mode": "multiscale", "merge": "pytorch-encoding", "resize": 512}}, "protocol.resize",
     "base_size x scale"),
    ({"protocol": {"mode": "multiscale", "merge": "pytorch-encoding", "crop_size": [480, 320]}},
     "protocol.crop_size", "square crops"),
    ({"protocol": {"mode": "multiscale", "merge": "pytorch-encoding", "upsample": "bicubic"}},
     "protocol.upsample", "align_corners=True"),
    ({"protocol": {"mode": "multiscale", "merge": "pytorch-encoding", "base_size": 0}}, "protocol.base_size",
     "out of range"),
    ({"protocol": {"mode": "slide", "crop_size": 64, "resize": {"short": 512}}}, "protocol.resize",
     "{short: S, long: L}"),
    ({"measure": {"iters": 10**9}}, "measure.iters", "allow_large"),
    ({"measure": {"iters": 0}}, "measure.iters", "out of range"),
    ({"measure": {"warmup": -1}}, "measure.warmup", "out of range"),
    ({"measure": {"warmup": 1.5}}, "measure.warmup", "integer"),
    ({"measure": {"timeout_s": 0}}, "measure.timeout_s", "out of range"),
    ({"measure": {"min_time_s": "1s"}}, "measure.min_time_s", "number"),
    ({"measure": {"accuracy": "no"}}, "measure.accuracy", "true or false"),
    ({"measure": {"latency": 1}}, "measure.latency", "true or false"),
    ({"measure": {"on_bad_sample": "ignore"}}, "measure.on_bad_sample", "error, skip"),
    ({"measure": {"samples": 1000}}, "measure.samples", "out of range"),
    ({"measure": {"num_workers": -2}}, "measure.num_workers", "out of range"),
    ({"measure": {"repeat": 0}}, "measure.repeat", "out of range"),
    ({"measure": {"itres": 3}}, "measure.itres", "did you mean: iters"),
    ({"measure": {"stages": "all"}}, "measure.stages", "true or false"),
    ({"measure": {"flops": None}}, "measure.flops", "true or false"),
    ({"measure": {"warmup_cv": 5}}, "measure.warmup_cv", "out of range"),
    ({"measure": {"max_warmup": 0}}, "measure.max_warmup", "out of range"),
    ({"include": {"model": "x"}}, "include", "list of mappings"),
    ({"include": [{"modle": "x"}]}, "include[0].modle", "did you mean: model"),
    ({"exclude": [{}]}, "exclude[0]", "match every cell"),
    ({"seed": -1}, "seed", "out of range"),
    ({"description": 5}, "description", "string"),
]


@pytest.mark.parametrize("override,key,fragment", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_values_name_file_key_and_allowed(tmp_path, override, key, fragment):
    path = write(tmp_path, with_(**override))
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    msg = str(info.value)
    assert str(path) in msg
    assert f": {key}:" in msg
    assert fragment in msg


def test_large_values_allowed_with_explicit_override(tmp_path):
    s = load_suite(write(tmp_path, with_(measure={"iters": 10**6, "allow_large": True})))
    assert s.cells()[0].measure["iters"] == 10**6


def test_missing_models_key(tmp_path):
    with pytest.raises(ConfigError, match=r"models: missing"):
        load_suite(write(tmp_path, {"datasets": ["synthetic"]}))


def test_not_a_mapping_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_suite(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_suite(write(tmp_path, "models: [a\n"))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read suite file"):
        load_suite(tmp_path / "nope.yaml")


def test_python_tags_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    text = f"name: t\nmodels: !!python/object/apply:os.system ['touch {marker}']\ndatasets: [synthetic]\n"
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_suite(write(tmp_path, text))
    assert not marker.exists()


def test_shipped_suites_are_valid():
    for path in sorted((Path(__file__).resolve().parents[1] / "suites").glob("*.yaml")):
        assert load_suite(path).cells(), path


def test_extends_merges_measure_and_replaces_lists(tmp_path):
    write(tmp_path, with_(measure={"iters": 7, "warmup": 3}), "base.yaml")
    child = write(tmp_path, {"extends": "base.yaml", "name": "child", "precisions": ["fp32"],
                             "measure": {"iters": 9}}, "child.yaml")
    s = load_suite(child)
    assert s.name == "child"
    assert {c.precision for c in s.cells()} == {"fp32"}
    m = s.cells()[0].measure
    assert (m["iters"], m["warmup"]) == (9, 3)


def test_extends_cannot_leave_the_suite_folder(tmp_path):
    (tmp_path / "outside.yaml").write_text(yaml.safe_dump(BASE))
    sub = tmp_path / "suites"
    sub.mkdir()
    child = write(sub, {"extends": "../outside.yaml"}, "child.yaml")
    with pytest.raises(ConfigError, match="leaves the suite's folder"):
        load_suite(child)
    ok = write(sub, {"extends": str(tmp_path / "outside.yaml")}, "abs.yaml")  # absolute: the user's choice
    assert load_suite(ok).cells()


def test_extends_cycle_is_an_error(tmp_path):
    write(tmp_path, {"extends": "b.yaml"}, "a.yaml")
    write(tmp_path, {"extends": "a.yaml"}, "b.yaml")
    with pytest.raises(ConfigError, match="cycle"):
        load_suite(tmp_path / "a.yaml")


def test_protocol_list_is_an_axis(tmp_path):
    s = with_(protocol=[{"mode": "whole"}, {"mode": "multiscale", "scales": [0.5, 1.0], "flip": True}],
              include=[{"protocol": "multiscale", "precision": "fp32", "batch_size": 1}, {"protocol": "whole"}])
    cells = load_suite(write(tmp_path, s)).cells()
    modes = [c.protocol["mode"] for c in cells]
    assert modes.count("multiscale") == 2 and modes.count("whole") == 8
    assert all("multiscale" in c.cell_id for c in cells if c.protocol["mode"] == "multiscale")
    with pytest.raises(ConfigError, match=r"protocol\[1\].mode"):
        load_suite(write(tmp_path, with_(protocol=[{"mode": "whole"}, {"mode": "tiles"}])))


@pytest.mark.parametrize("change, key, text", [
    ({"models": ["dpt-larg"]}, "models[0].name", "unknown model 'dpt-larg' (did you mean: dpt-large"),
    ({"models": ["nope-litert"]}, "models[0].name", "unknown LiteRT model 'nope-litert'"),
    ({"datasets": ["ade21k"]}, "datasets[0].name", "unknown dataset 'ade21k' (did you mean: ade20k"),
    ({"datasets": [{"name": "synthetic", "options": {"image_size": [-5, 10]}}]}, "datasets[0].options",
     "image_size [-5, 10] must be [height, width]"),
    ({"datasets": [{"name": "synthetic", "options": {"num_classes": 0}}]}, "datasets[0].options",
     "num_classes 0 must be an integer in 1..1000"),
    ({"datasets": [{"name": "synthetic", "options": {"num_sample": 2}}]}, "datasets[0].options",
     "unknown option 'num_sample' (did you mean: num_samples"),
])
def test_names_and_dataset_options_are_checked_at_load(tmp_path, change, key, text):
    path = write(tmp_path, with_(**change))
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: {key}: ") and text in msg


def test_dry_run_fails_with_exit_2_on_a_misspelt_model(tmp_path, capsys):
    from harness.cli import main

    assert main(["run", str(write(tmp_path, with_(models=["dpt-larg"]))), "--dry-run"]) == 2
    assert "models[0].name: unknown model 'dpt-larg'" in capsys.readouterr().err


def test_hub_ids_and_paths_pass_the_name_check(tmp_path):
    cells = load_suite(write(tmp_path, with_(models=["someone/some-model", str(tmp_path / "dir"),
                                                     str(tmp_path / "m.tflite")]))).cells()
    assert {c.runtime for c in cells if c.model.endswith(".tflite")} == {"litert"}


def test_protocol_defaults_per_merge(tmp_path):
    def proto(p):
        return load_suite(write(tmp_path, with_(protocol=p))).data["protocols"][0]

    assert proto({"mode": "multiscale"}) == {"mode": "multiscale", "upsample": "bilinear", "merge": "softmax",
                                             "scales": [0.5, 0.75, 1.0, 1.25, 1.5, 1.75], "flip": True}
    assert proto({"mode": "multiscale", "merge": "pytorch-encoding"}) == {
        "mode": "multiscale", "upsample": "bilinear", "merge": "pytorch-encoding", "crop_size": [480, 480],
        "base_size": 520, "scales": [0.5, 0.75, 1.0, 1.25, 1.5, 1.75], "flip": True}
    assert proto({"mode": "slide", "crop_size": 512})["stride"] == [341, 341]
    assert proto({"mode": "slide", "crop_size": 512, "stride": 512})["stride"] == [512, 512]  # equal is fine
    assert proto({"mode": "multiscale", "crop_size": 512, "resize": {"short": 512, "long": 2048}})["stride"] == [341, 341]
    assert "merge" not in proto({"mode": "whole"}) and "merge" not in proto({"mode": "slide", "crop_size": 8})
