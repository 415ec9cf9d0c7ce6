"""A worker forked by the --preload helper, seen from the master (issue 16 item 3).

The helper (worker/forkhelper.py) forks the workers, so they are its children, not the
master's: :class:`ForkedProcess` watches one through a pidfd and takes its exit code from the
helper's report, or from waitpid once it is re-parented to the master (a child subreaper:
:func:`set_child_subreaper`). :func:`pickle_with_fds` sends a worker's arguments to the helper
with each socket replaced by a descriptor passed alongside. master/preload.py runs the helpers.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import pickle
import select
import socket
import sys
import time
from typing import Any

EXIT_UNKNOWN = 255  # a worker whose helper died: its exit status is lost (as for multiprocessing)
REPORT_GRACE = 1.0  # seconds a dead worker's exit code waits for the helper's report
PR_SET_CHILD_SUBREAPER = 36


class ForkedProcess:
    """A worker forked by a helper, shaped as SpawnedProcess uses a multiprocessing Process:
    ``pid``, ``sentinel`` (readable once it exited), ``exitcode`` (None until then), ``close()``.

    It is the helper's child, not ours, so its exit is seen through a pidfd (Linux >= 5.3,
    Python >= 3.9), not only through the helper's report (attack finding, issue 16): a hung
    (SIGSTOPped) helper reports nothing, and a worker killed meanwhile would stay "ready"
    forever and hold up the stop. Why a pidfd and not the worker's channel EOF: the EOF comes
    a hair before the exit (and a worker may close its end early), and the supervisor already
    tells EOF and exit apart. The exit code: the helper's report when it comes within
    REPORT_GRACE of the exit; ours by waitpid when the worker is our child by then (the helper
    died: the master is the subreaper); else EXIT_UNKNOWN. Without pidfds (another OS) the
    sentinel is a pipe of ours that the helper's report closes, as before.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._code: int | None = None
        self._exit_seen: float | None = None  # monotonic seconds: the pidfd said it exited
        self._pidfd = open_pidfd(pid)
        self._write = -1
        if self._pidfd >= 0:
            self.sentinel = self._pidfd
        else:
            self.sentinel, self._write = os.pipe()

    @property
    def watched(self) -> bool:
        """True when its exit is seen without the helper (a pidfd)."""
        return self._pidfd >= 0

    @property
    def exitcode(self) -> int | None:
        if self._code is not None or self._pidfd < 0 or not _readable(self._pidfd):
            return self._code
        with contextlib.suppress(ChildProcessError):  # not ours: the helper's report tells
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:  # re-parented to us (its helper died) and reaped
                self._code = os.waitstatus_to_exitcode(status)
                return self._code
        now = time.monotonic()
        if self._exit_seen is None:
            self._exit_seen = now
        elif now - self._exit_seen >= REPORT_GRACE:  # the helper does not answer (hung)
            self._code = EXIT_UNKNOWN
        return self._code

    def exited(self, code: int) -> None:
        """The helper's report (or, without a pidfd, its death: EXIT_UNKNOWN)."""
        if self._code is None:
            self._code = code
            if self._write >= 0:
                os.close(self._write)  # EOF: the sentinel is readable
                self._write = -1

    def close(self) -> None:
        for fd in (self.sentinel, self._write):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.sentinel = self._write = self._pidfd = -1


def open_pidfd(pid: int) -> int:
    """A pidfd for ``pid``, or -1 (not Linux >= 5.3, or already reaped by the helper: its
    report is then on its way). The helper reaps only after reporting the fork, and reports
    each exit, so the pid cannot have been reused before we read the "forked" message."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return -1
    try:
        return int(pidfd_open(pid))
    except OSError:
        return -1


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def set_child_subreaper() -> bool:
    """PR_SET_CHILD_SUBREAPER (Linux >= 3.4): a worker whose helper died is re-parented to the
    master, not to init, so it keeps serving (it watches the master, not its parent) and the
    master reaps it. False where unavailable (the worker then sees its parent change)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


class SocketPickler(pickle.Pickler):
    """Pickles WorkerArgs with each socket replaced by ``("fd", index)`` into :attr:`fds`
    (sent alongside with SCM_RIGHTS; worker/forkhelper.py's SocketUnpickler rebuilds them)."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.fds: list[int] = []
        self._index: dict[int, int] = {}

    def persistent_id(self, obj: Any) -> tuple[str, int] | None:
        if not isinstance(obj, socket.socket):
            return None
        if id(obj) not in self._index:
            self._index[id(obj)] = len(self.fds)
            self.fds.append(obj.fileno())
        return ("fd", self._index[id(obj)])


def pickle_with_fds(args: Any) -> tuple[bytes, list[int]]:
    buffer = io.BytesIO()
    pickler = SocketPickler(buffer)
    pickler.dump(args)
    return buffer.getvalue(), pickler.fds
