"""The HTML report in a real browser (headless Chromium): renders with no console error, the table
has its rows, sorting and filtering work, and hostile names run no script and show verbatim."""

from __future__ import annotations

import pytest
from browser_util import browser
from fixtures_results import make_cell, write_run

from harness.report.html import write_report

HOSTILE = "<script>window.__pwned=1;alert(1)</script>\"q'\\&%_$"
pytestmark = pytest.mark.browser


@pytest.fixture
def report(tmp_path):
    cells = [make_cell("dpt-large", family="dpt", miou=0.47, latency=300, seed=1),
             make_cell("segformer-b0", family="transformer", miou=0.37, latency=40, seed=2),
             make_cell(HOSTILE, miou=0.45, latency=120, seed=3, class_names=[HOSTILE, "b", "c"]),
             make_cell("deeplabv3", miou=None, weights="random", latency=20, seed=4),
             make_cell("upernet-oom", status="oom")]
    run = write_run(tmp_path / "run", cells, meta={"env": {"gpu": HOSTILE, "torch": "2.x"}})
    return write_report([run], tmp_path / "report.html")


def _rows(driver):
    from selenium.webdriver.common.by import By

    return [r for r in driver.find_elements(By.CSS_SELECTOR, "#cells tbody tr") if "group" not in r.get_attribute("class")]


def test_report_renders_sorts_filters_and_is_safe(report, tmp_path):
    from selenium.webdriver.common.by import By

    with browser() as driver:
        driver.get(report.as_uri())
        assert driver.execute_script("return typeof Plotly") == "object"
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
        assert driver.execute_script("return window.__pwned === undefined")
        rows = _rows(driver)
        assert len(rows) == 5
        assert any(HOSTILE in r.text for r in rows)  # shown verbatim, not interpreted
        assert len(driver.find_elements(By.CSS_SELECTOR, "div.chart .main-svg")) >= 2  # charts drawn
        svg_texts = driver.execute_script(
            "return Array.from(document.querySelectorAll('div.chart text')).map(t => t.textContent)")
        assert any("<script>window.__pwned" in t for t in svg_texts)  # chart labels verbatim too
        # sort by latency p50 (ascending), then descending
        headers = driver.find_elements(By.CSS_SELECTOR, "#cells thead th")
        lat = next(h for h in headers if h.text.startswith("latency p50"))
        col = headers.index(lat)
        lat.click()
        values = [r.find_elements(By.TAG_NAME, "td")[col].get_attribute("data-v") for r in _rows(driver)]
        nums = [float(v) for v in values if v]
        assert nums == sorted(nums) and values[-1] == ""  # missing values last
        lat.click()
        nums = [float(v) for v in (r.find_elements(By.TAG_NAME, "td")[col].get_attribute("data-v") for r in _rows(driver)) if v]
        assert nums == sorted(nums, reverse=True)
        # filter
        box = driver.find_element(By.ID, "filter")
        box.send_keys("segformer")
        visible = [r for r in _rows(driver) if r.is_displayed()]
        assert len(visible) == 1 and "segformer-b0" in visible[0].text
        driver.save_screenshot(str(tmp_path / "report.png"))
        assert (tmp_path / "report.png").stat().st_size > 10_000


def test_missing_values_are_explained(report):
    page = report.read_text()
    assert "random weights" in page and "oom" in page
    assert "<script>window.__pwned" not in page  # escaped in the HTML source
