"""PID 1 duties (issue 14): wait for the orphans the kernel hands to the init of a container.

Started in exec form without an init (``CMD ["asynccluster", "run", ...]``, no tini), the
master is PID 1 of its PID namespace. Whatever an app spawns and abandons (a subprocess
whose parent exited, a daemonised helper) is re-parented to PID 1 when it ends; nobody else
will ``wait()`` for it, so without us each one stays a zombie and holds a PID for good.

What we must not do is ``os.waitpid(-1)``: that can take the exit status of one of our own
workers from multiprocessing (its ``Process.exitcode`` would stay None, and the supervisor
would never see the exit). So we read our zombie children from /proc (state ``Z``, parent
us) and wait only for those we do not know: not a worker in the supervisor's table, not the
multiprocessing resource tracker. Each pid is waited for by number, never "any child".

When: on SIGCHLD (signals coalesce: one may stand for several exits) and, as a backstop for
a SIGCHLD that someone else's handler consumed, every ``SWEEP_INTERVAL`` seconds.
Signals need nothing here: PID 1 gets no default handlers, and the master installs its own
for TERM/INT/HUP/TTIN/TTOU/USR1 (signals.py) before any worker starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

logger = logging.getLogger("asynccluster.master")

SWEEP_INTERVAL = 5.0  # seconds between backstop sweeps
PR_GET_CHILD_SUBREAPER = 37
PROC = Path("/proc")

KnownPids = Callable[[], set[int]]


def is_init() -> bool:
    """True when this process is PID 1 of its PID namespace (a container's init)."""
    return os.getpid() == 1


def is_subreaper() -> bool:
    """True when this process is a child subreaper (Linux PR_GET_CHILD_SUBREAPER): --preload
    makes the master one (master/preload.py), so orphans below it are re-parented to it,
    as to an init, and are ours to wait for."""
    if not PROC.is_dir():
        return False
    try:
        import ctypes

        flag = ctypes.c_int(0)
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0 and flag.value != 0
    except (OSError, AttributeError):
        return False


def zombie_children(parent: int, proc: Path = PROC) -> Iterator[int]:
    """Pids of ``parent``'s children that are zombies (exited, not yet waited for).

    Reads ``/proc/PID/stat``: "pid (comm) state ppid ..."; comm may hold spaces and
    parentheses, so the fields are split after its last ')'. Processes that vanish while
    we read are skipped.
    """
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) >= 2 and fields[0] == "Z" and fields[1] == str(parent):
            yield int(entry.name)


def resource_tracker_pid() -> int | None:
    """The multiprocessing resource tracker's pid (a child of ours it waits for itself)."""
    from multiprocessing import resource_tracker

    pid = getattr(getattr(resource_tracker, "_resource_tracker", None), "_pid", None)
    return pid if isinstance(pid, int) else None


def reap_orphans(known: set[int], proc: Path = PROC) -> list[tuple[int, int]]:
    """Wait for every zombie child not in ``known``; [(pid, wait status)] of those reaped."""
    reaped = []
    for pid in zombie_children(os.getpid(), proc):
        if pid in known:
            continue
        with contextlib.suppress(ChildProcessError):  # someone else waited for it first
            waited, status = os.waitpid(pid, os.WNOHANG)
            if waited == pid:
                reaped.append((pid, status))
    return reaped


class Reaper:
    """Reaps orphaned zombies while the master runs as PID 1; ``known()`` gives our workers' pids."""

    def __init__(self, loop: asyncio.AbstractEventLoop, known: KnownPids, interval: float = SWEEP_INTERVAL) -> None:
        self.loop = loop
        self.known = known
        self.interval = interval
        self.reaped = 0
        self._timer: asyncio.TimerHandle | None = None
        self._on_sigchld = False

    def start(self) -> None:
        try:
            self.loop.add_signal_handler(signal.SIGCHLD, self.sweep)
            self._on_sigchld = True
        except (RuntimeError, ValueError, NotImplementedError) as exc:  # e.g. not the main thread
            logger.debug("PID 1: no SIGCHLD handler (%s); sweeping every %g s", exc, self.interval)
        self._schedule()
        if is_init():
            logger.info("running as PID 1: reaping orphaned processes (no init needed)")

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._on_sigchld:
            self.loop.remove_signal_handler(signal.SIGCHLD)
            self._on_sigchld = False

    def sweep(self) -> None:
        """Reap what is there now; never raises (a failing sweep must not stop the master)."""
        try:
            known = self.known()
            tracker = resource_tracker_pid()
            if tracker is not None:
                known.add(tracker)
            reaped = reap_orphans(known)
        except Exception:
            logger.exception("PID 1: reaping orphaned processes failed")
            return
        self.reaped += len(reaped)
        for pid, status in reaped:  # debug: an app that spawns orphans in a loop must not flood the log
            logger.debug("PID 1: reaped orphaned process %d (%s)", pid, describe_status(status))

    def _schedule(self) -> None:
        self._timer = self.loop.call_later(self.interval, self._tick)

    def _tick(self) -> None:
        self.sweep()
        self._schedule()


def describe_status(status: int) -> str:
    """ "exit code N" or "signal NAME" from a wait status."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            return f"signal {signal.Signals(signum).name}"
        except ValueError:
            return f"signal {signum}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def start_reaper(loop: asyncio.AbstractEventLoop, known: KnownPids) -> Reaper | None:
    """A running Reaper if this process is PID 1 or a child subreaper (Linux), else None:
    elsewhere the real init (or the shell, systemd, Kubernetes' pause container) waits for orphans."""
    if not (is_init() or is_subreaper()) or not PROC.is_dir():
        return None
    reaper = Reaper(loop, known)
    reaper.start()
    return reaper
