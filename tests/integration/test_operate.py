"""What a person sees when operating a cluster (issue 11 item 7): ``reload`` and ``scale`` print
each worker started, ready and drained with the seconds, then a final line; ``describe`` shows
the settings with their origins, the paths, restarts and last exits. Real cluster, real CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REPO, ClusterProcess, get_json

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux only")


def cli(ctl: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "asynccluster", *argv, "--control-dir", str(ctl)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[ClusterProcess, Path]]:
    ctl = tmp_path / "ctl"
    running = ClusterProcess(
        ["tests.apps.basic:app", "--port", "0", "--name", "op", "--control-dir", str(ctl), "--reload-batch", "1"],
        env={"ASYNCCLUSTER_WORKERS": "2"},
    )
    running.wait_ready()
    yield running, ctl
    running.kill_group()


def test_reload_and_scale_report_each_worker_then_a_final_line(cluster: tuple[ClusterProcess, Path]) -> None:
    running, ctl = cluster
    before = running.ready_workers()
    done = cli(ctl, "reload", "op")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    ready = [
        re.search(r"^\[ *[\d.]+s\] worker (\d) \(pid (\d+), incarnation 2\) ready in [\d.]+ s$", line) for line in lines
    ]
    assert sorted(int(m.group(1)) for m in ready if m) == [0, 1]
    for slot, pid in before.items():  # the old pid drained, with its seconds
        drained = rf"worker {slot} \(pid {pid}, .*exited with exit code 0 after [\d.]+ s"
        assert any(re.search(drained, line) for line in lines)
    reloaded_line = r"reloaded 2/2 workers, 0 failures: new workers ready in [\d.]+ s, then the old ones drain"
    assert re.fullmatch(reloaded_line, lines[-1])

    done = cli(ctl, "scale", "op", "+1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(re.search(r"worker 2 \(pid \d+, incarnation 1\) ready in", line) for line in lines)
    assert lines[-1].startswith("scaled 2 -> 3 workers")
    assert json.loads(cli(ctl, "reload", "op", "--json").stdout)["ok"] is True  # --json: the result only


def test_describe_shows_origins_paths_restarts_and_exits(cluster: tuple[ClusterProcess, Path]) -> None:
    running, ctl = cluster
    assert cli(ctl, "restart", "op", "1").returncode == 0
    done = cli(ctl, "describe", "op", "--json")
    assert done.returncode == 0, done.stderr
    view: dict[str, Any] = json.loads(done.stdout)
    origins = {s["name"]: s["origin"] for s in view["settings"]}
    assert origins["workers"] == "env ASYNCCLUSTER_WORKERS" and origins["name"] == "cli"
    assert origins["backlog"] == "default"
    assert view["pid"] == running.pid and view["paths"]["control_socket"] == str(ctl / "op.sock")
    assert view["restarts"] == 1 and "exited with exit code 0" in view["last_exits"][-1]["text"]

    text = cli(ctl, "describe", "op").stdout
    assert f"control socket {ctl / 'op.sock'}" in text
    assert re.search(r"workers +2 +env ASYNCCLUSTER_WORKERS", text)
    assert "backlog" not in text and "backlog" in cli(ctl, "describe", "op", "--all").stdout
    assert all(len(line) <= 100 for line in text.splitlines())


def test_max_requests_50_recycles_at_50(cluster_factory: Any) -> None:
    """Issue 11 item 6 as the issue states it (the worker asks for its replacement itself)."""
    running = cluster_factory("tests.apps.basic:app", "--workers", "1", "--max-requests", "50", "--no-access-log")
    running.wait_ready()
    for _ in range(60):
        get_json(running.port)
        if running.count(r"recycling worker 0"):
            break
    line = running.wait_for(r"recycling worker 0 .*max-requests: served (\d+) requests", timeout=10)
    assert line.group(1) == "50"
    running.wait_for(r"replaced worker 0 .*recycle", timeout=20)
    assert running.stop() == 0
