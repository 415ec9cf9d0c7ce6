"""Logs are always there (issue 11 item 1), against real clusters started with no log settings.

The app (tests/apps/chatty.py) prints, logs a warning, raises with a traceback, and kills its
worker with a segmentation fault; ``asynccluster logs`` (the real CLI) must show all of it,
tagged, filtered by worker and level. With ``--log-file`` and a small ``--log-max-size`` the
master rotates the file and no line is lost or split across the rotations.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REPO, get
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux only")
APP = "tests.apps.chatty:app"


def logs(control_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "asynccluster", "logs", *argv, "--control-dir", str(control_dir)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


def test_prints_warnings_tracebacks_and_crashes_are_in_logs(cluster_factory: Any, tmp_path: Path) -> None:
    ctl = tmp_path / "ctl"
    cluster = cluster_factory(APP, "--workers", "2", "--name", "chat", "--control-dir", str(ctl))
    workers = cluster.wait_ready()
    marker = f"m{time.monotonic_ns()}"
    assert get(cluster.port, f"/print?text={marker}")[0] == 200
    assert get(cluster.port, f"/warn?text={marker}")[0] == 200
    assert get(cluster.port, f"/crash?text={marker}")[0] == 500
    # The terminal still gets the worker's lines, as before (Docker and systemd read it).
    cluster.wait_for(f"app says {marker}")

    def everything() -> str:
        done = logs(ctl, "chat", "--lines", "500")
        assert done.returncode == 0, done.stderr
        text = done.stdout
        return text if f"crashed on purpose {marker}" in text and f"app warns {marker}" in text else ""

    text = wait_until(everything, "the print, the warning and the traceback in 'logs'")
    assert re.search(rf"OUT +\[worker \d pid \d+\] app says {marker} from pid \d+", text)
    assert "Traceback (most recent call last):" in text

    errors = logs(ctl, "chat", "--err", "--lines", "500").stdout
    assert f"app warns {marker}" in errors and f"crashed on purpose {marker}" in errors
    assert f"app says {marker}" not in errors and '"GET /print' not in errors

    # A worker dies (SIGSEGV): faulthandler's report and the exit are kept under its slot.
    with pytest.raises((OSError, http.client.HTTPException)):  # the connection dies with the worker
        get(cluster.port, "/die")
    match = cluster.wait_for(r"worker (\d) \(pid (\d+).*(exited|killed|signal)")
    slot, pid = int(match.group(1)), int(match.group(2))
    assert workers[slot] == pid

    def crash_lines() -> list[dict[str, Any]]:
        done = logs(ctl, "chat", "--worker", str(slot), "--json", "--lines", "200")
        items = [json.loads(line) for line in done.stdout.splitlines()]
        return items if any("Segmentation fault" in item["text"] for item in items) else []

    items = wait_until(crash_lines, "the crash report in 'logs --worker'")
    assert {item["slot"] for item in items} == {slot} and {item["cluster"] for item in items} == {"chat"}
    assert any(item["pid"] == pid and item["level"] in ("error", "critical") for item in items)
    assert cluster.stop() == 0


def test_a_rotated_log_file_loses_no_line(cluster_factory: Any, tmp_path: Path) -> None:
    log_file = tmp_path / "cluster.log"
    cluster = cluster_factory(
        APP, "--workers", "2", "--control-dir", str(tmp_path / "ctl"), "--log-file", str(log_file),
        "--log-max-size", "4K", "--log-backups", "200",
    )  # fmt: skip
    cluster.wait_ready()
    count = 150
    for n in range(count):
        assert get(cluster.port, f"/print?text=n{n:04d}x")[0] == 200
    assert cluster.stop() == 0
    files = sorted(log_file.parent.glob("cluster.log*"))
    assert len(files) > 3  # it rotated
    assert all(path.stat().st_size <= 4096 for path in files)
    text = "".join(path.read_text() for path in files)
    for n in range(count):
        assert len(re.findall(rf"app says n{n:04d}x from pid \d+\n", text)) == 1, n
        assert len(re.findall(rf'"GET /print\?text=n{n:04d}x HTTP/1.1" 200', text)) == 1, n
    assert "listening on" in text and "stopped (exit code 0" in text
