"""Run a suite: one fresh process per cell, results written as each cell ends, resumable.

A cell's process may raise, run out of memory, exceed its timeout or die (segfault): the
parent records what happened in that cell's result and goes on with the next cell.
"""

from __future__ import annotations

import collections
import datetime as _dt
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import preflight
from harness.cell import base_result
from harness.errors import ConfigError
from harness.measure.env import comparable_keys, fingerprint
from harness.results import SCHEMA_VERSION, ResultsError, cell_path, read_json, write_json_atomic
from harness.suite import Cell, Suite, load_suite

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
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


class _Tee(threading.Thread):
    """Copy a child's stderr to ours while keeping its last lines for error messages."""

    def __init__(self, stream, keep: int = 40):
        super().__init__(daemon=True)
        self.stream = stream
        self.tail: collections.deque[str] = collections.deque(maxlen=keep)

    def run(self) -> None:
        buf = b""
        for chunk in iter(lambda: self.stream.read1(4096), b""):
            try:
                sys.stderr.buffer.write(chunk)
                sys.stderr.flush()
            except (AttributeError, ValueError):
                pass
            buf = (buf + chunk)[-16384:]
        text = buf.decode("utf-8", "replace").replace("\r", "\n")
        self.tail.extend(line for line in text.splitlines() if line.strip())


def _child_env() -> dict:
    env = dict(os.environ)
    env["SEGBENCH_PARENT_PID"] = str(os.getpid())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    return env


def run_cell_repeated(cell: Cell, run_dir: Path) -> str:
    """Run the cell ``measure.repeat`` times, each in a fresh process, and record the run-to-run spread.

    The stored result is the last repeat's, plus ``repeats`` (each repeat's latency p50/mean in
    ms) and ``run_to_run`` (mean, std and CV of the repeats' mean latencies).
    """
    n = int(cell.measure.get("repeat", 1))
    status = run_cell_process(cell, run_dir)
    if n <= 1 or status != "ok":
        return status
    out = cell_path(run_dir, cell.cell_id)
    repeats = []
    for k in range(n):
        if k > 0:
            status = run_cell_process(cell, run_dir)
            if status != "ok":
                return status
        lat = json.loads(out.read_text()).get("latency_ms") or {}
        repeats.append({"p50": lat.get("p50"), "mean": lat.get("mean"), "n": lat.get("n")})
    result = json.loads(out.read_text())
    means = [r["mean"] for r in repeats if r["mean"] is not None]
    mu = sum(means) / len(means)
    sd = (sum((m - mu) ** 2 for m in means) / (len(means) - 1)) ** 0.5 if len(means) > 1 else 0.0
    result["repeats"] = repeats
    result["run_to_run"] = {"mean_ms": mu, "std_ms": sd, "cv": sd / mu if mu else None, "n": len(means)}
    write_json_atomic(out, result)
    return status


def _sweep_key(cell: Cell) -> str:
    ident = cell.identity()
    ident.pop("batch_size")
    return json.dumps(ident, sort_keys=True)


def run_cell_process(cell: Cell, run_dir: Path, python: str = sys.executable) -> str:
    """Run one cell in a fresh process; make sure a result file exists afterwards. Returns its status."""
    timeout = float(cell.measure["timeout_s"])
    out = cell_path(run_dir, cell.cell_id)
    proc = subprocess.Popen([python, "-m", "harness.worker", str(run_dir)], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_child_env(), start_new_session=True)
    tee = _Tee(proc.stderr)
    tee.start()
    try:
        proc.stdin.write(json.dumps(cell.to_dict()).encode())
        proc.stdin.close()
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        tee.join(5)
        result = base_result(cell)
        result.update(status="timeout", error=f"cell exceeded its timeout of {timeout:g} s and was killed")
        write_json_atomic(out, result)
        return "timeout"
    except BaseException:
        _kill_group(proc)
        raise
    tee.join(5)
    if out.exists():
        try:
            return json.loads(out.read_text())["status"]
        except (OSError, ValueError, KeyError):
            pass
    result = base_result(cell)
    if rc < 0:
        name = signal.Signals(-rc).name if -rc in signal.valid_signals() else str(-rc)
        msg = f"cell process died with signal {name}"
    else:
        msg = f"cell process exited with code {rc} without writing a result"
    tail = "\n".join(list(tee.tail)[-15:])
    is_oom = "OutOfMemoryError" in tail or "CUDA out of memory" in tail
    result.update(status="oom" if is_oom else "error", error=msg + (f"\n{tail}" if tail else ""))
    write_json_atomic(out, result)
    return result["status"]


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def dry_run(suite_path: str | Path, shard: str | None = None) -> list[Cell]:
    """The cells a run would measure, without running anything."""
    return select_cells(load_suite(suite_path), parse_shard(shard))


