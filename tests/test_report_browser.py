"""The HTML report in a real browser (headless Chromium): renders with no console error, the table
has its rows, sorting and filtering work, charts draw, and hostile names run no script and show verbatim."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from browser_util import alert_open, browser, severe_logs, unavailable
from fixtures_results import make_cell, write_run, write_samples

from harness.report.html import write_report

HOSTILE = "<script>window.__pwned=1;alert(1)</script>\"q'\\&%_$"
HOSTILE_IMG = "<img src=x onerror=\"window.__pwned2=1;alert(2)\">"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def report(tmp_path):
    pytest.importorskip("plotly", reason="plotly is not installed (pip install 'segbench[report]')")
    run_dir = tmp_path / "run"
    dpt = make_cell("dpt-large", family="dpt", miou=0.47, latency=300, seed=1)
    dpt["samples"] = write_samples(run_dir, dpt, ["s1"])
    cells = [dpt,
             make_cell("dpt-large", "bf16", family="dpt", miou=0.468, latency=180, seed=6),
             make_cell("segformer-b0", family="transformer", miou=0.37, latency=40, seed=2),
             make_cell(HOSTILE, miou=0.45, latency=120, seed=3, class_names=[HOSTILE, HOSTILE_IMG, "c"]),
             make_cell(HOSTILE_IMG, miou=0.2, latency=500, seed=7, dataset="ade20k"),
             make_cell("deeplabv3", miou=None, weights="random", latency=20, seed=4),
             make_cell("upernet-oom", status="oom", error="torch.OutOfMemoryError: CUDA out of memory")]
    run = write_run(run_dir, cells, meta={"env": {"gpu": HOSTILE, "torch": "2.x"}})
    return write_report([run], tmp_path / "report.html")


def _rows(driver):
    from selenium.webdriver.common.by import By

    return [r for r in driver.find_elements(By.CSS_SELECTOR, "#cells tbody tr")
            if "group" not in (r.get_attribute("class") or "")]


def _column(driver, header_prefix: str) -> tuple[object, list[str]]:
    from selenium.webdriver.common.by import By

    headers = driver.find_elements(By.CSS_SELECTOR, "#cells thead th")
    th = next(h for h in headers if h.text.startswith(header_prefix))
    col = headers.index(th)
    return th, [r.find_elements(By.TAG_NAME, "td")[col].get_attribute("data-v") for r in _rows(driver)]


@pytest.mark.browser
def test_report_renders_sorts_filters_and_runs_no_injected_script(report, tmp_path):
    from selenium.webdriver.common.by import By

    with browser() as driver:
        driver.get(report.as_uri())
        assert not alert_open(driver), "an injected alert() ran"
        assert severe_logs(driver) == []
        assert driver.execute_script("return typeof Plotly") == "object"
        assert driver.execute_script("return window.__pwned === undefined && window.__pwned2 === undefined")
        rows = _rows(driver)
        assert len(rows) == 7
        assert [g.text for g in driver.find_elements(By.CSS_SELECTOR, "#cells tr.group")] == ["DPT", "Transformer",
                                                                                             "CNN"]
        texts = [r.text for r in rows]
        assert any(HOSTILE in t for t in texts) and any(HOSTILE_IMG in t for t in texts)  # verbatim
        assert len(driver.find_elements(By.CSS_SELECTOR, "div.chart .main-svg")) >= 4  # charts drawn
        svg_texts = driver.execute_script(
            "return Array.from(document.querySelectorAll('div.chart text')).map(t => t.textContent)")
        assert any("<script>window.__pwned" in t for t in svg_texts)  # chart labels verbatim too
        assert len(driver.find_elements(By.CSS_SELECTOR, ".qual img")) == 3
        driver.save_screenshot(str(tmp_path / "report.png"))
        assert (tmp_path / "report.png").stat().st_size > 10_000

        th, _ = _column(driver, "latency p50")
        th.click()  # ascending, missing values last
        _, values = _column(driver, "latency p50")
        nums = [float(v) for v in values if v]
        assert nums == sorted(nums) and len(nums) == 6 and values[-1] == ""
        assert th.get_attribute("aria-sort") == "ascending"
        assert not any(g.is_displayed() for g in driver.find_elements(By.CSS_SELECTOR, "#cells tr.group"))
        th.click()  # descending, missing values still last
        _, values = _column(driver, "latency p50")
        assert [float(v) for v in values if v] == sorted(nums, reverse=True) and values[-1] == ""
        th.click()  # back to the grouped order
        assert th.get_attribute("aria-sort") is None
        assert all(g.is_displayed() for g in driver.find_elements(By.CSS_SELECTOR, "#cells tr.group"))
        model_th, models = _column(driver, "model")
        model_th.click()
        _, models = _column(driver, "model")
        order = [models.index(m) for m in ("deeplabv3", "dpt-large", "segformer-b0", "upernet-oom")]
        assert order == sorted(order)

        box = driver.find_element(By.ID, "filter")
        box.send_keys("segformer")
        visible = [r for r in _rows(driver) if r.is_displayed()]
        assert len(visible) == 1 and "segformer-b0" in visible[0].text
        assert driver.find_element(By.ID, "count").text == "1 of 7 rows"
        box.clear()
        box.send_keys("oom")
        assert [r.text.split()[0] for r in _rows(driver) if r.is_displayed()] == ["upernet-oom"]
        box.clear()
        box.send_keys("x")
        box.clear()
        driver.execute_script("document.getElementById('filter').dispatchEvent(new Event('input'))")
        assert len([r for r in _rows(driver) if r.is_displayed()]) == 7
        assert severe_logs(driver) == [] and not alert_open(driver)


@pytest.mark.browser
def test_missing_value_tooltips_in_the_browser(report):
    from selenium.webdriver.common.by import By

    with browser() as driver:
        driver.get(report.as_uri())
        oom = next(r for r in _rows(driver) if r.text.startswith("upernet-oom"))
        missing = oom.find_elements(By.CSS_SELECTOR, "td.missing")
        assert missing and all(td.text == "oom" for td in missing)
        assert "OutOfMemoryError" in missing[0].get_attribute("title")
        rnd = next(r for r in _rows(driver) if r.text.startswith("deeplabv3"))
        assert "random weights" in rnd.text


def test_missing_browser_skips_but_fails_under_ci(monkeypatch):
    import browser_util

    monkeypatch.setattr(browser_util, "find_browser", lambda: None)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="install-browser.sh"):
        with browser_util.browser():
            pass
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        unavailable("chromium missing")


def test_install_script_is_idempotent_when_present():
    script = ROOT / "scripts" / "install-browser.sh"
    assert os.access(script, os.X_OK)
    if not (subprocess.run(["sh", "-c", "command -v chromium && command -v chromedriver"],
                           capture_output=True).returncode == 0):
        pytest.skip("chromium is not installed here; the script would install it")
    out = subprocess.run([str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "" and out.stderr == ""


def test_install_script_gives_up_quietly_except_under_ci(tmp_path):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    script = str(ROOT / "scripts" / "install-browser.sh")
    env = {"PATH": str(tmp_path)}  # an empty folder: no chromium, no apt-get
    out = subprocess.run([bash, script], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and "browser tests will skip" in out.stderr
    out = subprocess.run([bash, script], capture_output=True, text=True, env={**env, "CI": "true"}, timeout=60)
    assert out.returncode == 1 and "apt-get is not available" in out.stderr
