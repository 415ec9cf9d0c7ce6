"""Start real ``python -m asynccluster run`` clusters for integration tests (reusable).

    def test_something(cluster_factory):
        cluster = cluster_factory("tests.apps.basic:app", "--workers", "2")
        cluster.wait_ready()                       # every worker said ready (from the log)
        body = get_json(cluster.port, "/")         # a real HTTP request on 127.0.0.1
        cluster.signal(signal.SIGHUP)
        cluster.wait_for(r"reloaded 2/2 workers")  # a log line, with a deadline
        assert cluster.stop() == 0                 # SIGTERM, then the exit code

The cluster runs in its own session (process group), with ``--port 0``; its port is read
from the "listening on http://127.0.0.1:PORT" line. Master and worker output (one pipe)
is collected by a reader thread; ``wait_for`` waits on it with a deadline, never a sleep.
At teardown whatever is left of the group is killed (SIGKILL by process group).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
READY_LINE = re.compile(r"worker (\d+) \(pid (\d+), incarnation (\d+)\) ready")


class ClusterProcess:
    def __init__(
        self,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        # ``command`` replaces ``asynccluster run`` (tests/compat runs uvicorn the same way).
        command = [*(prefix or []), *(command or [sys.executable, "-m", "asynccluster", "run"]), *args]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.env.setdefault("ASYNCCLUSTER_CONTROL_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / "ac-tests"))
        self.proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown can kill everything
            text=True,
            errors="replace",
        )
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._port: int | None = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    # ------------------------------------------------------------ the log

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 20.0, *, start: int = 0) -> re.Match[str]:
        """The first log line (from index ``start``) matching ``pattern``; fails after ``timeout``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        index = start
        with self._changed:
            while True:
                while index < len(self.lines):
                    match = regex.search(self.lines[index])
                    if match:
                        return match
                    index += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no log line matching {pattern!r} within {timeout} s:\n{self.output_tail()}")
                self._changed.wait(min(remaining, 0.5))

    def count(self, pattern: str) -> int:
        regex = re.compile(pattern)
        with self._changed:
            return sum(1 for line in self.lines if regex.search(line))

    def mark(self) -> int:
        """The current end of the log, for ``wait_for(..., start=mark)``."""
        with self._changed:
            return len(self.lines)

    def output_tail(self, lines: int = 60) -> str:
        return "\n".join(self.lines[-lines:])

    # ------------------------------------------------------------ the cluster

    @property
    def port(self) -> int:
        if self._port is None:
            self._port = int(self.wait_for(r"listening on https?://127\.0\.0\.1:(\d+)").group(1))
        return self._port

    def wait_ready(self, timeout: float = 30.0) -> dict[int, int]:
        """Wait for "all N workers ready"; returns slot -> pid of the ready workers."""
        self.wait_for(r"all \d+ workers? ready", timeout)
        return self.ready_workers()

    def ready_workers(self) -> dict[int, int]:
        """slot -> pid of the latest incarnation that logged "ready"."""
        workers: dict[int, int] = {}
        with self._changed:
            for line in self.lines:
                match = READY_LINE.search(line)
                if match:
                    workers[int(match.group(1))] = int(match.group(2))
        return workers

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the master did not exit within {timeout} s:\n{self.output_tail()}") from None

    def stop(self, timeout: float = 30.0) -> int:
        """Graceful stop (SIGTERM); the master's exit code."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._reader.join(5)


@pytest.fixture
def cluster_factory() -> Iterator[Any]:
    """``cluster_factory(app, *args, env=None, prefix=None)`` starts a cluster on --port 0."""
    started: list[ClusterProcess] = []

    def start(app: str, *args: str, env: dict[str, str] | None = None, prefix: list[str] | None = None,
              port: str = "0") -> ClusterProcess:  # fmt: skip
        cluster = ClusterProcess([app, "--port", port, *args], env=env, prefix=prefix)
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.kill_group()


# ---------------------------------------------------------------- tiny HTTP helpers


def get(port: int, path: str = "/", *, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection; (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def get_json(port: int, path: str = "/", *, timeout: float = 10.0) -> dict[str, Any]:
    status, _, body = get(port, path, timeout=timeout)
    assert status == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


def default_sigint() -> None:
    """A ``preexec_fn`` (or a forked child's first call): SIGINT's default action in the child.

    A runner that starts the tests with SIGINT ignored (nohup-style wrappers, ``cmd &`` in a
    script, some CI runners) passes "ignored" through fork and exec, and Python then leaves it
    ignored: a test that stops a child with SIGINT (Ctrl-C) sets the disposition it needs (issue 10).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def process_gone(pid: int) -> bool:
    """Not running (absent, or a zombie waiting for a reaper that is not us)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
