"""A fake spawner for the supervisor's unit tests: no processes, every event scripted.

A :class:`FakeProcess` behaves like a well-behaved worker unless told otherwise: ``stop``
makes it exit 0, SIGTERM / SIGKILL end it, SIGUSR2 sends a stack dump. Every step is
recorded in the shared ``journal`` so tests can check the order of events.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from asynccluster.contracts.messages import Heartbeat, MasterMessage, Ready, Stop, Stopping
from asynccluster.master.process import SpawnRequest, WorkerEvents, WorkerHandle

_pids = itertools.count(1000)


@dataclass
class FakeProcess:
    spawner: FakeSpawner
    handle: WorkerHandle
    events: WorkerEvents
    request: SpawnRequest
    pid: int = field(default_factory=lambda: next(_pids))
    sent: list[MasterMessage] = field(default_factory=list)
    signals: list[int] = field(default_factory=list)
    exited: bool = False
    obey_stop: bool = True  # exit 0 when told to stop

    @property
    def slot(self) -> int:
        return self.request.slot

    # -- what the supervisor calls

    def send(self, message: MasterMessage) -> bool:
        if self.exited:
            return False
        self.sent.append(message)
        self.spawner.record((message.kind, self.slot, self.pid))
        if isinstance(message, Stop) and self.obey_stop:
            self.later(self.exit, 0)
        return True

    def signal(self, signum: int) -> None:
        if self.exited:
            return
        self.signals.append(signum)
        self.spawner.record((signal.Signals(signum).name, self.slot, self.pid))
        if signum == signal.SIGKILL:
            self.later(self.exit, -signal.SIGKILL)
        elif signum == signal.SIGTERM and self.obey_stop:
            self.later(self.exit, 0)
        elif signum == signal.SIGUSR2:
            self.later(self.events.on_stacks, self.handle, 'File "app.py", line 7 in spin_forever\n')

    def close(self) -> None:
        pass

    # -- what a test makes the "worker" do

    def later(self, callback: Callable[..., Any], *args: Any) -> None:
        asyncio.get_running_loop().call_soon(callback, *args)

    def ready(self) -> None:
        self.spawner.record(("ready", self.slot, self.pid))
        self.events.on_message(self.handle, Ready(pid=self.pid))
        self.spawner.changed()

    def heartbeat(self, **fields: Any) -> None:
        """A Heartbeat with ``fields`` over zeros (``stats={"requests": 10}``, ``rss=...``)."""
        beat: dict[str, Any] = {"stats": {}, "loop_lag": 0.0, "rss": 0, "cpu": 0.0, "time": 0.0, **fields}
        self.events.on_message(self.handle, Heartbeat(**beat))

    def stopping(self, reason: str) -> None:
        self.events.on_message(self.handle, Stopping(reason))

    def exit(self, code: int) -> None:
        if self.exited:
            return
        self.exited = True
        self.spawner.record(("exit", self.slot, self.pid))
        self.events.on_exit(self.handle, code)


class FakeSpawner:
    """Spawns FakeProcesses; ``on_spawn`` scripts what each new one does (default: ready)."""

    def __init__(self, on_spawn: Callable[[FakeProcess], None] | None = None) -> None:
        self.processes: list[FakeProcess] = []
        self.journal: list[tuple[str, int, int]] = []
        self.on_spawn: Callable[[FakeProcess], None] = on_spawn or (lambda process: process.later(process.ready))
        self._changed = asyncio.Event()

    def spawn(self, request: SpawnRequest, handle: WorkerHandle, events: WorkerEvents) -> FakeProcess:
        process = FakeProcess(self, handle, events, request)
        self.processes.append(process)
        self.record(("spawn", request.slot, process.pid))
        self.on_spawn(process)
        return process

    def record(self, entry: tuple[str, int, int]) -> None:
        self.journal.append(entry)
        self.changed()

    def changed(self) -> None:
        self._changed.set()

    def live(self, slot: int | None = None) -> list[FakeProcess]:
        return [p for p in self.processes if not p.exited and (slot is None or p.slot == slot)]

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait (event-driven, with a deadline) until ``predicate()`` holds; re-checked after
        every recorded step (spawn, message, signal, exit)."""

        async def wait() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)


def ready_by_default(process: FakeProcess) -> None:
    process.later(process.ready)


def fail_with(code: int, reason: str) -> Callable[[FakeProcess], None]:
    def script(process: FakeProcess) -> None:
        process.later(process.stopping, reason)
        process.later(process.exit, code)

    return script
