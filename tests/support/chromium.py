"""Headless Chromium for the browser tests, started one way: loopback only, no background traffic."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

from tests.conftest import require

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def start_chromium(profile: Path, *extra: str, page_load_timeout: float = 30) -> Any:
    """A selenium driver for Debian's chromium; `require` fails under CI when it is missing."""
    require(CHROMIUM is not None and CHROMEDRIVER is not None, "chromium and chromedriver are not installed")
    require(importlib.util.find_spec("selenium") is not None, "selenium is not installed (pip install selenium)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-domain-reliability", "--no-pings",
        "--dns-prefetch-disable",
        # loopback only: every host name but 127.0.0.1 fails to resolve, so no DNS query leaves the machine
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile}",
        *extra,
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(page_load_timeout)
    return driver
