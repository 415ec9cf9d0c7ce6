"""--reload (issue 11 item 5): a real 2-worker cluster watching a real directory, under a bounded
load; three edits (one of them a syntax error) cause no failed request, the good ones are served
after their rolling reload, the broken one is reported once and the old workers keep serving."""

from __future__ import annotations

import http.client
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import wait_until

pytest.importorskip("watchfiles")

MAX_REQUESTS = 50_000  # the load is bounded in count and in time
PACE = 0.002  # seconds between two requests: a steady load that leaves the 2 cores to the cluster
MAX_SECONDS = 90.0


def write_app(directory: Path, body: str) -> None:
    """Replace the module atomically, as editors that save by rename do."""
    temporary = directory / ".reloadapp.py.tmp"
    temporary.write_text(body)
    os.replace(temporary, directory / "reloadapp.py")


def app_source(version: str) -> str:
    return (
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        f"    await send({{'type': 'http.response.body', 'body': b'{version}'}})\n"
    )


class Load:
    """Requests on fresh connections, one after another, until stopped (or the bounds)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: Counter[str] = Counter()
        self.failures: list[str] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        for _ in range(MAX_REQUESTS):
            if self.stopped.is_set() or time.monotonic() > deadline:
                return
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                body = response.read().decode()
                if response.status != 200:
                    self.failures.append(f"status {response.status}")
                self.seen[body] += 1
            except OSError as exc:
                self.failures.append(repr(exc))
            finally:
                connection.close()
            time.sleep(PACE)  # the load's rate, not a synchronisation

    def wait_for(self, version: str, timeout: float = 60.0, *, at_least: int = 1) -> None:
        """Until ``at_least`` responses carried ``version``; fails naming the versions seen so far."""

        def seen() -> dict[str, int]:
            assert self.thread.is_alive(), "the load ended"
            return dict(self.seen)

        wait_until(seen, f"{version!r} to be served", timeout, done=lambda counts: counts.get(version, 0) >= at_least)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(30)


def test_reload_on_change_with_two_workers_under_load(cluster_factory: Any, tmp_path: Path) -> None:
    write_app(tmp_path, app_source("v-one"))
    cluster = cluster_factory(
        "reloadapp:app", "--workers", "2", "--app-dir", str(tmp_path), "--reload", "--reload-dir", str(tmp_path),
        "--reload-delay", "0.1", "--control-dir", str(tmp_path / "ctl"),
    )  # fmt: skip
    cluster.wait_ready()
    cluster.wait_for(r"--reload: watching")
    load = Load(cluster.port)
    try:
        load.wait_for("v-one")
        mark = cluster.mark()
        write_app(tmp_path, app_source("v-two-2"))
        cluster.wait_for(r"reloadapp\.py changed: rolling reload", start=mark)
        cluster.wait_for(r"reloaded 2/2 workers", start=mark)  # every worker serves the new code
        load.wait_for("v-two-2")

        mark = cluster.mark()
        write_app(tmp_path, app_source("v-broken") + "    this is not python(\n")
        cluster.wait_for(r"--reload: not reloading, the code does not compile: .*reloadapp\.py:6", start=mark)
        served = load.seen["v-two-2"]  # the old workers keep serving the last good code
        load.wait_for("v-two-2", 30, at_least=served + 20)

        mark = cluster.mark()
        write_app(tmp_path, app_source("v-three-33"))
        cluster.wait_for(r"reloadapp\.py changed: rolling reload", start=mark)
        cluster.wait_for(r"reloaded 2/2 workers", start=mark)
        load.wait_for("v-three-33")
    finally:
        load.stop()
    assert load.failures == []
    assert set(load.seen) == {"v-one", "v-two-2", "v-three-33"}
    assert cluster.count(r"the code does not compile") == 1
    assert cluster.stop() == 0
