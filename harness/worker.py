"""Entry of a cell's own process: ``python -m harness.worker RUN_DIR`` with the cell JSON on stdin.

The result is written to ``RUN_DIR/cells/<cell_id>.json`` (atomically) when the cell ends. The
process asks to be killed with its runner (Linux), and a closed standard error never fails a
measurement.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
from pathlib import Path


class _QuietStream:
    """Standard error that never fails a measurement: writes after the reader went away are dropped."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except (BrokenPipeError, OSError, ValueError):
            return len(text)

    def flush(self):
        try:
            self._stream.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _die_with_parent() -> None:
    """Linux: ask for SIGKILL when the runner dies, so no orphan keeps measuring beside a resumed run."""
    parent = os.environ.get("SEGBENCH_PARENT_PID")
    if not parent or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() != int(parent):  # the runner died before we asked
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    """Cell JSON on stdin, result to RUN_DIR/cells/<cell_id>.json."""
    faulthandler.enable()
    _die_with_parent()
    sys.stderr = _QuietStream(sys.stderr)
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m harness.worker RUN_DIR < cell.json", file=sys.stderr)
        return 2
    from harness import cell as cell_module  # looked up at call time: tests may replace run_cell
    from harness.results import cell_path, write_json_atomic
    from harness.suite import Cell

    run_dir = Path(args[0])
    cell = Cell.from_dict(json.loads(sys.stdin.read()))
    result = cell_module.run_cell(cell, run_dir)
    write_json_atomic(cell_path(run_dir, cell.cell_id), result.to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
