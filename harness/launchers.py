"""Launchers: how the cells of a run are executed. Two implement one interface,
``launch(cells, run_dir, statuses, echo)``:

- :class:`ProcessLauncher`: each cell in a fresh process (``python -m harness.worker RUN_DIR``),
  so one cell's peak memory, leak or crash does not touch another's numbers; timeouts, crashes
  and out-of-memory are recorded in the cell's result; batch sweeps stop at the first OOM;
  ``measure.repeat`` repeats a cell in fresh processes and records the run-to-run spread.
- :class:`TorchrunLauncher`: under torchrun every rank runs every cell in its own process; the
  accuracy data is split across ranks (:class:`TorchrunPlacement`) and rank 0 writes the results.

A cell sees where it runs through a :class:`Placement`: its rank, and how the stages combine
values over the processes measuring the cell (sum, gather, failure flags).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from harness.cell import skeleton
from harness.results import cell_path, write_json_atomic
from harness.suite import Cell

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


class Placement:
    """One process measures the whole cell (the default): every combination is the identity."""

    rank = 0
    world_size = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self) -> tuple[int, int] | None:
        """This process's share of the dataset as (k, n), or None for all of it."""
        return None

    def sum(self, tensor):
        return tensor

    def gather(self, obj) -> list:
        return [obj]

    def failed_elsewhere(self, failed_here: bool) -> bool:
        """Whether another process failed (after telling the others whether this one did)."""
        return False

    def concat(self, items: list) -> list:
        return [x for part in self.gather(items) for x in part]

    def total(self, n: int) -> int:
        return sum(self.gather(n))


class TorchrunPlacement(Placement):
    """A rank of a torchrun group: rank r evaluates samples r, r+N, ...; sums are all-reduced."""

    def __init__(self):
        from harness import distributed

        self._dist = distributed
        info = distributed.current()
        self.rank, self.world_size = info.rank, info.world_size

    def shard(self) -> tuple[int, int] | None:
        return (self.rank, self.world_size) if self.world_size > 1 else None

    def sum(self, tensor):
        return self._dist.all_reduce_sum(tensor)

    def gather(self, obj) -> list:
        return self._dist.gather_objects(obj)

    def failed_elsewhere(self, failed_here: bool) -> bool:
        import torch

        flags = self.sum(torch.tensor([1 if failed_here else 0], dtype=torch.int64))
        return not failed_here and int(flags.item()) > 0


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


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _write_failure(cell: Cell, run_dir: Path, status: str, error: str) -> str:
    result = skeleton(cell)
    result.status, result.error = status, error
    write_json_atomic(cell_path(run_dir, cell.cell_id), result.to_dict())
    return status


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
        return _write_failure(cell, run_dir, "timeout", f"cell exceeded its timeout of {timeout:g} s and was killed")
    except BaseException:
        _kill_group(proc)
        raise
    tee.join(5)
    if out.exists():
        try:
            return json.loads(out.read_text())["status"]
        except (OSError, ValueError, KeyError):
            pass
    if rc < 0:
        name = signal.Signals(-rc).name if -rc in signal.valid_signals() else str(-rc)
        msg = f"cell process died with signal {name}"
    else:
        msg = f"cell process exited with code {rc} without writing a result"
    tail = "\n".join(list(tee.tail)[-15:])
    is_oom = "OutOfMemoryError" in tail or "CUDA out of memory" in tail
    return _write_failure(cell, run_dir, "oom" if is_oom else "error", msg + (f"\n{tail}" if tail else ""))


def run_cell_repeated(cell: Cell, run_dir: Path) -> str:
    """Run the cell ``measure.repeat`` times, each in a fresh process, and record the run-to-run spread.

    The stored result is the last repeat's, plus ``latency.repeats`` (each repeat's latency p50/mean
    in ms) and ``latency.run_to_run`` (mean, std and CV of the repeats' mean latencies).
    """
    from harness.results import load_cell_result

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
        forward = load_cell_result(out).latency.forward_ms or {}
        repeats.append({"p50": forward.get("p50"), "mean": forward.get("mean"), "n": forward.get("n")})
    result = load_cell_result(out)
    means = [r["mean"] for r in repeats if r["mean"] is not None]
    mu = sum(means) / len(means)
    sd = (sum((m - mu) ** 2 for m in means) / (len(means) - 1)) ** 0.5 if len(means) > 1 else 0.0
    result.latency.repeats = repeats
    result.latency.run_to_run = {"mean_ms": mu, "std_ms": sd, "cv": sd / mu if mu else None, "n": len(means)}
    write_json_atomic(out, result.to_dict())
    return status


def sweep_key(cell: Cell) -> str:
    """A batch-size sweep: the cell's identity without its batch size."""
    ident = cell.identity()
    ident.pop("batch_size")
    return json.dumps(ident, sort_keys=True)


class ProcessLauncher:
    """Each cell in a fresh process, one after the other (see the module docstring)."""

    def launch(self, cells: list[Cell], run_dir: Path, statuses: dict[str, str], echo: bool = True) -> None:
        """Run ``cells`` (those without a result yet), recording each status in ``statuses``.

        Cells already in ``statuses`` with ``oom`` start the sweeps' out-of-memory bounds (resume).
        """
        from tqdm import tqdm

        oom_at: dict[str, int] = {}  # smallest batch size that ran out of memory, per sweep
        for cell_id, status in statuses.items():
            c = next((c for c in cells if c.cell_id == cell_id), None)
            if status == "oom" and c is not None:
                oom_at[sweep_key(c)] = min(oom_at.get(sweep_key(c), c.batch_size), c.batch_size)
        todo = [c for c in cells if c.cell_id not in statuses]
        with tqdm(todo, desc="cells", unit="cell", file=sys.stderr, disable=not echo) as bar:
            for c in bar:
                bar.set_postfix_str(c.cell_id.split("__")[0] + " " + c.precision)
                key = sweep_key(c)
                if key in oom_at and c.batch_size > oom_at[key]:
                    statuses[c.cell_id] = _write_failure(
                        c, run_dir, "skipped",
                        f"batch size {oom_at[key]} already ran out of memory; larger batch sizes are not tried")
                    continue
                statuses[c.cell_id] = run_cell_repeated(c, run_dir)
                if statuses[c.cell_id] == "oom":
                    oom_at[key] = min(oom_at.get(key, c.batch_size), c.batch_size)


class TorchrunLauncher:
    """Every rank runs every cell in-process; rank 0 writes each result with the world size."""

    def launch(self, cells: list[Cell], run_dir: Path, statuses: dict[str, str], echo: bool = True) -> None:
        from harness import distributed
        from harness.cell import run_cell

        placement = TorchrunPlacement()
        for i, c in enumerate(cells):
            if echo and placement.is_main:
                print(f"segbench: [{i + 1}/{len(cells)}] {c.cell_id} on {placement.world_size} ranks",
                      file=sys.stderr)
            result = run_cell(c, run_dir, placement=placement)
            result.environment.world_size = placement.world_size
            if placement.is_main:
                write_json_atomic(cell_path(run_dir, c.cell_id), result.to_dict())
            statuses[c.cell_id] = result.status
            distributed.barrier()
