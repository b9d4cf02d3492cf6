"""Results on disk: one run directory with ``run.json`` and ``cells/<cell_id>.json``.

Every file is written atomically (temp file in the same directory, fsync, rename), so a
reader never sees half a JSON, whatever happens to the writer.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cell_result import SCHEMA_VERSION, STATUSES, CellResult
from harness.errors import SegbenchError
from harness.migrate import SUPPORTED, migrate

__all__ = ["SCHEMA_VERSION", "STATUSES", "CellResult", "ResultsError", "Run", "cell_path", "load_run",
           "load_cell_result", "read_json", "write_json_atomic", "to_dataframe"]

MAX_RESULT_BYTES = 64 * 1024 * 1024  # a cell or run file larger than this is refused


class ResultsError(SegbenchError):
    """A run directory or result file is missing, unreadable or of an unknown schema."""


def _clean(obj: Any) -> Any:
    """Replace NaN/inf floats by None recursively so the file is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as strict JSON to ``path`` atomically (tmp file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(_clean(data), f, indent=1, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path: str | os.PathLike) -> dict:
    """Read a result JSON object (run.json or a cell file) of a supported schema version, refusing
    files that are huge, not JSON, not an object or of another schema."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ResultsError(f"{path}: cannot read ({e.strerror})") from e
    if size > MAX_RESULT_BYTES:
        raise ResultsError(f"{path}: {size} bytes is larger than the {MAX_RESULT_BYTES} allowed for a result file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a JSON object, found {type(data).__name__}")
    version = data.get("schema_version")
    if version not in SUPPORTED:
        raise ResultsError(f"{path}: results schema_version {version!r} is not supported by this segbench "
                           f"(which reads schema_version {', '.join(map(str, SUPPORTED))})")
    return data


def load_cell_result(path: str | os.PathLike) -> CellResult:
    """A cell file (any supported schema, migrated) as a :class:`CellResult`."""
    return CellResult.from_dict(migrate(read_json(path)))


@dataclass
class Run:
    """A loaded run directory: its ``run.json`` and its cell results (by cell id)."""

    path: Path
    meta: dict
    cells: dict[str, CellResult] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id") or self.path.name)

    @property
    def missing(self) -> list[str]:
        """Planned cell ids that have no result file yet."""
        return [c for c in self.meta.get("cells", []) if c not in self.cells]


def cell_path(run_dir: str | os.PathLike, cell_id: str) -> Path:
    """Where the result of ``cell_id`` lives inside ``run_dir``."""
    return Path(run_dir) / "cells" / f"{cell_id}.json"


def load_run(run_dir: str | os.PathLike) -> Run:
    """Load ``run_dir/run.json`` and every ``cells/*.json`` (temp files of interrupted writes are ignored)."""
    run_dir = Path(run_dir)
    meta_path = run_dir / "run.json"
    if not meta_path.is_file():
        raise ResultsError(f"{run_dir}: not a segbench run directory (no run.json)")
    run = Run(path=run_dir, meta=read_json(meta_path))
    cells_dir = run_dir / "cells"
    if cells_dir.is_dir():
        for p in sorted(cells_dir.glob("*.json")):
            if p.is_symlink() or p.name.startswith("."):
                continue
            cell = load_cell_result(p)
            cell.cell_id = cell.cell_id or p.stem
            run.cells[cell.cell_id] = cell
    return run


IDENTITY_COLUMNS = ("model", "dataset", "device", "precision", "amp", "batch_size", "runtime")


def flat_row(run: Run, cell: CellResult) -> dict:
    """One cell as a flat mapping: identity columns, then each declared quantity under its
    ``column`` name (stored units: fractions, ms, MiB, counts), then the error."""
    from harness.quantities import all_quantities

    ident = cell.identity
    row = {"run_id": run.meta.get("run_id"), "cell_id": cell.cell_id, "status": cell.status, "model": ident.model,
           "family": cell.provenance.family, "weights": (cell.provenance.weights or {}).get("source")}
    row.update({k: getattr(ident, k) for k in IDENTITY_COLUMNS})
    row["protocol"] = (ident.protocol or {}).get("mode")
    row["task"] = ident.task
    row["corruption"] = cell.corruption_tag
    for q in all_quantities():
        if q.path and not q.per_class:
            row[q.column] = q.raw(cell)
    row["error"] = cell.error
    return row


def to_dataframe(runs: Run | list[Run]):
    """One row per cell over one or several runs (pandas DataFrame, imported lazily)."""
    import pandas as pd

    runs = [runs] if isinstance(runs, Run) else runs
    rows = [flat_row(r, c) for r in runs for c in r.cells.values()]
    return pd.DataFrame(rows)
