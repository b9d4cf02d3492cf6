"""The history database: runs, series and points, through SQLAlchemy Core (SQLite or PostgreSQL).

Three tables, created on first use:

- ``segbench_runs``: one row per recorded run: ``run_id``, ``commit_sha``, ``branch``,
  ``machine`` (the machine class), ``created_at`` (ISO-8601 UTC) and ``created_ts`` (Unix
  seconds, the series order), ``recorded_at``, ``fingerprint`` (the run's environment as JSON)
  and ``source`` (the run directory it came from). ``run_key`` (a hash of run id, creation
  time and machine) makes adding the same run twice a no-op.
- ``segbench_series``: one row per (machine class, cell identity, quantity), the unit of
  change-point detection; ``cell_key`` is the identity JSON ``compare`` pairs cells by.
- ``segbench_points``: one value of one series in one run, with the cell's quality flags.

``open_store("results/history.sqlite")`` opens a SQLite file; a URL with ``://`` goes to
SQLAlchemy as it is, except ``postgresql://`` / ``postgres://``, which are sent through the
psycopg 3 driver (``postgresql+psycopg://``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import operator
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    func,
    insert,
    select,
)
from sqlalchemy.engine import Engine

from harness.errors import ConfigError
from harness.history.quantities import cell_quantities
from harness.results import Run, load_run

metadata = MetaData()
runs_table = Table(
    "segbench_runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_key", String(64), nullable=False, unique=True),
    Column("run_id", String(255), nullable=False),
    Column("commit_sha", String(80)),
    Column("branch", String(255)),
    Column("machine", String(255), nullable=False, index=True),
    Column("created_at", String(40), nullable=False),
    Column("created_ts", Float, nullable=False),
    Column("recorded_at", String(40), nullable=False),
    Column("fingerprint", Text),
    Column("source", Text),
)
series_table = Table(
    "segbench_series", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("machine", String(255), nullable=False),
    Column("cell_key", Text, nullable=False),
    Column("cell_label", Text, nullable=False),
    Column("quantity", String(64), nullable=False),
)
points_table = Table(
    "segbench_points", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_pk", Integer, ForeignKey("segbench_runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("series_pk", Integer, ForeignKey("segbench_series.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("value", Float, nullable=False),
    Column("flags", String(255)),
    UniqueConstraint("run_pk", "series_pk", name="uq_segbench_point"),
)
DEFAULT_DB = "results/history.sqlite"


def database_url(target: str | os.PathLike) -> str:
    """A SQLAlchemy URL for ``target``: a file path becomes SQLite; postgresql:// uses psycopg 3."""
    text = str(target)
    if "://" not in text:
        path = Path(text).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    for prefix in ("postgresql://", "postgres://"):
        if text.startswith(prefix):
            return "postgresql+psycopg://" + text[len(prefix):]
    return text


def machine_class(env: dict) -> str:
    """The hardware a series is tied to: CPU model and count, GPU model and count."""
    parts = [str(env.get("cpu") or "unknown CPU"), f"{env.get('cpu_count') or '?'} CPUs"]
    if env.get("gpu"):
        parts.append(f"{env.get('gpu_count') or 1}x {env['gpu']}")
    return " · ".join(parts)


@dataclass
class CellPoints:
    """One cell's quantities in one run: its identity key, its label, its values and quality flags."""

    cell_key: str
    cell_label: str
    values: dict[str, float]
    flags: list[str] = field(default_factory=list)


@dataclass
class RunRecord:
    """What ``history add`` stores for one run."""

    run_id: str
    created_at: str
    created_ts: float
    machine: str
    commit: str | None = None
    branch: str | None = None
    fingerprint: dict = field(default_factory=dict)
    source: str | None = None
    cells: list[CellPoints] = field(default_factory=list)

    @property
    def run_key(self) -> str:
        return hashlib.sha256(f"{self.run_id}\0{self.created_at}\0{self.machine}".encode()).hexdigest()


def _parse_time(text: object, where: str) -> tuple[str, float]:
    """(ISO-8601 UTC, Unix seconds) of a run's ``created_at``; naive times are taken as UTC."""
    try:
        t = _dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{where}: created_at {text!r} is not an ISO-8601 time "
                          "(expected e.g. 2026-01-31T12:00:00+00:00)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    t = t.astimezone(_dt.timezone.utc)
    return t.isoformat(timespec="seconds"), t.timestamp()


