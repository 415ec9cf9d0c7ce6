"""WorkerHandle: what the master knows about one worker incarnation, and the spawner API.

A *slot* (0..N-1) is a stable position in the cluster with its own listening socket; each
process that serves it is one *incarnation*. The supervisor holds handles; the spawner
turns a :class:`SpawnRequest` into a running process and reports back through
:class:`WorkerEvents` (the real one in spawner.py, a fake one in tests/master/).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from asynccluster.config import Config
from asynccluster.contracts.messages import MasterMessage, WorkerMessage
from asynccluster.contracts.states import WorkerState


@dataclass(frozen=True)
class SpawnRequest:
    config: Config
    slot: int
    incarnation: int
    sock: socket.socket | None  # None only with fake spawners
    heartbeat_interval: float = 1.0  # Timing.heartbeat_interval: the worker sends at this pace
    shutdown_budget: float = 30.0  # policy.shutdown_budget: lifespan shutdown after the drain
    max_requests: int = 0  # this incarnation's --max-requests with jitter: the worker asks at exactly N


class WorkerProcess(Protocol):
    """A started worker process, as the spawner gives it to the supervisor."""

    pid: int

    def send(self, message: MasterMessage) -> bool: ...

    def signal(self, signum: int) -> None: ...

    def close(self) -> None: ...


class WorkerEvents(Protocol):
    """What a spawner reports about the processes it started (all on the master's loop)."""

    def on_message(self, handle: WorkerHandle, message: WorkerMessage) -> None: ...

    def on_disconnect(self, handle: WorkerHandle) -> None: ...

    def on_exit(self, handle: WorkerHandle, exitcode: int) -> None: ...

    def on_stacks(self, handle: WorkerHandle, text: str) -> None: ...


class Spawner(Protocol):
    def spawn(self, request: SpawnRequest, handle: WorkerHandle, events: WorkerEvents) -> WorkerProcess: ...


def describe_exit(exitcode: int | None) -> str:
    """'exit code 3' or 'signal SIGKILL' (multiprocessing gives -signum for a signal)."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


@dataclass(eq=False)
class WorkerHandle:
    """One incarnation of one slot."""

    slot: int
    incarnation: int
    started_at: float  # monotonic
    started_wall: float = field(default_factory=time.time)
    pid: int = 0
    state: WorkerState = WorkerState.STARTING
    process: WorkerProcess | None = None
    ready_at: float | None = None
    last_heartbeat_at: float | None = None
    heartbeat: dict[str, Any] = field(default_factory=dict)  # the last Heartbeat's payload()
    reason: str = ""  # the last reason the worker gave (its ``stopping`` message)
    # What a starting worker is doing ("importing the app", "lifespan startup"), so that a
    # --ready-timeout says where it got stuck (its ``online`` and ``phase`` messages).
    phase: str = ""
    exitcode: int | None = None
    exit_detail: str = ""
    # Why the master retires it (reload, recycle: max-requests, scale down...); "" if it is not.
    retire_reason: str = ""
    killed: bool = False  # the master had to SIGKILL it
    # Connections its drain had to close at the graceful timeout (its last ``stopping``
    # message): streams that outlived the drain are closed and counted (issue 4).
    forced_connections: int = 0
    hung: bool = False  # replaced because its heartbeat was late
    last_stacks_at: float = float("-inf")  # when stack text last arrived (one header per dump)
    # Per-incarnation recycle thresholds (jitter drawn once, at spawn).
    max_requests: int = 0
    max_lifetime: float = 0.0
    # Resolved when the worker is ready (True) or exits/fails before ready (False).
    ready_future: asyncio.Future[bool] | None = None
    exited_future: asyncio.Future[int] | None = None
    watchdog: asyncio.TimerHandle | None = None

    @property
    def name(self) -> str:
        return f"worker {self.slot} (pid {self.pid}, incarnation {self.incarnation})"

    @property
    def alive(self) -> bool:
        return self.exitcode is None

    def uptime(self, now: float) -> float:
        return now - self.started_at

    def send(self, message: MasterMessage) -> bool:
        return self.process.send(message) if self.process is not None and self.alive else False

    def signal(self, signum: int) -> None:
        if self.process is not None and self.alive:
            self.process.signal(signum)

    def kill(self) -> None:
        """SIGKILL, noted in ``killed`` (a stop that had to kill exits FORCED): the one kill path
        (the watchdog's, the stop deadline's, a forced stop's)."""
        if self.alive:
            self.killed = True
            self.signal(signal.SIGKILL)

    def cancel_watchdog(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None

    def exit_summary(self, now: float) -> str:
        """One line for the log: who, how it ended, after how long, and why (issue 3)."""
        why = self.retire_reason or ("hung" if self.hung else "")
        said = self.reason.splitlines()[0] if self.reason else ""
        last = f"; last reason: {said}" if said and said != why else ""
        retired = f" (retired: {why})" if why else ""
        forced = f"; {self.forced_note()}" if self.forced_connections else ""
        return f"{self.name} exited with {self.exit_detail} after {self.uptime(now):.1f} s{retired}{forced}{last}"

    def forced_note(self) -> str:
        count = self.forced_connections
        return f"{count} connection{'' if count == 1 else 's'} force-closed after the graceful timeout"

    def info(self) -> WorkerInfo:
        return WorkerInfo(
            slot=self.slot,
            pid=self.pid,
            incarnation=self.incarnation,
            exitcode=self.exitcode if self.exitcode is None or self.exitcode >= 0 else None,
            signal=describe_exit(self.exitcode).removeprefix("signal ") if (self.exitcode or 0) < 0 else None,
            reason=self.reason or self.retire_reason,
        )


@dataclass(frozen=True)
class WorkerInfo:
    """What event callbacks get (Node's cluster passes the Worker; we pass the facts)."""

    slot: int
    pid: int
    incarnation: int
    exitcode: int | None
    signal: str | None  # "SIGKILL" when killed by a signal
    reason: str
