"""The history page in a real browser (headless Chromium): every series chart draws, steps show as
lines, hostile cell names show verbatim and run no script, no console error."""

from __future__ import annotations

import pytest
from browser_util import alert_open, browser, severe_logs
from fixtures_results import as_result, make_cell, write_run

from harness.history.quantities import cell_quantities

pytest.importorskip("sqlalchemy", reason="scripts/install-history.sh installs it")
pytest.importorskip("signal_processing_algorithms", reason="scripts/install-history.sh installs it")

from harness.history import history_main  # noqa: E402

HOSTILE = "<script>window.__pwned=1;alert(1)</script>\"q'&"


@pytest.fixture
def page(tmp_path):
    pytest.importorskip("plotly", reason="plotly is not installed (pip install 'segbench[report]')")
    db = str(tmp_path / "h.sqlite")
    dirs = []
    for i in range(30):
        cells = [make_cell(HOSTILE, miou=0.45 if i < 20 else 0.43, latency=100.0 if i < 15 else 120.0, seed=i, n=8)]
        cells[0]["quality"] = {"flags": ["busy-host"]} if i == 7 else {"flags": []}
        dirs.append(write_run(tmp_path / f"r{i:02d}", cells, {
            "created_at": f"2026-02-{1 + i // 2:02d}T{8 + 10 * (i % 2):02d}:00:00+00:00",
            "env": {"cpu": "Test CPU", "cpu_count": 2, "git_sha": f"{i:02d}" + "ab" * 19}}))
    assert history_main(["add", *map(str, dirs), "--db", db]) == 0
    out = tmp_path / "history.html"
    assert history_main(["report", "--db", db, "--out", str(out)]) == 0
    return out


@pytest.mark.browser
def test_history_page_draws_each_series_with_its_steps(page, tmp_path):
    from selenium.webdriver.common.by import By

    with browser() as driver:
        driver.get(page.as_uri())
        assert not alert_open(driver), "an injected alert() ran"
        assert severe_logs(driver) == []
        assert driver.execute_script("return typeof Plotly") == "object"
        assert driver.execute_script("return window.__pwned === undefined")
        charts = driver.find_elements(By.CSS_SELECTOR, "div.chart")
        per_cell = len(cell_quantities(as_result(make_cell(HOSTILE, miou=0.45, latency=100.0, n=8))))
        assert len(charts) == per_cell  # accuracy, latency, throughput, host RSS series (no GPU on a CPU cell)
        assert len(driver.find_elements(By.CSS_SELECTOR, "div.chart .main-svg")) >= per_cell
        assert HOSTILE in driver.find_element(By.TAG_NAME, "h3").text  # verbatim
        steps = driver.find_elements(By.CSS_SELECTOR, "#steps tbody tr")
        texts = [r.text for r in steps]
        assert any("latency_p50" in t and "regression" in t for t in texts)
        assert any("mIoU" in t and "regression" in t for t in texts)
        # the step lines are drawn as plotly shapes, at least one per chart with a step
        n_shapes = driver.execute_script(
            "return Array.from(document.querySelectorAll('div.chart')).map(d => (d.layout && d.layout.shapes"
            " || []).length).reduce((a, b) => a + b, 0)")
        assert n_shapes >= len(steps)
        traces = driver.execute_script(
            "return Array.from(document.querySelectorAll('div.chart')).map(d => d.data.map(t => t.name))")
        assert all("flagged run" in names for names in traces)  # run 7 was flagged busy-host
        driver.save_screenshot(str(tmp_path / "history.png"))
        assert (tmp_path / "history.png").stat().st_size > 10_000
