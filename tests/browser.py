"""A headless Chromium driven by selenium, for tests of the pages maitred serves.

Debian's `chromium` and `chromium-driver` packages provide both programs (.ci/run installs
them); a machine without them fails the test that asks for a browser rather than skipping it:
a page nobody loads is a page nobody tested.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

PAGE_TIMEOUT = 30.0  # seconds a page may take to load; waits inside it are the test's
WINDOW = (1400, 1000)


def _find(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path is not None:
            return path
    wanted = ", ".join(names)
    pytest.fail(f"none of {wanted} is installed (apt-get install chromium chromium-driver)")


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    """A headless Chromium, quit on the way out."""
    options = webdriver.ChromeOptions()
    options.binary_location = _find("chromium", "chromium-browser")
    for argument in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in CI containers, where the sandbox cannot start
        "--disable-dev-shm-usage",  # a container's /dev/shm is small
        "--disable-gpu",
        "--no-first-run",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(_find("chromedriver")))
    try:
        driver.set_page_load_timeout(PAGE_TIMEOUT)
        yield driver
    finally:
        driver.quit()
