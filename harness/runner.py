"""Run a suite: expand its cells, check weights and data, create (or resume) the run directory,
and hand the cells to a launcher (:mod:`harness.launchers`): one fresh process per cell, or
every rank of a torchrun group. Results are written as each cell ends; runs resume.

A cell's process may raise, run out of memory, exceed its timeout or die (segfault): the
launcher records what happened in that cell's result and goes on with the next cell.
"""

from __future__ import annotations

import collections
import datetime as _dt
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import preflight
from harness.errors import ConfigError
from harness.launchers import ProcessLauncher, TorchrunLauncher, run_cell_process
from harness.measure.env import comparable_keys, fingerprint
from harness.results import SCHEMA_VERSION, ResultsError, cell_path, read_json, write_json_atomic
from harness.suite import Cell, Suite, load_suite

__all__ = ["RunSummary", "run_suite", "dry_run", "select_cells", "parse_shard", "run_cell_process"]

FAILED = ("error", "oom", "timeout")


@dataclass
class RunSummary:
    """What a finished (or interrupted) run did: where, and each cell's status."""

    run_dir: Path
    statuses: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def failed(self) -> list[str]:
        return [c for c, s in self.statuses.items() if s in FAILED]

    @property
    def exit_code(self) -> int:
        """0 all cells ok or skipped; 1 some cell failed; 130 interrupted."""
        if self.interrupted:
            return 130
        return 1 if self.failed else 0


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'k/n' (k in 1..n, as people count) -> (k-1, n)."""
    if text is None:
        return None
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. 2/4") from None
    if not 1 <= k <= n:
        raise ConfigError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. 2/4")
    return k - 1, n


def select_cells(suite: Suite, shard: tuple[int, int] | None = None) -> list[Cell]:
    """The suite's cells, or the deterministic share ``shard = (k, n)`` of them (every n-th from k)."""
    cells = suite.cells()
    if shard is None:
        return cells
    k, n = shard
    return [c for i, c in enumerate(cells) if i % n == k]


def _new_run_dir(out_dir: Path, name: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = out_dir / f"{name}-{stamp}"
    i = 1
    while run_dir.exists():
        i += 1
        run_dir = out_dir / f"{name}-{stamp}-{i}"
    return run_dir


def _run_meta(suite: Suite, run_dir: Path, cells: list[Cell], shard, argv: list[str]) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_dir.name,
        "suite": suite.data,
        "suite_path": str(suite.path),
        "suite_sha256": suite.sha256,
        "command": argv,
        "env": fingerprint(),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "shard": list(shard) if shard else None,
        "cells": [c.cell_id for c in cells],
        "cell_specs": {c.cell_id: c.to_dict() for c in cells},
    }


def _check_resumable(meta: dict, suite: Suite, force: bool) -> None:
    problems = []
    if meta.get("suite") != suite.data:
        problems.append(f"the suite changed since the run started ({meta.get('suite_path')})")
    then, now = comparable_keys(meta.get("env", {})), comparable_keys(fingerprint())
    for k in then:
        if then[k] != now[k]:
            problems.append(f"environment {k} was {then[k]!r}, is now {now[k]!r}")
    if problems and not force:
        raise ConfigError("cannot resume " + meta.get("run_id", "?") + ": " + "; ".join(problems)
                          + ". Results would not be comparable; pass --force to resume anyway.")


def dry_run(suite_path: str | Path, shard: str | None = None) -> list[Cell]:
    """The cells a run would measure, without running anything."""
    return select_cells(load_suite(suite_path), parse_shard(shard))


def _start_distributed(suite: Suite, out_dir: Path, shard_t, argv: list[str]) -> tuple[list[Cell], Path]:
    """Under torchrun: the cells, checked; rank 0 creates the run directory and every rank learns it."""
    from harness import distributed

    info = distributed.current()
    cells = select_cells(suite, shard_t)
    blocked = preflight.check(cells)
    if blocked:
        raise ConfigError(preflight.summary(blocked))
    run_dir = None
    if info.is_main:
        run_dir = _new_run_dir(out_dir, suite.name)
        meta = _run_meta(suite, run_dir, cells, shard_t, argv)
        meta["world_size"] = info.world_size
        write_json_atomic(run_dir / "run.json", meta)
    return cells, Path(distributed.broadcast_object(str(run_dir)))


