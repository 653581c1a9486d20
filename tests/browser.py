"""A real headless Chromium for page tests (Debian's chromium + chromium-driver, via Selenium).

Use ``browser_session()`` in a module-scoped fixture: one browser per test module.  Where
no browser is installed the tests skip with the reason, except under CI=true, where a
missing browser fails them (CI installs it in .ci/run).
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _missing():
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} not found (apt-get install chromium chromium-driver)"
    return None


def browser_session():
    """Yield a Selenium Chrome driver with browser and performance logs enabled."""
    reason = _missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run under CI: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="charrnn-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        opts.add_argument(arg)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        opts.add_argument("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.get("about:blank")  # the start-up tab's own chrome:// loads are not the page's
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver, path):
    """Open a local file as file:// and clear the logs left by earlier pages."""
    driver.get_log("browser")
    driver.get_log("performance")
    url = Path(path).resolve().as_uri()
    driver.get(url)
    return url


def console_errors(driver):
    """Console messages of level SEVERE or WARNING since the last call."""
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def requests(driver):
    """URLs the page asked the network stack for since the last call."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def assert_offline(driver, url):
    """Nothing but the page itself was requested (data: URLs are not requests), and the
    console is clean."""
    other = [u for u in requests(driver) if u != url and not u.startswith("data:")]
    assert other == [], f"the page made network requests: {other}"
    errors = console_errors(driver)
    assert errors == [], f"console errors: {errors}"
