"""Results store: atomic writes, strict JSON, schema version checks, loading into pandas."""

from __future__ import annotations

import json
import math

import pytest

from harness.results import (
    SCHEMA_VERSION,
    ResultsError,
    cell_path,
    load_run,
    read_json,
    to_dataframe,
    write_json_atomic,
)


def _cell(cid: str, **kw) -> dict:
    """A cell in schema 1's flat layout (read through the migration)."""
    d = {"schema_version": 1, "cell_id": cid, "status": "ok", "model": "m", "family": "cnn",
         "weights": {"source": "random"}, "dataset": "synthetic", "device": "cpu", "precision": "fp32",
         "batch_size": 1, "metrics": None, "latency_ms": {"p50": 1.0, "p90": 2.0, "mean": 1.5},
         "throughput_ips": 666.0, "memory_mib": {"host_peak_rss": 100.0}, "params": 10, "error": None}
    d.update(kw)
    return d


def test_round_trip_and_nan_becomes_null(tmp_path):
    p = tmp_path / "a" / "x.json"
    write_json_atomic(p, {"schema_version": SCHEMA_VERSION, "v": float("nan"), "w": [1.0, math.inf]})
    text = p.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert read_json(p) == {"schema_version": SCHEMA_VERSION, "v": None, "w": [1.0, None]}
    assert [f.name for f in p.parent.iterdir()] == ["x.json"]  # no temp file left


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    p = tmp_path / "x.json"
    write_json_atomic(p, {"schema_version": SCHEMA_VERSION, "ok": 1})
    with pytest.raises(TypeError):
        write_json_atomic(p, {"schema_version": SCHEMA_VERSION, "bad": object()})
    assert read_json(p)["ok"] == 1
    assert [f.name for f in tmp_path.iterdir()] == ["x.json"]


def test_schema_version_mismatch_names_both_versions(tmp_path):
    p = tmp_path / "old.json"
    p.write_text(json.dumps({"schema_version": 0}))
    with pytest.raises(ResultsError, match=r"schema_version 0 .* schema_version 1"):
        read_json(p)


@pytest.mark.parametrize("text,fragment", [("{", "not valid JSON"), ("[1, 2]", "JSON object"),
                                            ("\xff\xfe", "not valid JSON")])
def test_bad_files_are_refused(tmp_path, text, fragment):
    p = tmp_path / "bad.json"
    p.write_bytes(text.encode("latin-1"))
    with pytest.raises(ResultsError, match=fragment):
        read_json(p)


def test_huge_file_is_refused(tmp_path, monkeypatch):
    import harness.results as r

    monkeypatch.setattr(r, "MAX_RESULT_BYTES", 100)
    p = tmp_path / "big.json"
    p.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "x": "y" * 200}))
    with pytest.raises(ResultsError, match="larger than"):
        read_json(p)


def test_load_run_and_dataframe(tmp_path):
    write_json_atomic(tmp_path / "run.json", {"schema_version": SCHEMA_VERSION, "run_id": "r1",
                                              "cells": ["a", "b", "c"]})
    write_json_atomic(cell_path(tmp_path, "a"), _cell("a"))
    write_json_atomic(cell_path(tmp_path, "b"), _cell("b", status="oom", error="OutOfMemoryError: x",
                                                      latency_ms=None))
    (tmp_path / "cells" / ".c.json.123.tmp").write_text("{half")  # an interrupted write
    run = load_run(tmp_path)
    assert set(run.cells) == {"a", "b"} and run.missing == ["c"]
    df = to_dataframe(run)
    assert list(df["cell_id"]) == ["a", "b"]
    assert df.loc[0, "latency_p50_ms"] == 1.0 and df.loc[1, "status"] == "oom"
    assert df.loc[0, "weights"] == "random"


def test_not_a_run_dir(tmp_path):
    with pytest.raises(ResultsError, match="no run.json"):
        load_run(tmp_path)
