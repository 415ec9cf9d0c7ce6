"""Readiness and liveness deadlines, one timer per worker (DESIGN.md §3).

- A new worker must say ``ready`` within --ready-timeout.
- A ready (or draining) worker sends a heartbeat every second from its event loop; one that
  is late by --timeout has a blocked loop.

Either way the worker is first asked for its stacks (SIGUSR2: faulthandler writes every
thread's stack from the C signal handler, so it works while the loop is stuck in Python
code; the master logs them under the worker's name), then killed once the dump has
arrived (or after a short wait). The supervisor replaces it like any dead worker.

The deadline is a ``call_later`` timer re-armed by each heartbeat: no polling.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from asynccluster.config import Config
from asynccluster.contracts.messages import DumpTasks
from asynccluster.contracts.states import WorkerState
from asynccluster.master.policy import Timing
from asynccluster.master.process import WorkerHandle

logger = logging.getLogger("asynccluster.master")


class Watchdog:
    def __init__(
        self,
        config: Config,
        timing: Timing,
        clock: Callable[[], float],
        loop: Callable[[], asyncio.AbstractEventLoop],
    ) -> None:
        self.config = config
        self.timing = timing
        self.clock = clock
        self._loop = loop

    def arm_ready(self, handle: WorkerHandle) -> None:
        self._arm(handle, self.config.ready_timeout, self._fired)

    def arm_heartbeat(self, handle: WorkerHandle) -> None:
        """(Re)start the liveness deadline: late by --timeout after the expected heartbeat."""
        if self.config.timeout > 0:
            self._arm(handle, self.timing.heartbeat_interval + self.config.timeout, self._fired)
        else:
            handle.cancel_watchdog()

    def stacks_arrived(self, handle: WorkerHandle) -> None:
        """The dump comes in one burst: kill once it has been quiet for a moment."""
        if handle.hung and handle.alive:
            self._arm(handle, self.timing.stacks_quiet, self._kill)

    def _arm(self, handle: WorkerHandle, delay: float, callback: Callable[[WorkerHandle], None]) -> None:
        handle.cancel_watchdog()
        handle.watchdog = self._loop().call_later(delay, callback, handle)

    def _fired(self, handle: WorkerHandle) -> None:
        handle.watchdog = None
        if not handle.alive or handle.hung:
            return
        if handle.state == WorkerState.STARTING:
            during = f" (stuck in {handle.phase})" if handle.phase else ""
            handle.retire_reason = f"not ready within --ready-timeout {self.config.ready_timeout:g} s{during}"
            logger.error(
                "%s did not become ready within %g s; dumping its stacks, then killing it",
                handle.name,
                self.config.ready_timeout,
            )
        else:
            late = self.clock() - (handle.last_heartbeat_at or handle.started_at)
            handle.retire_reason = handle.retire_reason or f"hung: no heartbeat for {late:.1f} s (--timeout)"
            logger.error(
                "%s sent no heartbeat for %.1f s (--timeout %g): its event loop is blocked; "
                "dumping its stacks, then replacing it",
                handle.name,
                late,
                self.config.timeout,
            )
        handle.hung = True
        # Two dumps: a live loop (a worker awaiting a lifespan step that never ends) answers
        # "dump-tasks" with its coroutines' await chains, where faulthandler would show only an
        # idle loop; a blocked loop cannot read the channel, so SIGUSR2 makes faulthandler dump
        # the thread stacks from C, whatever Python is doing.
        handle.send(DumpTasks())
        handle.signal(signal.SIGUSR2)
        self._arm(handle, self.timing.stacks_wait, self._kill)

    def _kill(self, handle: WorkerHandle) -> None:
        handle.watchdog = None
        handle.kill()
