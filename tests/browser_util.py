"""Headless Chromium (Debian's chromium + chromium-driver) through selenium, for report tests.

Missing pieces skip the test with the reason, except when the environment variable CI is
"true": there a missing browser is a failure, so CI never silently stops testing the page.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1800"]
INSTALL_HINT = "scripts/install-browser.sh installs them"


def find_browser() -> tuple[str, str] | None:
    """(chromium, chromedriver) executables on PATH, or None when either is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail when CI is "true"."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: browser tests must run)")
    pytest.skip(reason)


@contextmanager
def browser() -> Iterator:
    """A selenium Chrome driver on headless Chromium with a fresh profile in a temporary folder."""
    found = find_browser()
    if found is None:
        unavailable(f"chromium and chromedriver are not installed ({INSTALL_HINT})")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is not installed (pip install 'segbench[dev]')")
    chromium, driver_path = found
    profile = tempfile.mkdtemp(prefix="segbench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def severe_logs(driver) -> list[dict]:
    """Browser console entries of level SEVERE (errors) since the last call."""
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def alert_open(driver) -> bool:
    """Whether a JavaScript alert/confirm/prompt dialog is showing."""
    from selenium.common.exceptions import NoAlertPresentException

    try:
        driver.switch_to.alert.text  # noqa: B018  (reading it raises when there is none)
        return True
    except NoAlertPresentException:
        return False
