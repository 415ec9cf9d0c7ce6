"""``status`` and ``top`` as a person sees them (issue 11 item 7), in real tmux terminals of
80x24 and 160x48 against a real cluster: the screen is read with ``capture-pane`` and the
columns each size must show are checked, and that no line is wider than the terminal.

tmux runs on a private server (``-L``), killed at the end; .ci/run installs tmux.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from asynccluster.observe.format import STATUS_HEADERS
from asynccluster.observe.top import TOP_HEADERS
from tests.integration.conftest import REPO, ClusterProcess, get
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")
DEADLINE = 20.0


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ClusterProcess, Path]]:
    ctl = tmp_path_factory.mktemp("views") / "ctl"
    cluster = ClusterProcess(["tests.apps.basic:app", "--port", "0", "--workers", "3", "--name", "views",
                              "--control-dir", str(ctl)])  # fmt: skip
    cluster.wait_ready()
    for _ in range(5):
        get(cluster.port, "/")
    yield cluster, ctl
    cluster.kill_group()


class Tmux:
    """One private tmux server; :meth:`screen` is what its only pane shows."""

    def __init__(self, columns: int, lines: int, command: str) -> None:
        self.server = f"asynccluster-test-{os.getpid()}-{columns}x{lines}-{time.monotonic_ns()}"
        self.tmux("new-session", "-d", "-x", str(columns), "-y", str(lines), "-c", str(REPO), command)

    def tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.server, "-f", "/dev/null", *args],
                              capture_output=True, text=True, timeout=10, check=True)  # fmt: skip
        return done.stdout

    def screen(self) -> list[str]:
        return self.tmux("capture-pane", "-p").splitlines()

    def wait_screen(self, done: Callable[[list[str]], bool], what: str) -> list[str]:
        return wait_until(self.screen, f"tmux to show {what}", DEADLINE, done=done, interval=0.1)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.server, "kill-server"], capture_output=True, timeout=10, check=False)


def cli(ctl: Path, *argv: str) -> str:
    env = f"PYTHONPATH={REPO}"
    return f"env {env} {sys.executable} -m asynccluster {' '.join(argv)} --control-dir {ctl}"


@pytest.mark.parametrize(("columns", "lines"), [(80, 24), (160, 48)])
def test_status_fits_the_terminal(web: tuple[ClusterProcess, Path], columns: int, lines: int) -> None:
    _, ctl = web
    terminal = Tmux(columns, lines, f"sh -c '{cli(ctl, 'status', 'views')}; echo STATUS-DONE; sleep 60'")
    try:
        screen = terminal.wait_screen(lambda s: any("STATUS-DONE" in line for line in s), "the status")
    finally:
        terminal.close()
    header = next(line for line in screen if line.startswith("SLOT"))
    rows = [line for line in screen if line.strip()[:1].isdigit() and "ready" in line]
    assert len(rows) == 3
    assert all(len(line) <= columns for line in screen)
    must = ["SLOT", "PID", "STATE", "LAST EXIT", "REQ/S"] if columns < 100 else list(STATUS_HEADERS)
    assert all(name in header for name in must), header


@pytest.mark.parametrize(("columns", "lines"), [(80, 24), (160, 48)])
def test_top_adapts_to_the_terminal(web: tuple[ClusterProcess, Path], columns: int, lines: int) -> None:
    _, ctl = web
    terminal = Tmux(columns, lines, cli(ctl, "top", "views", "--interval", "0.3"))
    try:
        screen = terminal.wait_screen(
            lambda s: any(line.startswith("q or Ctrl-C") for line in s) and any("SLOT" in line for line in s),
            "a frame of top",
        )
        terminal.tmux("send-keys", "q")
    finally:
        terminal.close()
    header = next(line for line in screen if line.startswith("SLOT"))
    assert all(len(line) <= columns for line in screen) and len(screen) <= lines
    must = ["SLOT", "PID", "STATE", "REQ/S", "P99"] if columns < 100 else list(TOP_HEADERS)
    assert all(name in header for name in must), header
    assert sum(1 for line in screen if "ready" in line) == 3
