"""The dashboard's Errors panel (issue 15) in a real headless Chromium against a real cluster.

Grouped app exceptions reach the master once a second and the page asks for them every 5 s
(``/api/errors``): the test waits for the rows with a deadline.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import Admin
from tests.integration.conftest import ClusterProcess, get
from tests.waiting import wait_until

pytestmark = pytest.mark.browser


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[Admin]:
    cluster = ClusterProcess(["tests.apps.diagnose_app:app", "--port", "0", "--admin", "127.0.0.1:0", "--name", "errs",
                              "--control-dir", str(tmp_path / "ctl"), "--no-access-log", "--workers", "2"])  # fmt: skip
    try:
        cluster.wait_ready()
        yield Admin(cluster)
    finally:
        cluster.kill_group()


def rows(driver: Any) -> list[list[str]]:
    script = (
        "return [...document.querySelectorAll('#errors tbody tr')].map(tr => [...tr.cells].map(td => td.innerText))"
    )
    found: list[list[str]] = driver.execute_script(script)
    return found


def test_errors_panel_shows_the_groups(admin: Admin, browser: Any) -> None:
    port = int(admin.cluster.wait_for(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
    for path in ("/fail/value?token=secret", "/fail/value", "/fail/key"):
        assert get(port, path)[0] == 500
    browser.get(admin.url)
    table = wait_until(lambda: (found := rows(browser)) and sum(int(r[0]) for r in found) == 3 and found, "the rows")
    assert [(r[0], r[1]) for r in table] == [("2", "ValueError"), ("1", "KeyError")]
    assert table[0][3].startswith("tests/apps/diagnose_app.py:") and table[0][4] == "GET /fail/value"
    browser.execute_script("document.querySelector('#errors tbody tr details').open = true")
    assert 'raise ValueError("bad value 42")' in rows(browser)[0][2]
    assert "secret" not in browser.page_source
