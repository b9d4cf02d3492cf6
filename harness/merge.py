"""Merge run directories (shards of one suite, or reruns on several machines) into one run.

Checks that the inputs ran the same suite in comparable environments, that no cell is
missing, and that a cell present in several inputs holds the same result (a conflicting
duplicate is reported and refused unless ``prefer`` says which input wins).
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from harness.cell_result import CellResult
from harness.errors import SegbenchError
from harness.measure.env import comparable_keys
from harness.results import SCHEMA_VERSION, Run, load_run, write_json_atomic
from harness.suite import Suite

VOLATILE_SECTIONS = ("environment", "timing", "latency", "memory")  # differ between two runs of one cell
VOLATILE_COMPUTE = ("achieved_tflops", "peak_fraction")


class MergeError(SegbenchError):
    """Runs cannot be merged: different suites, incomparable environments or conflicting cells."""


@dataclass
class MergeReport:
    out_dir: Path
    cells: int = 0
    duplicates: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _stable_part(cell: CellResult) -> str:
    """The cell's content without what depends on timing (sections and compute fields above), as JSON."""
    d = {k: v for k, v in cell.to_dict().items() if k not in VOLATILE_SECTIONS}
    d["compute"] = {k: v for k, v in d["compute"].items() if k not in VOLATILE_COMPUTE}
    return json.dumps(d, sort_keys=True, default=str)


def _same_measurement(a: CellResult, b: CellResult) -> bool:
    """Two results of one cell agree when everything but timing-dependent fields is equal."""
    return _stable_part(a) == _stable_part(b)


def _planned_cells(run: Run) -> list[str]:
    meta = run.meta
    try:
        suite = Suite(path=Path(meta.get("suite_path", "suite.yaml")), data=meta["suite"],
                      sha256=meta.get("suite_sha256", ""))
        return [c.cell_id for c in suite.cells()]
    except Exception:
        return list(meta.get("cells", []))


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _check_comparable(runs: list[Run], force: bool) -> None:
    """MergeError unless every run ran the first one's suite in a comparable environment (or ``force``)."""
    first = runs[0]
    problems = []
    for r in runs[1:]:
        if r.meta.get("suite") != first.meta.get("suite"):
            problems.append(f"{r.path} ran a different suite than {first.path}")
        a, b = comparable_keys(first.meta.get("env", {})), comparable_keys(r.meta.get("env", {}))
        for k in a:
            if a[k] != b[k]:
                problems.append(f"{r.path}: environment {k} is {b[k]!r}, {first.path} has {a[k]!r}")
    if problems and not force:
        raise MergeError("cannot merge: " + "; ".join(problems) + " (pass --force to merge anyway)")


def _collect(runs: list[Run], prefer: str | None, report: MergeReport) -> dict[str, tuple[CellResult, Run]]:
    """Each cell once, with the run it comes from; duplicates noted, conflicting ones refused unless ``prefer``."""
    merged: dict[str, tuple[CellResult, Run]] = {}
    for r in runs:
        for cid, cell in r.cells.items():
            if cid not in merged:
                merged[cid] = (cell, r)
                continue
            report.duplicates.append(cid)
            if _same_measurement(merged[cid][0], cell):
                continue  # an identical duplicate: keep the first
            if prefer is None:
                report.conflicts.append(f"{cid}: {merged[cid][1].path} and {r.path} disagree")
            elif prefer == "last":
                merged[cid] = (cell, r)
    if report.conflicts:
        raise MergeError("conflicting duplicate cells (pass --prefer first|last to choose): "
                         + "; ".join(report.conflicts))
    return merged


def _copy_samples(cell: CellResult, src: Run, out: Path) -> None:
    """The sample images a cell names, copied from its run when they stay inside both directories."""
    for sample in cell.samples:
        for key in ("image", "label", "pred"):
            rel = sample.get(key)
            if not rel:
                continue
            s = src.path / rel
            if s.is_file() and not s.is_symlink() and _inside(s, src.path) and _inside(out / rel, out):
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(s, out / rel)


def _merged_meta(runs: list[Run], out: Path, planned: list[str], missing: list[str], merged: dict) -> dict:
    """The merged run's run.json: the first run's, with the inputs listed and the cells planned."""
    meta = dict(runs[0].meta)
    meta.update({
        "schema_version": SCHEMA_VERSION,
        "run_id": out.name,
        "cells": planned if not missing else [c for c in planned if c in merged],
        "shard": None,
        "merged_from": [{"run_id": r.meta.get("run_id"), "path": str(r.path), "shard": r.meta.get("shard"),
                         "env": r.meta.get("env")} for r in runs],
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    })
    specs = {}
    for r in runs:
        specs.update(r.meta.get("cell_specs") or {})
    meta["cell_specs"] = specs
    return meta


def merge_runs(run_dirs: list[str | Path], out_dir: str | Path, prefer: str | None = None,
               allow_missing: bool = False, force: bool = False) -> MergeReport:
    """Merge ``run_dirs`` into a new run at ``out_dir``.

    prefer: None (conflicting duplicates are an error), "first" or "last" (which input wins).
    allow_missing: write the merged run even if some of the suite's cells are absent.
    force: merge even if suites or environments differ.
    """
    if len(run_dirs) < 1:
        raise MergeError("merge needs at least one run directory")
    runs = [load_run(d) for d in run_dirs]
    _check_comparable(runs, force)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise MergeError(f"{out}: output directory exists and is not empty")
    report = MergeReport(out_dir=out)
    merged = _collect(runs, prefer, report)
    planned = _planned_cells(runs[0])
    report.missing = [c for c in planned if c not in merged]
    if report.missing and not allow_missing:
        raise MergeError(f"{len(report.missing)} cell(s) of the suite are in none of the inputs: "
                         + ", ".join(report.missing[:10]) + (" ..." if len(report.missing) > 10 else "")
                         + " (pass --allow-missing to merge what there is)")
    out.mkdir(parents=True, exist_ok=True)
    for cid, (cell, src) in merged.items():
        write_json_atomic(out / "cells" / f"{cid}.json", cell.to_dict())
        _copy_samples(cell, src, out)
    write_json_atomic(out / "run.json", _merged_meta(runs, out, planned, report.missing, merged))
    report.cells = len(merged)
    return report
