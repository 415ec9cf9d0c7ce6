"""The cluster's stop: graceful (TERM, first Ctrl-C), forced (second Ctrl-C), and its exit code.

A graceful stop closes the master's listening sockets, tells every worker to drain, and
arms one deadline: after the drain (--graceful-timeout), lifespan shutdown (its own budget)
and a grace for the exit (master/policy.py Timing), whatever is left is SIGKILLed. The stop
is complete when every worker has been reaped; the exit code then says how it went.

Exception safety (a log write that raises must not leave a master with workers it no longer
stops): state and timers change first, actions run next, log lines come last, and the
completion check runs in a ``finally``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from asynccluster import exitcodes
from asynccluster.config import Config
from asynccluster.master import sdnotify
from asynccluster.master.policy import Timing, shutdown_budget
from asynccluster.master.process import WorkerHandle
from asynccluster.master.slots import SlotTable

logger = logging.getLogger("asynccluster.master")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def kill_delay(config: Config, timing: Timing) -> float:
    """Seconds from the start of the drain (after --shutdown-delay) to SIGKILL: the drain
    (--graceful-timeout), then lifespan shutdown (its own budget), then a grace for the
    exit itself (policy.Timing; worker/main.py bounds the two phases with the same numbers)."""
    return config.graceful_timeout + shutdown_budget(config, timing) + timing.kill_grace


class Stopping:
    """The stop of one cluster: its progress, its kill deadline and its outcome (``done``).

    The Supervisor owns it and changes the cluster state; this class drains and kills the
    workers of the slot table it is given and calls ``on_stopped`` right before ``done``
    resolves (every worker reaped).
    """

    def __init__(
        self,
        config: Config,
        timing: Timing,
        slots: SlotTable,
        loop: Callable[[], asyncio.AbstractEventLoop],
        on_stopped: Callable[[], None],
    ) -> None:
        self.config = config
        self.timing = timing
        self.slots = slots
        self._loop = loop
        self._on_stopped = on_stopped
        self.active = False
        self.done: asyncio.Future[int] | None = None  # the exit code, once every worker is reaped
        self.code: int | None = None  # set by who stopped the cluster (a startup failure)
        self.forced = False  # a worker had to be killed
        self.unclean = False  # a ready worker exited non-zero
        self._kill_timer: asyncio.TimerHandle | None = None
        self._delay_timer: asyncio.TimerHandle | None = None  # --shutdown-delay, before the drain

    def begin(self, *, code: int | None = None, quiet: bool = False) -> None:
        """Graceful stop: every worker drains, then whatever is left is killed.

        With --shutdown-delay (issue 14) the drain starts that many seconds later (the
        Supervisor has turned the state "stopping" already: /readyz fails) while the workers
        keep serving. A second stop request (second SIGTERM, forced stop) skips what is left
        of the delay."""
        if self.active:
            self.skip_delay()
            return
        self.active = True
        self.code = code
        delay = self.config.shutdown_delay if code is None else 0.0
        if delay <= 0:
            self._drain(quiet)
            return
        self._delay_timer = self._loop().call_later(delay, self._drain, quiet)
        sdnotify.stopping()
        logger.info("stopping: not ready from now on; draining in %g s (--shutdown-delay)", delay)

    def skip_delay(self) -> None:
        """Start the drain now if it is still waiting for --shutdown-delay."""
        if self._delay_timer is not None:
            self._delay_timer.cancel()
            self._drain(False)

    def _drain(self, quiet: bool) -> None:
        slots = self.slots
        self._delay_timer = None
        # The kill deadline first: whatever raises below, the stop completes.
        self._kill_timer = self._loop().call_later(kill_delay(self.config, self.timing), self._kill_remaining)
        try:
            slots.cancel_respawns()
            if slots.listeners is not None:
                # New connections are refused from now on (issue 3): the master's copies go
                # first, then each worker closes its own as it begins to drain and finishes
                # what it already accepted.
                slots.listeners.close()
            for handle in list(slots.handles):
                handle.cancel_watchdog()
                slots.tell_stop(handle, "cluster stopping")
            sdnotify.stopping()
            if not quiet:
                logger.info("stopping %s (graceful timeout %g s)", plural(len(slots.handles), "worker"),
                            self.config.graceful_timeout)  # fmt: skip
        finally:
            self.check_finished()

    def force(self) -> None:
        """Second Ctrl-C: kill every worker now (exit code FORCED)."""
        self.begin()
        self.skip_delay()
        self.forced = True
        handles = list(self.slots.handles)
        for handle in handles:
            handle.kill()
        if handles:
            logger.warning("forced stop: killed %s", plural(len(handles), "worker"))

    def on_exit(self, handle: WorkerHandle, exitcode: int, now: float) -> None:
        """A worker exited during the stop: note how, then log it."""
        if handle.killed:
            self.forced = True
        elif exitcode != 0 and handle.ready_at is not None:
            self.unclean = True
        level = logging.DEBUG if self.code is not None else logging.INFO
        forced = f"; {handle.forced_note()}" if handle.forced_connections else ""
        logger.log(level, "%s stopped: %s after %.1f s%s", handle.name, handle.exit_detail, handle.uptime(now), forced)

    def check_finished(self) -> None:
        """Resolve ``done`` with the exit code once the stop began and every worker is reaped."""
        if not self.active or self.slots.handles or self.done is None or self.done.done():
            return
        if self._kill_timer is not None:
            self._kill_timer.cancel()
            self._kill_timer = None
        if self._delay_timer is not None:  # every worker is gone already: nothing to wait for
            self._delay_timer.cancel()
            self._delay_timer = None
        if self.code is not None:
            code = self.code
        elif self.forced:
            code = exitcodes.FORCED
        else:
            code = exitcodes.ERROR if self.unclean else exitcodes.OK
        try:
            self._on_stopped()
        finally:
            self.done.set_result(code)

    def _kill_remaining(self) -> None:
        self._kill_timer = None
        handles = list(self.slots.handles)
        for handle in handles:  # act first, then log: every worker is killed whatever happens
            handle.kill()
        for handle in handles:
            logger.warning("%s did not stop within the graceful timeout; killed it", handle.name)
