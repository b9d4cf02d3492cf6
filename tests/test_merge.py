"""Merging shard runs: 3 shards merged equal the unsharded run; conflicts and gaps are reported."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from harness.merge import MergeError, merge_runs
from harness.results import load_run, write_json_atomic
from harness.runner import run_suite

FAULTS = Path(__file__).resolve().parent / "faults"


@pytest.fixture
def faults(monkeypatch, fault_names):
    monkeypatch.setenv("SEGBENCH_TEST_FAULTS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAULTS), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture
def suite_path(tmp_path):
    data = {"name": "m", "models": [{"name": f"fault-ok{i}", "weights": "random"} for i in range(4)],
            "datasets": ["tiny"], "measure": {"warmup": 0, "iters": 1, "stages": False, "flops": False}}
    p = tmp_path / "suite.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _identity(run_dir):
    return {cid: (c.status, c.identity.model, c.compute.params) for cid, c in load_run(run_dir).cells.items()}


def test_three_shards_merge_to_the_unsharded_run(tmp_path, faults, suite_path):
    full = run_suite(suite_path, out_dir=tmp_path / "full", echo=False)
    shards = [run_suite(suite_path, out_dir=tmp_path / f"s{k}", shard=f"{k}/3", echo=False).run_dir
              for k in (1, 2, 3)]
    rep = merge_runs(shards, tmp_path / "merged")
    assert rep.cells == 4 and not rep.missing and not rep.conflicts
    assert _identity(tmp_path / "merged") == _identity(full.run_dir)
    merged = load_run(tmp_path / "merged")
    assert not merged.missing and len(merged.meta["merged_from"]) == 3


def test_missing_shard_is_reported(tmp_path, faults, suite_path):
    shards = [run_suite(suite_path, out_dir=tmp_path / f"s{k}", shard=f"{k}/3", echo=False).run_dir
              for k in (1, 2)]
    with pytest.raises(MergeError, match=r"1 cell\(s\) of the suite are in none"):
        merge_runs(shards, tmp_path / "merged")
    rep = merge_runs(shards, tmp_path / "merged2", allow_missing=True)
    assert len(rep.missing) == 1


def test_conflicting_duplicates_are_refused_unless_preferred(tmp_path, faults, suite_path):
    a = run_suite(suite_path, out_dir=tmp_path / "a", echo=False).run_dir
    b = run_suite(suite_path, out_dir=tmp_path / "b", echo=False).run_dir
    # identical measurements (timings aside) merge silently as duplicates
    rep = merge_runs([a, b], tmp_path / "ab")
    assert len(rep.duplicates) == 4 and not rep.conflicts
    # a changed accuracy-relevant field is a conflict
    victim = next((b / "cells").glob("*.json"))
    cell = load_run(b).cells[victim.stem]
    cell.compute.params = 999
    write_json_atomic(victim, cell.to_dict())
    with pytest.raises(MergeError, match="disagree"):
        merge_runs([a, b], tmp_path / "c1")
    merge_runs([a, b], tmp_path / "c2", prefer="last")
    assert load_run(tmp_path / "c2").cells[victim.stem].compute.params == 999
    merge_runs([a, b], tmp_path / "c3", prefer="first")
    assert load_run(tmp_path / "c3").cells[victim.stem].compute.params != 999


def test_different_suites_are_refused(tmp_path, faults, suite_path):
    a = run_suite(suite_path, out_dir=tmp_path / "a", echo=False).run_dir
    data = yaml.safe_load(suite_path.read_text())
    data["measure"]["iters"] = 2
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(data))
    b = run_suite(other, out_dir=tmp_path / "b", echo=False).run_dir
    with pytest.raises(MergeError, match="different suite"):
        merge_runs([a, b], tmp_path / "x")


def test_output_must_be_new(tmp_path, faults, suite_path):
    a = run_suite(suite_path, out_dir=tmp_path / "a", echo=False).run_dir
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "f").write_text("x")
    with pytest.raises(MergeError, match="not empty"):
        merge_runs([a], tmp_path / "busy")