def current_branch(commit: str | None, repo: str | os.PathLike = ".") -> str | None:
    """The CI's branch (GITHUB_HEAD_REF, GITHUB_REF_NAME, CI_COMMIT_REF_NAME), else git's branch of ``repo``
    when its HEAD is ``commit``; None otherwise."""
    for var in ("GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5).stdout.strip()
        if not commit or not head or not commit.startswith(head):
            return None
        name = subprocess.run(["git", "-C", str(repo), "rev-parse", "--abbrev-ref", "HEAD"], capture_output=True,
                              text=True, timeout=5).stdout.strip()
        return name if name and name != "HEAD" else None
    except (OSError, subprocess.SubprocessError):
        return None


def record_from_run(run: Run, commit: str | None = None, branch: str | None = None,
                    machine: str | None = None) -> RunRecord:
    """A :class:`RunRecord` of a loaded run; ``commit``/``branch``/``machine`` override what the run says."""
    from harness.measure.quality import cell_flags
    from harness.report.compare import cell_label, identity

    where = str(run.path / "run.json")
    if "created_at" not in run.meta:
        raise ConfigError(f"{where}: no created_at; history needs the time the run was made")
    created_at, ts = _parse_time(run.meta["created_at"], where)
    env = run.meta.get("env") if isinstance(run.meta.get("env"), dict) else {}
    commit = commit or env.get("git_sha")
    rec = RunRecord(run_id=str(run.meta.get("run_id") or run.path.name), created_at=created_at, created_ts=ts,
                    machine=machine or machine_class(env), commit=commit,
                    branch=branch if branch is not None else current_branch(commit), fingerprint=env,
                    source=str(run.path))
    for cell in run.cells.values():
        values = cell_quantities(cell)
        if values:
            rec.cells.append(CellPoints(identity(cell), cell_label(cell), values, cell_flags(cell)))
    return rec


def series_hash(machine: str, cell_key: str, quantity: str) -> str:
    return hashlib.sha256(f"{machine}\0{cell_key}\0{quantity}".encode()).hexdigest()


@dataclass
class Series:
    """One series: the values of one quantity of one cell on one machine class, oldest run first."""

    machine: str
    cell_key: str
    cell_label: str
    quantity: str
    values: np.ndarray
    commits: list[str | None]
    branches: list[str | None]
    times: list[str]
    run_ids: list[str]
    flags: list[tuple[str, ...]]

    def __len__(self) -> int:
        return int(self.values.size)


@dataclass
class AddResult:
    """What :meth:`HistoryStore.add` did with one run."""

    run_id: str
    added: bool
    points: int


class HistoryStore:
    """The history database at ``target`` (a SQLite file path or a SQLAlchemy URL); tables made on first use."""

    def __init__(self, target: str | os.PathLike = DEFAULT_DB, engine: Engine | None = None):
        self.url = database_url(target) if engine is None else str(engine.url)
        try:
            self.engine = engine or create_engine(self.url, future=True)
            metadata.create_all(self.engine)
        except Exception as e:  # driver missing, server down, bad URL: one clear message
            raise ConfigError(f"history database {_safe_url(self.url)}: cannot open ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None

    def close(self) -> None:
        self.engine.dispose()

    def add(self, records: list[RunRecord]) -> list[AddResult]:
        """Store ``records`` in one transaction; a run already stored (same run key) is left as it is."""
        out = []
        with self.engine.begin() as conn:
            keys = [r.run_key for r in records]
            known = set(conn.execute(select(runs_table.c.run_key).where(runs_table.c.run_key.in_(keys))).scalars())
            series_ids = self._series_ids(conn, [r for r in records if r.run_key not in known])
            now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            rows = []
            for rec in records:
                if rec.run_key in known:
                    out.append(AddResult(rec.run_id, False, 0))
                    continue
                known.add(rec.run_key)
                run_pk = conn.execute(insert(runs_table).values(
                    run_key=rec.run_key, run_id=rec.run_id, commit_sha=rec.commit, branch=rec.branch,
                    machine=rec.machine, created_at=rec.created_at, created_ts=rec.created_ts, recorded_at=now,
                    fingerprint=json.dumps(rec.fingerprint, sort_keys=True, default=str), source=rec.source,
                )).inserted_primary_key[0]
                n = len(rows)
                for cell in rec.cells:
                    for q, v in cell.values.items():
                        rows.append({"run_pk": run_pk, "series_pk": series_ids[series_hash(rec.machine, cell.cell_key, q)],
                                     "value": float(v), "flags": ",".join(cell.flags) or None})
                out.append(AddResult(rec.run_id, True, len(rows) - n))
            if rows:
                conn.execute(insert(points_table), rows)
        return out

    def _series_ids(self, conn, records: list[RunRecord]) -> dict[str, int]:
        """Ids of every series ``records`` have points in, inserting the new ones."""
        wanted: dict[str, dict] = {}
        for rec in records:
            for cell in rec.cells:
                for q in cell.values:
                    wanted.setdefault(series_hash(rec.machine, cell.cell_key, q), {
                        "machine": rec.machine, "cell_key": cell.cell_key, "cell_label": cell.cell_label, "quantity": q})
        ids: dict[str, int] = {}
        hashes = list(wanted)
        for i in range(0, len(hashes), 500):
            chunk = hashes[i:i + 500]
            rows = conn.execute(select(series_table.c.key_hash, series_table.c.id)
                                .where(series_table.c.key_hash.in_(chunk))).all()
            ids.update((h, i) for h, i in rows)
        missing = [{"key_hash": h, **wanted[h]} for h in hashes if h not in ids]
        for row in missing:
            ids[row["key_hash"]] = conn.execute(insert(series_table).values(**row)).inserted_primary_key[0]
        return ids

    def add_run_dir(self, run_dir: str | os.PathLike, commit: str | None = None, branch: str | None = None,
                    machine: str | None = None) -> AddResult:
        """Load the run directory ``run_dir`` and store it (see :func:`record_from_run`)."""
        return self.add([record_from_run(load_run(run_dir), commit, branch, machine)])[0]

    def run_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(runs_table)).scalar_one())

    def series(self, quantity: str | None = None, machine: str | None = None, branch: str | None = None,
               cell: str | None = None) -> list[Series]:
        """Every series (optionally one quantity / machine class / branch / cell label substring), oldest first.

        Three narrow queries (series, runs, points) joined here: the points carry only their keys,
        value and flags, so 10,000 runs of 34 series read in about a second.
        """
        s, r, p = series_table.c, runs_table.c, points_table.c
        sq = select(s.id, s.machine, s.cell_key, s.cell_label, s.quantity)
        for col, value in ((s.quantity, quantity), (s.machine, machine)):
            if value is not None:
                sq = sq.where(col == value)
        if cell is not None:
            sq = sq.where(s.cell_label.contains(cell, autoescape=True))
        rq = select(r.id, r.created_ts, r.commit_sha, r.branch, r.created_at, r.run_id)
        if branch is not None:
            rq = rq.where(r.branch == branch)
        pq = (select(p.series_pk, p.run_pk, p.value, p.flags).where(p.series_pk.in_(sq.with_only_columns(s.id)))
              .order_by(p.series_pk))
        if branch is not None:
            pq = pq.where(p.run_pk.in_(rq.with_only_columns(r.id)))
        with self.engine.connect() as conn:
            series_rows = {row[0]: row for row in conn.execute(sq)}
            runs = {row[0]: row for row in conn.execute(rq)}
            points = conn.execute(pq).all()
        return _group_series(series_rows, runs, points)


