"""The page in a real browser: Debian's chromium, driven by Selenium through Debian's
chromium-driver (``infra/browser`` installs both when missing, as ``infra/up`` starts the
servers; a browser that cannot be had fails here, loudly, and is never skipped).

The browser reaches nothing but the service: every host name but 127.0.0.1 fails to resolve
(``--host-resolver-rules``), so a page that needed a CDN would show it.

Screenshots of each page go to ``REPLENISH_UI_SCREENSHOTS`` (a directory; docs/ui/ holds the
ones README shows), else to the test's temporary directory.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def browser_paths() -> dict[str, str]:
    proc = subprocess.run(["bash", str(ROOT / "infra" / "browser")], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"infra/browser could not provide chromium and chromium-driver:\n{proc.stderr[-3000:]}",
                    pytrace=False)
    found = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    return {"chromium": found["REPLENISH_CHROMIUM"], "driver": found["REPLENISH_CHROMEDRIVER"]}


@pytest.fixture
def browser(browser_paths: dict[str, str]) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = browser_paths["chromium"]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,800", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--disable-background-networking", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=DriverService(executable_path=browser_paths["driver"]), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def full_page(browser: webdriver.Chrome, path: Path) -> None:
    """A screenshot of the whole page (the window made as tall as it, then put back)."""
    width, height = browser.get_window_size()["width"], browser.get_window_size()["height"]
    tall = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(width, max(height, min(int(tall) + 120, 4000)))
    browser.save_screenshot(str(path))
    browser.set_window_size(width, height)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    where = os.environ.get("REPLENISH_UI_SCREENSHOTS")
    out = Path(where) if where else tmp_path / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out
