"""systemd notify protocol: READY=1 once every worker serves, RELOADING/READY around a reload,
STOPPING=1 on stop (a real cluster, a real datagram socket standing in for systemd)."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asynccluster.master import sdnotify

BASIC = "tests.apps.basic:app"


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20.0)  # the deadline for each expected message
    yield sock, path
    sock.close()


def receive_until(sock: socket.socket, field: str) -> list[str]:
    """Datagrams up to and including the one carrying ``field`` (bounded by the timeout)."""
    seen: list[str] = []
    while True:
        message = sock.recv(4096).decode()
        seen.append(message)
        if field in message.split("\n"):
            return seen


def test_cluster_tells_systemd_ready_reloading_and_stopping(
    cluster_factory: Any, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    cluster = cluster_factory(BASIC, "--workers", "2", "--no-access-log", env={"NOTIFY_SOCKET": path})
    first = receive_until(sock, "READY=1")
    assert "STATUS=serving with 2 workers" in first[-1]  # sent once both workers serve
    assert len(cluster.wait_ready()) == 2
    cluster.signal(signal.SIGHUP)
    assert "RELOADING=1" in receive_until(sock, "RELOADING=1")[-1]
    receive_until(sock, "READY=1")
    cluster.wait_for(r"reloaded 2/2 workers")
    cluster.signal(signal.SIGTERM)
    receive_until(sock, "STOPPING=1")
    assert cluster.wait_exit() == 0


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/path")  # not a socket address: ignored
    assert sdnotify.notify("READY=1") is False


def test_abstract_socket_address() -> None:
    assert sdnotify.notify_address({"NOTIFY_SOCKET": "@sd/notify"}) == "\0sd/notify"
    assert sdnotify.notify_address({"NOTIFY_SOCKET": "/run/notify"}) == "/run/notify"