def _group_series(series_rows: dict, runs: dict, points: list) -> list[Series]:
    """Series objects from the rows of the three queries, each in run order (time, then insertion)."""
    if not points:
        return []
    order_of_runs = sorted(runs, key=lambda k: (runs[k][1], k))
    rank = np.full(max(runs) + 1, -1, dtype=np.int64)
    rank[np.asarray(order_of_runs, dtype=np.int64)] = np.arange(len(order_of_runs))
    n = len(points)
    spk = np.fromiter((pt[0] for pt in points), dtype=np.int64, count=n)
    rk = rank[np.fromiter((pt[1] for pt in points), dtype=np.int64, count=n)]
    values = np.fromiter((pt[2] for pt in points), dtype=np.float64, count=n)
    order = np.lexsort((rk, spk))
    spk, rk, values = spk[order], rk[order], values[order]
    cols = {k: [runs[r][i] for r in order_of_runs] for k, i in (("commits", 2), ("branches", 3), ("times", 4),
                                                                 ("run_ids", 5))}
    flag_of = [tuple(pt[3].split(",")) if pt[3] else () for pt in points]
    bounds = np.flatnonzero(np.diff(spk)) + 1
    out: list[Series] = []
    for a, b in zip(np.r_[0, bounds], np.r_[bounds, n], strict=True):
        meta, idx = series_rows[int(spk[a])], rk[a:b].tolist()
        pick = operator.itemgetter(*idx) if len(idx) > 1 else (lambda xs, i=idx[0]: (xs[i],))
        out.append(Series(machine=meta[1], cell_key=meta[2], cell_label=meta[3], quantity=meta[4],
                          values=values[a:b].copy(), flags=[flag_of[j] for j in order[a:b].tolist()],
                          **{k: list(pick(v)) for k, v in cols.items()}))
    return out


def _safe_url(url: str) -> str:
    """``url`` with any password replaced by ***."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url