def _open_run(suite: Suite, out_dir: Path, resume, force: bool, shard_t, argv: list[str]) -> tuple[list[Cell], Path]:
    """The cells and run directory: a new one with its run.json, or ``resume``'s (checked comparable)."""
    if resume is not None:
        run_dir = Path(resume)
        meta = read_json(run_dir / "run.json")
        _check_resumable(meta, suite, force)
        specs = meta.get("cell_specs") or {}
        return [Cell.from_dict(specs[c]) for c in meta["cells"] if c in specs], run_dir
    cells = select_cells(suite, shard_t)
    run_dir = _new_run_dir(out_dir, suite.name)
    write_json_atomic(run_dir / "run.json", _run_meta(suite, run_dir, cells, shard_t, argv))
    return cells, run_dir


def _finished(cells: list[Cell], run_dir: Path, blocked: dict[str, list[str]], echo: bool) -> dict[str, str]:
    """Statuses of the cells that need no run: results already there (resume), and cells whose weights
    or data are missing (recorded as skipped). A damaged or foreign result file is measured again."""
    from harness.cell import skeleton

    statuses: dict[str, str] = {}
    for c in cells:
        p = cell_path(run_dir, c.cell_id)
        if c.cell_id in blocked and not p.exists():
            result = skeleton(c)
            result.status, result.error = "skipped", "not available: " + "; ".join(blocked[c.cell_id])
            write_json_atomic(p, result.to_dict())
            statuses[c.cell_id] = "skipped"
        elif p.exists():
            try:
                statuses[c.cell_id] = read_json(p)["status"]
            except (ResultsError, KeyError) as e:
                if echo:
                    print(f"segbench: {p.name}: {e}; measuring this cell again", file=sys.stderr)
    return statuses


def run_suite(path: str | Path, out_dir: str | Path = "results", resume: str | Path | None = None,
              force: bool = False, shard: str | None = None, argv: list[str] | None = None,
              echo: bool = True, available_only: bool = False) -> RunSummary:
    """Run every cell of the suite at ``path`` (or finish run ``resume``); returns a :class:`RunSummary`.

    Launched under torchrun (WORLD_SIZE > 1), accuracy cells split their data across ranks
    (:class:`harness.launchers.TorchrunLauncher`); otherwise each cell runs in a fresh process
    (:class:`harness.launchers.ProcessLauncher`). Missing weights or data stop the run before it
    starts, with one message listing all of them; with ``available_only`` the cells that cannot
    run are recorded as skipped instead.
    """
    from harness import distributed

    suite = load_suite(path)
    argv = argv or sys.argv
    if distributed.env_info().active:
        if resume is not None:
            raise ConfigError("--resume is not supported under torchrun; resume with a single process")
        distributed.init()
        try:
            cells, run_dir = _start_distributed(suite, Path(out_dir), parse_shard(shard), argv)
            summary = RunSummary(run_dir=run_dir)
            TorchrunLauncher().launch(cells, run_dir, summary.statuses, echo)
            return summary
        finally:
            distributed.shutdown()
    cells, run_dir = _open_run(suite, Path(out_dir), resume, force, parse_shard(shard), argv)
    blocked = preflight.check(cells)
    if blocked and not available_only:
        if resume is None:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise ConfigError(preflight.summary(blocked))
    summary = RunSummary(run_dir=run_dir, statuses=_finished(cells, run_dir, blocked, echo))
    if echo:
        print(f"segbench: {len(cells)} cells in {run_dir} ({len(summary.statuses)} already done)", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        ProcessLauncher().launch(cells, run_dir, summary.statuses, echo)
    except KeyboardInterrupt:
        summary.interrupted = True
    if echo:
        counts = collections.Counter(summary.statuses.values())
        print(f"segbench: {dict(counts)} in {time.perf_counter() - t0:.0f} s -> {run_dir}", file=sys.stderr)
    return summary
