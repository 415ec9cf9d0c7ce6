"""The dashboard in a real headless Chromium against a real cluster (issue 12, "How it is shown").

The page renders; its charts move while a bounded load runs; a reload pressed on the page
(with the token) shows new pids and a "reload done" event; a scale pressed on the page adds a
worker; the page's own requests without the token are refused (403). ``DASHBOARD_SCREENSHOT``
set to a path saves the page under load there (how docs/dashboard.png was made).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.dashboard.conftest import TOKEN, Admin
from tests.loadgen import LoadGenerator
from tests.waiting import wait_until

pytestmark = pytest.mark.browser

DEADLINE = 30.0


class BackgroundLoad:
    """The bounded load generator (tests/loadgen.py) on its own loop in a thread."""

    def __init__(self, port: int, *, duration: float = 25.0, max_requests: int = 60_000) -> None:
        self.loop = asyncio.new_event_loop()
        self.generator = LoadGenerator("127.0.0.1", port, keepalive=2, fresh=0, max_requests=max_requests,
                                       duration=duration)  # fmt: skip
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),), daemon=True)

    async def _run(self) -> None:
        await self.generator.run()

    def __enter__(self) -> BackgroundLoad:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.generator.stop)
        self.thread.join(DEADLINE)
        self.loop.close()


def js(driver: Any, script: str) -> Any:
    return driver.execute_script(script)


def open_page(driver: Any, admin: Admin, *, token: str | None = TOKEN) -> None:
    driver.get(admin.url + (f"#token={token}" if token else ""))
    wait_until(lambda: js(driver, "return window.dashboard && window.dashboard.connected"), "the stream to connect")


def table(driver: Any) -> list[dict[str, str]]:
    """The worker table as the page shows it: slot, pid and state of each row."""
    rows = js(driver, "return [...document.querySelectorAll('#workers tbody tr')].map(r => ({...r.dataset}))")
    return list(rows)


def ready_pids(driver: Any) -> set[str]:
    return {row["pid"] for row in table(driver) if row["state"] == "ready"}


def wait_ready_pids(driver: Any, count: int, *, not_in: frozenset[str] = frozenset()) -> set[str]:
    """The pids of ``count`` ready workers in the table, none of them in ``not_in``."""

    def check() -> set[str] | None:
        pids = ready_pids(driver)
        return pids if len(pids) == count and not pids & not_in else None

    found: set[str] = wait_until(check, f"{count} ready workers in the table")
    return found


def timeline(driver: Any) -> list[str]:
    return list(js(driver, "return [...document.querySelectorAll('#timeline li')].map(li => li.textContent)"))


@pytest.fixture
def admin(start_cluster: Any) -> Iterator[Admin]:
    yield start_cluster("--workers", "2", "--admin-token", TOKEN)


def test_page_renders_and_charts_move_under_load(browser: Any, admin: Admin) -> None:
    open_page(browser, admin)
    assert "dashboard" in browser.title
    wait_ready_pids(browser, 2)
    wait_until(lambda: any(li.startswith(tuple("0123456789")) and "ready" in li for li in timeline(browser)),
               "ready events in the timeline")  # fmt: skip
    before = js(browser, "return document.getElementById('chart-rps').toDataURL()")
    with BackgroundLoad(admin.cluster.port) as load:
        wait_until(
            lambda: js(browser, "return window.dashboard.history.some(p => p.rps > 0)"), "a point with req/s > 0"
        )
        wait_until(lambda: float(js(browser, "return document.getElementById('chart-rps').dataset.max")) > 0,
                   "the req/s chart to draw a rate")  # fmt: skip
        wait_until(lambda: js(browser, "return window.dashboard.history.some(p => p.p99 !== null)"), "latency p99")
        frames = js(browser, "return window.dashboard.frames")
        wait_until(lambda: js(browser, "return window.dashboard.frames") >= frames + 2, "two more frames")
        after = js(browser, "return document.getElementById('chart-rps').toDataURL()")
        assert after != before, "the req/s chart did not change under load"
        cells = js(browser, "return [...document.querySelectorAll('#workers tbody tr td:nth-child(5)')]"
                   ".map(td => td.textContent)")  # fmt: skip
        assert any(cell not in ("\u2013", "0.0") for cell in cells), cells  # an en dash: no value
        if os.environ.get("DASHBOARD_SCREENSHOT"):
            browser.save_screenshot(os.environ["DASHBOARD_SCREENSHOT"])
    assert load.generator.result.failed == 0, load.generator.result.examples


def test_reload_pressed_on_the_page_shows_new_pids_and_reload_done(browser: Any, admin: Admin) -> None:
    open_page(browser, admin)
    old = wait_ready_pids(browser, 2)
    browser.find_element("id", "reload").click()
    wait_until(lambda: any("reload done" in line for line in timeline(browser)), "a 'reload done' event")
    new = wait_ready_pids(browser, 2, not_in=frozenset(old))
    assert new.isdisjoint(old)
    assert js(browser, "return document.getElementById('action-result').textContent").startswith("200")


def test_scale_pressed_on_the_page_adds_a_worker(browser: Any, admin: Admin) -> None:
    open_page(browser, admin)
    wait_ready_pids(browser, 2)
    browser.find_element("id", "scale-up").click()
    wait_until(lambda: len({row["slot"] for row in table(browser) if row["state"] == "ready"}) == 3,
               "a third ready worker in the table")  # fmt: skip
    wait_until(lambda: any("scaled 2 -> 3 workers" in line for line in timeline(browser)), "a scale event")
    assert len(admin.request("GET", "/status")[1]["workers"]) == 3


def test_actions_without_the_token_are_refused(browser: Any, admin: Admin) -> None:
    open_page(browser, admin, token=None)
    js(browser, "sessionStorage.clear(); document.getElementById('token').value = ''")
    pids = wait_ready_pids(browser, 2)
    browser.find_element("id", "reload").click()
    wait_until(lambda: js(browser, "return document.getElementById('action-result').textContent").startswith("403"),
               "the page to show 403")  # fmt: skip
    # The same request straight from the page's origin, then with a wrong token.
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/scale', {method: 'POST', body: '{\"count\": \"+1\"}'}).then(r => done(r.status));"
    )
    assert status == 403
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/reload', {method: 'POST', headers: {'X-Asynccluster-Token': 'wrong'}}).then(r => done(r.status));"
    )
    assert status == 403
    assert ready_pids(browser) == pids and len(admin.request("GET", "/status")[1]["workers"]) == 2
    assert not any("reload started" in line for line in timeline(browser))
