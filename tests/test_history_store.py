"""The history database: runs read from their on-disk layout, recorded once, read back as series in
time order, on SQLite and on a real PostgreSQL server; the command line's add/check/report; bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from fixtures_results import as_result, make_cell, write_run

pytest.importorskip("sqlalchemy", reason="scripts/install-history.sh installs it")

from harness.errors import ConfigError  # noqa: E402
from harness.history import history_main  # noqa: E402
from harness.history.quantities import QUANTITIES, cell_quantities  # noqa: E402
from harness.history.store import HistoryStore, database_url, machine_class, record_from_run  # noqa: E402
from harness.results import load_run  # noqa: E402


def test_cell_quantities_reads_each_quantity_from_the_result_json():
    cell = make_cell("m", miou=0.47, latency=120.0, memory=800.0)
    cell["memory_mib"]["gpu_peak_allocated"] = 512.0
    q = cell_quantities(as_result(cell))
    lat = np.asarray(cell["latency_ms"]["samples"])
    want = {"mIoU": 0.47, "aAcc": pytest.approx(0.77), "latency_p50": pytest.approx(float(np.median(lat))),
            "latency_mean": pytest.approx(float(lat.mean())), "throughput": pytest.approx(1000.0 / 120.0),
            "gpu_peak": 512.0, "host_rss": 800.0}
    assert {k: q[k] for k in want} == want
    assert set(q) <= set(QUANTITIES) and "params" not in q  # facts of the architecture are no series
    random = cell_quantities(as_result(make_cell("m", weights="random")))
    assert "mIoU" not in random and "latency_p50" in random  # random weights: no accuracy
    cell["metrics"]["mIoU"] = math.nan
    cell["throughput_ips"] = "fast"
    assert "mIoU" not in cell_quantities(as_result(cell)) and "throughput" not in cell_quantities(as_result(cell))
    assert cell_quantities(as_result(make_cell("m", status="oom"))) == {}


def _runs(tmp_path, latencies: list[float], miou: float = 0.45, start_day: int = 1, name: str = "r",
          cpu: str = "Test CPU") -> list:
    """One run directory per value: two cells (latency follows ``latencies``), commit c0000.., a day apart."""
    dirs = []
    for i, lat in enumerate(latencies):
        cells = [make_cell("dpt-large", miou=miou, latency=lat, seed=i, n=10),
                 make_cell("segformer-b0", miou=0.37, latency=40.0, seed=100 + i, n=10)]
        meta = {"created_at": f"2026-{1 + (start_day + i) // 28:02d}-{1 + (start_day + i) % 28:02d}T08:00:00+00:00",
                "env": {"cpu": cpu, "cpu_count": 2, "git_sha": f"c{i:04d}", "torch": "2.13.0"}}
        dirs.append(write_run(tmp_path / f"{name}{i:03d}", cells, meta))
    return dirs


def _store_roundtrip(store: HistoryStore, tmp_path) -> None:
    dirs = _runs(tmp_path, [100.0, 101.0, 99.0, 130.0])
    for d in reversed(dirs):  # recorded newest first: series still come out in time order
        assert store.add_run_dir(d, branch="main").added
    again = store.add_run_dir(dirs[0], branch="main")
    assert not again.added and again.points == 0 and store.run_count() == 4
    series = store.series(quantity="latency_p50")
    assert len(series) == 2
    dpt = next(s for s in series if s.cell_label.startswith("dpt-large"))
    assert dpt.commits == ["c0000", "c0001", "c0002", "c0003"] and dpt.branches == ["main"] * 4
    assert dpt.machine == "Test CPU · 2 CPUs"
    want = [load_run(d).cells["dpt-large__ade20k__cpu__fp32__b1"].latency.forward_ms["p50"] for d in dirs]
    assert dpt.values.tolist() == pytest.approx(want)
    assert [len(s) for s in store.series(quantity="mIoU")] == [4, 4]
    per_cell = len(cell_quantities(as_result(make_cell("segformer-b0", miou=0.37, latency=40.0, n=10))))
    assert store.series(branch="other") == [] and len(store.series(cell="segformer")) == per_cell


def test_sqlite_store_records_runs_once_and_reads_series_in_time_order(tmp_path):
    db = tmp_path / "h" / "history.sqlite"
    store = HistoryStore(db)
    try:
        _store_roundtrip(store, tmp_path)
    finally:
        store.close()
    assert db.is_file()


def test_postgresql_store_through_the_same_code(tmp_path):
    from pg_util import postgres_server, unavailable

    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed (scripts/install-history.sh installs it)")

    with postgres_server() as url:
        assert database_url(url).startswith("postgresql+psycopg://")
        store = HistoryStore(url)
        try:
            _store_roundtrip(store, tmp_path)
        finally:
            store.close()
        # the command line on the same server: a step in one series fails the check
        dirs = _runs(tmp_path, [100.0] * 12 + [125.0] * 6, name="cli")
        assert history_main(["add", *map(str, dirs), "--db", url, "--machine", "ci-runner"]) == 0
        assert history_main(["check", "--db", url, "--machine", "ci-runner", "--quantity", "latency_p50"]) == 1


def test_record_uses_run_metadata_and_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_REF_NAME", "feature/x")
    (d,) = _runs(tmp_path, [100.0])
    rec = record_from_run(load_run(d))
    assert (rec.commit, rec.branch, rec.machine) == ("c0000", "feature/x", "Test CPU · 2 CPUs")
    assert rec.created_at == "2026-01-02T08:00:00+00:00"
    rec = record_from_run(load_run(d), commit="deadbeef", branch="main", machine="runner-7")
    assert (rec.commit, rec.branch, rec.machine) == ("deadbeef", "main", "runner-7")
    assert {c.cell_label.split(" ·")[0] for c in rec.cells} == {"dpt-large", "segformer-b0"}
    assert machine_class({"cpu": "X", "cpu_count": 8, "gpu": "NVIDIA H200", "gpu_count": 1}) == \
        "X · 8 CPUs · 1x NVIDIA H200"


def test_broken_runs_are_errors_naming_the_file(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite")
    try:
        with pytest.raises(Exception, match="no run.json"):
            store.add_run_dir(tmp_path / "nothing")
        (d,) = _runs(tmp_path, [100.0])
        meta = json.loads((d / "run.json").read_text())
        meta["created_at"] = "yesterday"
        (d / "run.json").write_text(json.dumps(meta))
        with pytest.raises(ConfigError, match=r"run\.json: created_at 'yesterday' is not an ISO-8601 time"):
            store.add_run_dir(d)
        del meta["created_at"]
        (d / "run.json").write_text(json.dumps(meta))
        with pytest.raises(ConfigError, match="no created_at"):
            store.add_run_dir(d)
        (d / "cells" / "dpt-large__ade20k__cpu__fp32__b1.json").write_text("{not json")
        with pytest.raises(Exception, match="dpt-large__ade20k__cpu__fp32__b1.json"):
            store.add_run_dir(d)
    finally:
        store.close()
    with pytest.raises(ConfigError, match="cannot open"):
        HistoryStore("postgresql://nobody@127.0.0.1:1/none")


def test_cli_add_check_and_report(tmp_path, capsys):
    pytest.importorskip("signal_processing_algorithms", reason="scripts/install-history.sh installs it")
    db = str(tmp_path / "h.sqlite")
    dirs = _runs(tmp_path, [100.0] * 14 + [118.0] * 6)
    assert history_main(["add", *map(str, dirs), "--db", db]) == 0
    assert "recorded" in capsys.readouterr().out
    out = tmp_path / "summary.md"
    assert history_main(["check", "--db", db, "--out", str(out)]) == 1
    text = out.read_text()
    assert "❌ regression" in text and "`c0013..c0014`" in text and "dpt-large" in text
    assert history_main(["check", "--db", db, "--format", "json", "--quantity", "latency_mean"]) == 1
    doc = json.loads(capsys.readouterr().out)
    (step,) = doc["steps"]
    assert (step["commit_before"], step["commit_after"], step["kind"]) == ("c0013", "c0014", "regression")
    assert step["change"] == pytest.approx(0.18, abs=0.02) and step["pvalue"] < 1e-6
    assert history_main(["check", "--db", db, "--cell", "segformer"]) == 0  # its series are flat
    assert history_main(["check", "--db", db, "--recent", "3"]) == 0  # the step is older than 3 runs
    pytest.importorskip("plotly", reason="plotly is not installed (pip install 'segbench[report]')")
    page = tmp_path / "history.html"
    assert history_main(["report", "--db", db, "--out", str(page)]) == 0
    html = page.read_text()
    per_cell = len(cell_quantities(as_result(make_cell("dpt-large", miou=0.45, latency=100.0, n=10))))
    assert html.count('class="chart"') == 2 * per_cell and "c0013" in html and "Plotly" in html


def test_cli_errors_exit_2(tmp_path, capsys):
    db = str(tmp_path / "h.sqlite")
    assert history_main(["check", "--db", db]) == 2  # nothing recorded
    assert "could not check" in capsys.readouterr().out
    assert history_main(["add", str(tmp_path / "missing"), "--db", db]) == 2
    assert "no run.json" in capsys.readouterr().err
    assert history_main(["check", "--db", db, "--min-magnitude", "mIoU=-1"]) == 2
    assert "QUANTITY=VALUE" in capsys.readouterr().err
