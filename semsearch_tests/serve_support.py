"""Helpers of the serve tests (the live server fixture `served` is in conftest.py)."""

from __future__ import annotations

import shutil

import pytest


def chromium_driver():
    """Headless Chromium through the system chromedriver; fails (never skips) without them."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail(
            "the browser test needs Debian's chromium and chromium-driver "
            "(sudo apt-get install -y chromium chromium-driver); found "
            f"chromium={chromium}, chromedriver={driver_path}"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver_path), options=options)
