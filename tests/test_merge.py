"""Merging shard runs: 3 shards merged equal the unsharded run; conflicts and gaps are reported."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from harness.merge import MergeError, merge_runs
from harness.results import load_run, write_json_atomic
from harness.runner import run_suite

FAULTS = Path(__file__).resolve().parent / "faults"


def _suite(path: Path, iters: int = 1) -> Path:
    data = {"name": "m", "models": [{"name": f"fault-ok{i}", "weights": "random"} for i in range(4)],
            "datasets": ["tiny"], "measure": {"warmup": 0, "iters": iters, "stages": False, "flops": False}}
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Measured once for the module (each cell is a process): the 4-cell suite run whole twice, its
    three shards, and one shard of the same suite with another setting. Tests copy what they change."""
    tmp = tmp_path_factory.mktemp("merge")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEGBENCH_TEST_FAULTS", "1")
        mp.setenv("PYTHONPATH", os.pathsep.join([str(FAULTS), os.environ.get("PYTHONPATH", "")]))
        mp.syspath_prepend(str(FAULTS))
        import fault_names as names

        names.accept(mp.setattr)
        suite = _suite(tmp / "suite.yaml")
        out = {"full": run_suite(suite, out_dir=tmp / "full", echo=False).run_dir,
               "again": run_suite(suite, out_dir=tmp / "again", echo=False).run_dir,
               "other": run_suite(_suite(tmp / "other.yaml", iters=2), out_dir=tmp / "other", shard="1/4",
                                  echo=False).run_dir}
        for k in (1, 2, 3):
            out[f"s{k}"] = run_suite(suite, out_dir=tmp / f"s{k}", shard=f"{k}/3", echo=False).run_dir
    return out


def _identity(run_dir):
    return {cid: (c.status, c.identity.model, c.compute.params) for cid, c in load_run(run_dir).cells.items()}


def test_three_shards_merge_to_the_unsharded_run(tmp_path, runs):
    rep = merge_runs([runs["s1"], runs["s2"], runs["s3"]], tmp_path / "merged")
    assert rep.cells == 4 and not rep.missing and not rep.conflicts
    assert _identity(tmp_path / "merged") == _identity(runs["full"])
    merged = load_run(tmp_path / "merged")
    assert not merged.missing and len(merged.meta["merged_from"]) == 3


def test_missing_shard_is_reported(tmp_path, runs):
    shards = [runs["s1"], runs["s2"]]
    with pytest.raises(MergeError, match=r"1 cell\(s\) of the suite are in none"):
        merge_runs(shards, tmp_path / "merged")
    rep = merge_runs(shards, tmp_path / "merged2", allow_missing=True)
    assert len(rep.missing) == 1


def test_conflicting_duplicates_are_refused_unless_preferred(tmp_path, runs):
    a = runs["full"]
    b = Path(shutil.copytree(runs["again"], tmp_path / "b"))
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


def test_different_suites_are_refused(tmp_path, runs):
    with pytest.raises(MergeError, match="different suite"):
        merge_runs([runs["full"], runs["other"]], tmp_path / "x")


def test_output_must_be_new(tmp_path, runs):
    a = runs["full"]
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "f").write_text("x")
    with pytest.raises(MergeError, match="not empty"):
        merge_runs([a], tmp_path / "busy")
