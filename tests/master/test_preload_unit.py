"""--preload's pieces without a cluster: sockets through the pickle and SCM_RIGHTS, the sentinel.

master/forked.py pickles a worker's arguments with each socket replaced by an index into
the descriptors sent alongside; worker/forkhelper.py rebuilds them. A rebuilt socket must be
the same file description (the slot's listening socket, not a copy).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import select
import signal
import socket
import subprocess
import sys

import pytest

from asynccluster.master import forked
from asynccluster.master.forked import ForkedProcess, pickle_with_fds
from asynccluster.worker.forkhelper import SocketUnpickler


@dataclasses.dataclass(frozen=True)
class Args:
    name: str
    listen: socket.socket
    pair: tuple[socket.socket, socket.socket]
    again: socket.socket  # the same object as ``listen``: one descriptor, one socket


def test_sockets_cross_as_descriptors_and_come_back_as_the_same_sockets() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    left, right = socket.socketpair()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    rebuilt: Args | None = None
    try:
        payload, fds = pickle_with_fds(Args("w", listener, (left, right), listener))
        assert len(fds) == 3
        socket.send_fds(ours, [payload], fds)
        data, received, _, _ = socket.recv_fds(theirs, 1 << 16, 8)
        rebuilt = SocketUnpickler(io.BytesIO(data), received).load()
        assert rebuilt.name == "w"
        assert rebuilt.listen is rebuilt.again
        assert rebuilt.listen.fileno() != listener.fileno()
        assert rebuilt.listen.getsockname() == listener.getsockname()  # the same listening socket
        rebuilt.pair[0].sendall(b"ping")
        assert right.recv(4) == b"ping"  # the rebuilt end is the original pair's end
    finally:
        for sock in (listener, left, right, ours, theirs):
            sock.close()
        if rebuilt is not None:
            for sock in (rebuilt.listen, *rebuilt.pair):
                sock.close()


def child() -> subprocess.Popen[bytes]:
    """A process that runs until killed (stands for a forked worker)."""
    return subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)


def test_a_forked_process_exit_code_is_the_helpers_report_once() -> None:
    worker = child()
    process = ForkedProcess(pid=worker.pid)
    try:
        assert select.select([process.sentinel], [], [], 0)[0] == []
        assert process.exitcode is None
        process.exited(-9)
        process.exited(0)  # a second report (the helper died after reporting) changes nothing
        assert process.exitcode == -9
    finally:
        process.close()
        worker.kill()
        worker.wait()


def test_a_forked_process_exit_is_seen_without_the_helper() -> None:
    """Attack finding (issue 16): a hung helper reports nothing. The pidfd turns readable at
    the exit, and a worker re-parented to us (the helper died) is reaped for its real code."""
    worker = child()
    process = ForkedProcess(pid=worker.pid)
    try:
        assert process.watched  # Linux >= 5.3 (CI): a pidfd
        worker.kill()  # no report
        assert select.select([process.sentinel], [], [], 10)[0] == [process.sentinel]
        assert process.exitcode == -signal.SIGKILL
    finally:
        process.close()
        with contextlib.suppress(ChildProcessError):
            worker.wait()


def test_without_pidfds_the_sentinel_is_the_helpers_report(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forked, "open_pidfd", lambda pid: -1)
    process = ForkedProcess(pid=os.getpid())
    try:
        assert not process.watched
        assert select.select([process.sentinel], [], [], 0)[0] == []
        assert process.exitcode is None
        process.exited(3)
        assert select.select([process.sentinel], [], [], 0)[0] == [process.sentinel]
        assert process.exitcode == 3
    finally:
        process.close()
