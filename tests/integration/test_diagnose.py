"""Diagnosing a live cluster (issue 15) against real clusters: the real CLI, real workers.

Each cluster runs tests/apps/diagnose_app.py (known faults: three failing routes, a slow
route, a leaking line, a CPU-bound function) with its own private --control-dir. Reports
reach the master in the workers' batches (once a second), so the tests poll the CLI with a
deadline, never a sleep.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import REPO, ClusterProcess, get
from tests.integration.test_control import admin_get
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="py-spy and /proc are Linux here")

APP = "tests.apps.diagnose_app:app"
APP_FILE = REPO / "tests" / "apps" / "diagnose_app.py"


def line_of(marker: str) -> int:
    for number, line in enumerate(APP_FILE.read_text().splitlines(), 1):
        if marker in line:
            return number
    raise AssertionError(marker)


def cli(control_dir: Path, *argv: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "asynccluster", argv[0], "--control-dir", str(control_dir), *argv[1:]]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)


def cli_json(control_dir: Path, *argv: str) -> dict[str, Any]:
    done = cli(control_dir, *argv, "--json")
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., ClusterProcess]]:
    started: list[ClusterProcess] = []

    def run(*args: str, app: str = APP, env: dict[str, str] | None = None) -> ClusterProcess:
        cluster = ClusterProcess([app, "--port", "0", "--name", "diag", "--control-dir", str(tmp_path), *args], env=env)
        started.append(cluster)
        cluster.wait_ready()
        return cluster

    yield run
    for cluster in started:
        cluster.kill_group()


class Load:
    """GET ``path`` in a loop on one thread until stopped (bounded: at most ``limit`` requests)."""

    def __init__(self, port: int, path: str, limit: int = 20_000) -> None:
        self.port, self.path, self.limit = port, path, limit
        self.done = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.done.is_set() and self.sent < self.limit:
            get(self.port, self.path)
            self.sent += 1

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(30)


def test_three_failing_routes_make_three_groups(start: Callable[..., ClusterProcess], tmp_path: Path) -> None:
    cluster = start("--workers", "2", "--admin", "127.0.0.1:0")
    for path, times in (("/fail/value?token=secret", 3), ("/fail/key", 2), ("/fail/json", 1)):
        for _ in range(times):
            assert get(cluster.port, path)[0] == 500

    def all_reported() -> dict[str, Any] | None:
        report = cli_json(tmp_path, "errors", "diag")
        return report if report["total"] == 6 else None

    report = wait_until(all_reported, "six errors reported")
    groups = {g["type"]: g for g in report["groups"]}
    assert {kind: g["count"] for kind, g in groups.items()} == {
        "ValueError": 3, "KeyError": 2, "json.decoder.JSONDecodeError": 1,
    }  # fmt: skip
    assert groups["ValueError"]["frame"] == f"tests/apps/diagnose_app.py:{line_of('bad value 42')}:fail"
    assert groups["json.decoder.JSONDecodeError"]["frame"].endswith(f":{line_of('json.loads(')}:fail")
    assert groups["ValueError"]["request"] == "GET /fail/value"  # the query (a token) is not kept
    assert "secret" not in json.dumps(report)
    assert 'raise ValueError("bad value 42")' in groups["ValueError"]["traceback"]
    assert set(groups["ValueError"]["workers"]) <= {0, 1}
    text = cli(tmp_path, "errors", "diag")
    assert text.returncode == 0 and "3x ValueError: bad value 42" in text.stdout
    # The same groups as a Prometheus counter, from the admin endpoint.
    view = cli_json(tmp_path, "status", "diag")
    status, body = admin_get(view, "/metrics")
    assert status == 200
    samples = {
        s.labels["type"]: s.value
        for family in text_string_to_metric_families(body) if family.name == "asynccluster_app_errors"
        for s in family.samples
    }  # fmt: skip
    assert samples == {"ValueError": 3, "KeyError": 2, "json.decoder.JSONDecodeError": 1}
    status, body = admin_get(view, "/api/errors")
    assert status == 200 and len(json.loads(body)["groups"]) == 3


def test_slow_route_is_logged_with_its_stack(start: Callable[..., ClusterProcess], tmp_path: Path) -> None:
    cluster = start("--workers", "1", "--slow-request-threshold", "200", "--slow-request-stacks")
    assert get(cluster.port, "/fast")[0] == 200
    assert get(cluster.port, "/slow?key=secret")[0] == 200
    cluster.wait_for(r"slow request: GET /slow -> 200 in \d+ ms \(threshold 200 ms\); stack while running:")
    cluster.wait_for(rf"diagnose_app.py:{line_of('await asyncio.sleep(0.4)')} in wait_for_upstream")
    report = wait_until(lambda: cli_json(tmp_path, "slow", "diag")["requests"], "the slow request reported")
    assert [entry["request"] for entry in report] == ["GET /slow"]  # /fast is not slow
    assert report[0]["ms"] >= 200
    assert any("wait_for_upstream" in frame for frame in report[0]["stack"])
    # A request that blocks the loop: its stack is sampled from a thread while it runs.
    assert get(cluster.port, "/spin?ms=1000")[0] == 200
    cluster.wait_for(r"slow request: GET /spin -> 200 in \d+ ms")
    cluster.wait_for(r"diagnose_app.py:\d+ in spin_in_known_function")


def test_leaking_line_tops_memory(start: Callable[..., ClusterProcess], tmp_path: Path) -> None:
    cluster = start("--workers", "1")
    with Load(cluster.port, "/leak"):
        done = cli(tmp_path, "memory", "diag", "--worker", "0", "--seconds", "2", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    leak = f"tests/apps/diagnose_app.py:{line_of('# LEAK-LINE')}"
    assert answer["top"][0]["where"] == leak, answer["top"][:3]
    assert answer["growth"][0]["where"] == leak, answer["growth"][:3]
    assert answer["growth"][0]["size_diff"] > 16384


@pytest.mark.parametrize("tool", ["py-spy", "sampler"])
def test_profile_names_the_busy_function(start: Callable[..., ClusterProcess], tmp_path: Path, tool: str) -> None:
    cluster = start("--workers", "1")
    out = tmp_path / "profile.svg"
    with Load(cluster.port, "/spin?ms=20"):
        done = cli(tmp_path, "profile", "diag", "--worker", "0", "--seconds", "2", "--out", str(out), "--tool", tool,
                   "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["tool"] == tool and answer["samples"] > 0
    assert answer["top"][0]["function"].startswith("spin_in_known_function ("), answer["top"][:3]
    svg = out.read_text()
    ElementTree.fromstring(svg)  # well-formed
    assert "spin_in_known_function" in svg


def test_profile_speedscope_output(start: Callable[..., ClusterProcess], tmp_path: Path) -> None:
    cluster = start("--workers", "1")
    out = tmp_path / "profile.json"
    with Load(cluster.port, "/spin?ms=20"):
        done = cli(tmp_path, "profile", "diag", "--worker", "0", "--seconds", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert re.search(r"wrote speedscope to .*profile\.json", done.stdout)
    document = json.loads(out.read_text())
    assert document["profiles"][0]["type"] == "sampled"
    assert any(f["name"].startswith("spin_in_known_function") for f in document["shared"]["frames"])


def test_refused_for_a_slot_that_does_not_exist(start: Callable[..., ClusterProcess], tmp_path: Path) -> None:
    start("--workers", "2")
    for argv in (("memory", "diag", "--worker", "7", "--seconds", "1"),
                 ("profile", "diag", "--worker", "7", "--seconds", "1", "--out", str(tmp_path / "p.svg"))):  # fmt: skip
        done = cli(tmp_path, *argv)
        assert done.returncode == 2, done
        assert "no worker in slot 7; the slots are: 0, 1" in done.stderr
    done = cli(tmp_path, "memory", "diag", "--worker", "7", "--seconds", "1", "--json")
    assert done.returncode == 2 and done.stdout == ""


def test_refused_for_a_draining_worker(start: Callable[..., ClusterProcess], tmp_path: Path) -> None:
    # Slot 1's worker, retired by a scale down, stays draining through a 20 s lifespan shutdown.
    start("--workers", "2", app="tests.apps.basic:app", env={"BASIC_SHUTDOWN_SECONDS": "20"})
    command = [sys.executable, "-m", "asynccluster", "scale", "diag", "1", "--control-dir", str(tmp_path)]
    scaling = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(
            lambda: any(
                w["slot"] == 1 and w["state"] == "draining" for w in cli_json(tmp_path, "status", "diag")["workers"]
            ),
            "slot 1 draining",
        )
        done = cli(tmp_path, "memory", "diag", "--worker", "1", "--seconds", "1")
        assert done.returncode == 1, done
        assert "is draining (scale down)" in done.stderr
        assert cli(tmp_path, "memory", "diag", "--worker", "0", "--seconds", "0.2").returncode == 0
    finally:
        scaling.kill()
        scaling.wait(10)
