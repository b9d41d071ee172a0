"""A real browser (headless Chromium driven by selenium) against the dashboard on loopback.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). Without them the
test skips locally and fails on CI.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from dashboard_helpers import CIFAR_RUN, MNIST_RUN, PASSWORDS

from robustai.dashboard import DashboardServer

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver"

pytestmark = pytest.mark.slow


def _need(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _need("selenium is not installed (pip install -e '.[dev]')")
    binary = next((b for b in CHROMIUM if Path(b).is_file()), shutil.which("chromium"))
    driver_path = CHROMEDRIVER if Path(CHROMEDRIVER).is_file() else shutil.which("chromedriver")
    if not binary or not driver_path:
        _need("chromium and chromedriver not found (apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="robustai-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(driver_path))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _login(driver, base: str, user: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.delete_all_cookies()
    driver.get(base + "/")
    WebDriverWait(driver, 30).until(lambda d: "/login" in d.current_url)
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(PASSWORDS[user])
    driver.find_element(By.ID, "login").click()
    WebDriverWait(driver, 30).until(lambda d: "/login" not in d.current_url)


def _fetch(driver, path: str) -> list:  # type: ignore[no-untyped-def]
    """Status and text of a same-origin fetch by the page (with its HttpOnly cookie)."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(r => r.text().then(t => done([r.status, t])))"
        ".catch(e => done([0, String(e)]));",
        path,
    )


def test_browser_login_scalars_and_per_user_runs(browser, server: DashboardServer) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    base = server.url
    scalars = "/data/plugin/scalars/scalars?" + urllib.parse.urlencode(
        {"run": MNIST_RUN, "tag": "train/loss"}
    )

    # Refused without login: the page goes to the login form, the data API answers 401.
    d.delete_all_cookies()
    d.get(base + "/#timeseries")
    WebDriverWait(d, 30).until(lambda d: "/login" in d.current_url)
    assert d.find_element(By.ID, "password").get_attribute("type") == "password"
    d.get(base + scalars)  # the data API itself, opened directly
    assert "log in" in d.page_source and "[[" not in d.page_source

    # Log in as alice: TensorBoard's time-series page shows her run and its scalars card.
    _login(d, base, "alice")
    assert d.title == "TensorBoard"
    WebDriverWait(d, 60).until(lambda d: MNIST_RUN.split("/")[0] in d.page_source)
    WebDriverWait(d, 60).until(lambda d: "train/loss" in d.page_source)
    assert "robustai_session" not in d.execute_script("return document.cookie")  # HttpOnly
    status, body = _fetch(d, scalars)
    assert status == 200 and body.startswith("[[")
    status, body = _fetch(d, "/data/runs")
    assert status == 200 and MNIST_RUN in body and CIFAR_RUN not in body
    assert CIFAR_RUN.split("/")[0] not in d.page_source

    # bob has no grant for alice's run: the same pages never show it.
    _login(d, base, "bob")
    WebDriverWait(d, 60).until(lambda d: CIFAR_RUN.split("/")[0] in d.page_source)
    assert MNIST_RUN.split("/")[0] not in d.page_source
    status, body = _fetch(d, scalars)
    assert status != 200 and "[[" not in body
    status, body = _fetch(d, "/data/runs")
    assert status == 200 and MNIST_RUN not in body
