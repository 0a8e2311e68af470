"""A real headless Chromium (Debian's `chromium` + `chromedriver`, driven by Selenium)
for the console's browser tests. Never a browser download: without Chromium the tests
skip, unless CI is set — CI installs it (.ci/run) and must not pass without it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {reason} (.ci/run installs chromium and chromium-driver)")
    pytest.skip(f"{reason}: apt-get install -y chromium chromium-driver to run the browser tests")


def browser(profile: Path) -> Iterator[Any]:
    """A Chrome WebDriver on a fresh profile directory; quits at the end."""
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chrome or not driver:
        _missing("no Chromium or chromedriver on PATH")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = str(chrome)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    web = webdriver.Chrome(service=Service(executable_path=str(driver)), options=options)
    web.set_page_load_timeout(30)
    try:
        yield web
    finally:
        web.quit()