def run_suite_distributed(suite: Suite, out_dir: Path, shard_t, argv: list[str], echo: bool) -> RunSummary:
    """Under torchrun: every rank runs every cell in-process; accuracy data is split across ranks.

    Rank 0 creates the run directory and writes run.json and each cell's result.
    """
    from harness import distributed
    from harness.cell import run_cell

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
    run_dir = Path(distributed.broadcast_object(str(run_dir)))
    summary = RunSummary(run_dir=run_dir)
    for i, c in enumerate(cells):
        if echo and info.is_main:
            print(f"segbench: [{i + 1}/{len(cells)}] {c.cell_id} on {info.world_size} ranks", file=sys.stderr)
        result = run_cell(c, run_dir)
        result["world_size"] = info.world_size
        if info.is_main:
            write_json_atomic(cell_path(run_dir, c.cell_id), result)
        summary.statuses[c.cell_id] = result["status"]
        distributed.barrier()
    return summary


def run_suite(path: str | Path, out_dir: str | Path = "results", resume: str | Path | None = None,
              force: bool = False, shard: str | None = None, argv: list[str] | None = None,
              echo: bool = True, available_only: bool = False) -> RunSummary:
    """Run every cell of the suite at ``path`` (or finish run ``resume``); returns a :class:`RunSummary`.

    Launched under torchrun (WORLD_SIZE > 1), accuracy cells split their data across ranks
    (see :mod:`harness.distributed`); otherwise each cell runs in a fresh process.
    Missing weights or data stop the run before it starts, with one message listing all of
    them; with ``available_only`` the cells that cannot run are recorded as skipped instead.
    """
    from tqdm import tqdm

    from harness import distributed

    suite = load_suite(path)
    if distributed.env_info().active:
        if resume is not None:
            raise ConfigError("--resume is not supported under torchrun; resume with a single process")
        distributed.init()
        try:
            return run_suite_distributed(suite, Path(out_dir), parse_shard(shard), argv or sys.argv, echo)
        finally:
            distributed.shutdown()
    shard_t = parse_shard(shard)
    if resume is not None:
        run_dir = Path(resume)
        meta = read_json(run_dir / "run.json")
        _check_resumable(meta, suite, force)
        specs = meta.get("cell_specs") or {}
        cells = [Cell.from_dict(specs[c]) for c in meta["cells"] if c in specs]
    else:
        cells = select_cells(suite, shard_t)
        run_dir = _new_run_dir(Path(out_dir), suite.name)
        write_json_atomic(run_dir / "run.json", _run_meta(suite, run_dir, cells, shard_t, argv or sys.argv))
    summary = RunSummary(run_dir=run_dir)
    blocked = preflight.check(cells)
    if blocked and not available_only:
        if resume is None:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise ConfigError(preflight.summary(blocked))
    todo = []
    for c in cells:
        if c.cell_id in blocked and not cell_path(run_dir, c.cell_id).exists():
            result = base_result(c)
            result.update(status="skipped", error="not available: " + "; ".join(blocked[c.cell_id]))
            write_json_atomic(cell_path(run_dir, c.cell_id), result)
            summary.statuses[c.cell_id] = "skipped"
            continue
        p = cell_path(run_dir, c.cell_id)
        if p.exists():
            try:
                summary.statuses[c.cell_id] = read_json(p)["status"]
                continue
            except (ResultsError, KeyError) as e:  # damaged or foreign: measure again
                if echo:
                    print(f"segbench: {p.name}: {e}; measuring this cell again", file=sys.stderr)
        todo.append(c)
    if echo:
        print(f"segbench: {len(cells)} cells in {run_dir} ({len(cells) - len(todo)} already done)",
              file=sys.stderr)
    t0 = time.perf_counter()
    oom_at: dict[str, int] = {}  # smallest batch size that ran out of memory, per sweep
    for c in cells:
        if summary.statuses.get(c.cell_id) == "oom":
            key = _sweep_key(c)
            oom_at[key] = min(oom_at.get(key, c.batch_size), c.batch_size)
    try:
        with tqdm(todo, desc="cells", unit="cell", file=sys.stderr, disable=not echo) as bar:
            for c in bar:
                bar.set_postfix_str(c.cell_id.split("__")[0] + " " + c.precision)
                key = _sweep_key(c)
                if key in oom_at and c.batch_size > oom_at[key]:
                    result = base_result(c)
                    result.update(status="skipped", error=f"batch size {oom_at[key]} already ran out of "
                                                          f"memory; larger batch sizes are not tried")
                    write_json_atomic(cell_path(run_dir, c.cell_id), result)
                    summary.statuses[c.cell_id] = "skipped"
                    continue
                summary.statuses[c.cell_id] = run_cell_repeated(c, run_dir)
                if summary.statuses[c.cell_id] == "oom":
                    oom_at[key] = min(oom_at.get(key, c.batch_size), c.batch_size)
    except KeyboardInterrupt:
        summary.interrupted = True
    if echo:
        counts = collections.Counter(summary.statuses.values())
        print(f"segbench: {dict(counts)} in {time.perf_counter() - t0:.0f} s -> {run_dir}", file=sys.stderr)
    return summary
