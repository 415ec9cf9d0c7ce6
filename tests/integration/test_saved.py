"""Survive a reboot (issue 11 item 4): ``save`` -> stop all -> ``resurrect`` brings the same apps
back, with the environment they were started in; ``resurrect --foreground`` is a Type=notify
service (READY=1 on a real notify socket, SIGHUP reloads every cluster, SIGTERM stops them);
``startup`` writes a unit that ``systemd-analyze verify`` accepts."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, get_json, process_gone
from tests.integration.test_background import Home, port_of
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux only")
DEADLINE = 60.0


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    place = Home(tmp_path)
    yield place
    place.kill_everything()


def start_two(home: Home) -> None:
    home.env["SAVED_SECRET"] = "from-the-start-shell"
    for argv in (
        ["tests.apps.envecho:app", "--name", "one"],
        ["tests.apps.basic:app", "--name", "two", "--workers", "2"],
    ):
        done = home.cli("start", *argv, "--port", "0")
        assert done.returncode == 0, done.stderr
    del home.env["SAVED_SECRET"]  # resurrect runs without it: the saved environment brings it back


def test_save_stop_all_resurrect(home: Home) -> None:
    start_two(home)
    done = home.cli("save")
    assert done.returncode == 0 and done.stdout.startswith("saved 2 clusters (one, two)"), done.stderr
    assert (home.state / "dump.json").stat().st_mode & 0o777 == 0o600
    masters = [home.status(name)["pid"] for name in ("one", "two")]
    assert home.cli("stop", "all").returncode == 0
    assert all(process_gone(pid) for pid in masters)

    done = home.cli("resurrect")
    assert done.returncode == 0, done.stderr
    assert sorted(line.split()[1] for line in done.stdout.splitlines()) == ["one", "two"]
    one, two = home.status("one"), home.status("two")
    assert get_json(port_of(one), "/?names=SAVED_SECRET")["SAVED_SECRET"] == "from-the-start-shell"
    assert two["totals"]["workers_ready"] == 2 and get_json(port_of(two))["worker_id"] in (0, 1)
    again = home.cli("resurrect")
    assert again.returncode == 0 and again.stdout.count("is already running") == 2


class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(DEADLINE)

    def wait(self, field: str) -> str:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            message = self.sock.recv(4096).decode()
            if field in message.split("\n"):
                return message
        raise AssertionError(f"no {field} from the service")


def test_resurrect_in_the_foreground_is_a_notify_service(home: Home, tmp_path: Path) -> None:
    start_two(home)
    assert home.cli("save").returncode == 0
    assert home.cli("stop", "all").returncode == 0
    notify = NotifySocket(tmp_path / "notify.sock")
    service = subprocess.Popen(
        [sys.executable, "-m", "asynccluster", "resurrect", "--foreground"], cwd=REPO,
        env={**home.env, "NOTIFY_SOCKET": str(notify.path)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert "STATUS=2 clusters running: one, two" in notify.wait("READY=1")
        before = {name: home.status(name) for name in ("one", "two")}
        workers_before = {w["pid"] for v in before.values() for w in v["workers"]}
        service.send_signal(signal.SIGHUP)  # systemctl reload
        notify.wait("RELOADING=1")

        def ready_pids() -> set[int]:
            return {w["pid"] for name in ("one", "two") for w in home.status(name)["workers"] if w["state"] == "ready"}

        def reloaded(pids: set[int]) -> bool:  # every cluster did its own rolling reload
            return len(pids) == 3 and not pids & workers_before

        wait_until(ready_pids, "three new ready workers", DEADLINE, done=reloaded)
        service.send_signal(signal.SIGTERM)  # systemctl stop (KillMode=mixed: the main process first)
        assert service.wait(DEADLINE) == 0
        assert all(process_gone(view["pid"]) for view in before.values())
    finally:
        if service.poll() is None:
            os.killpg(service.pid, signal.SIGKILL)
            service.wait(10)


def test_startup_writes_a_unit_systemd_accepts(home: Home, tmp_path: Path) -> None:
    printed = home.cli("startup")
    assert printed.returncode == 0, printed.stderr
    unit = printed.stdout
    for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "KillMode=mixed",
                 f"Environment=ASYNCCLUSTER_STATE_DIR={home.state}", "WantedBy=multi-user.target"):  # fmt: skip
        assert line in unit.splitlines(), line
    assert f"ExecStart={sys.executable} -m asynccluster resurrect --foreground" in unit
    path = tmp_path / "asynccluster-test.service"
    done = home.cli("startup", "--install", "--unit-file", str(path))
    assert done.returncode == 0 and path.read_text() == unit
    assert "systemctl daemon-reload" in done.stdout
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    verify = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and verify.stdout + verify.stderr == "", verify.stdout + verify.stderr


def test_resurrect_without_a_save_says_so(home: Home) -> None:
    done = home.cli("resurrect")
    assert done.returncode == 1 and "nothing saved yet" in done.stderr
    assert not (home.state / "dump.json").exists()
