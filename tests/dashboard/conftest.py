"""Fixtures for the dashboard tests (issue 12): a real cluster with ``--admin``, a real browser.

The browser is Debian's ``chromium`` driven through ``chromium-driver`` by selenium (.ci/run
installs all three). Missing, the browser tests skip and say what to install; under CI
(``CI=true``) they fail instead, so a CI run cannot pass without really running them.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ClusterProcess

TOKEN = "dashboard-test-token-7f3a"
CHROMIUM = ("/usr/bin/chromium", "chromium", "chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver", "chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1400,1300",
)


def find(candidates: tuple[str, ...]) -> str | None:
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    return None


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if find(CHROMIUM) is None or find(CHROMEDRIVER) is None:
        return "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
    return None


class Admin:
    """A running cluster's admin endpoint: plain HTTP requests to it."""

    def __init__(self, cluster: ClusterProcess) -> None:
        match = cluster.wait_for(r"admin endpoint on http://127\.0\.0\.1:(\d+)/")
        self.cluster = cluster
        self.port = int(match.group(1))
        self.url = f"http://127.0.0.1:{self.port}/"

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                timeout: float = 30.0) -> tuple[int, Any]:  # fmt: skip
        """(status, parsed JSON or text)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            connection.request(method, path, body=data, headers=headers or {})
            response = connection.getresponse()
            raw = response.read().decode()
            try:
                return response.status, json.loads(raw)
            except ValueError:
                return response.status, raw
        finally:
            connection.close()

    def state(self) -> dict[str, Any]:
        status, body = self.request("GET", "/api/state")
        assert status == 200, body
        return dict(body)


@pytest.fixture
def start_cluster(tmp_path: Path) -> Iterator[Any]:
    """``start_cluster(*args)``: ``tests.apps.basic:app`` with ``--admin 127.0.0.1:0`` and a private
    control directory; returns its :class:`Admin` once every worker is ready."""
    started: list[ClusterProcess] = []
    control = tmp_path / "ctl"

    def start(*args: str, name: str = "dash") -> Admin:
        cluster = ClusterProcess(["tests.apps.basic:app", "--port", "0", "--admin", "127.0.0.1:0", "--name", name,
                                  "--control-dir", str(control), "--no-access-log", *args])  # fmt: skip
        started.append(cluster)
        cluster.wait_ready()
        return Admin(cluster)

    yield start
    for cluster in started:
        cluster.kill_group()


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium (selenium WebDriver), quit at teardown."""
    why = missing_browser()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests, but {why}")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(find(CHROMIUM))
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    # An explicit driver path: selenium's own manager would try to download one.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(find(CHROMEDRIVER))))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
