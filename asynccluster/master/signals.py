"""The operator's signals (gunicorn's vocabulary), turned into the supervisor's verbs.

``loop.add_signal_handler`` already does the queueing: the C handler only writes to the
loop's self-pipe and our callback runs later on the loop, like any other event. The
callback maps the signal to an action (a pure function, tested in tests/master/) and
calls the Supervisor's verb for it, the same method the control socket and ``Cluster``
call; a long verb runs as a background task, so the callback never blocks.

TERM, first INT: graceful stop · second INT: forced stop · HUP: rolling reload ·
TTIN / TTOU: one worker more / less · USR1: reopen log files.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from asynccluster.master.supervisor import Supervisor

logger = logging.getLogger("asynccluster.master")

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1)


def signal_action(signum: int, interrupts_before: int) -> str:
    """The action for ``signum``; ``interrupts_before`` counts earlier SIGINTs."""
    if signum == signal.SIGINT:
        return "force-stop" if interrupts_before >= 1 else "stop"
    return {
        signal.SIGTERM: "stop",
        signal.SIGHUP: "reload",
        signal.SIGTTIN: "scale-up",
        signal.SIGTTOU: "scale-down",
        signal.SIGUSR1: "reopen-logs",
    }.get(signal.Signals(signum), "ignore")


class SignalRouter:
    """Installs the handlers of :data:`HANDLED` on a loop and routes each to a verb."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.interrupts = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for signum in HANDLED:
            loop.add_signal_handler(signum, self.handle, signum)

    def remove(self) -> None:
        if self._loop is None:
            return
        for signum in HANDLED:
            self._loop.remove_signal_handler(signum)
        self._loop = None

    def handle(self, signum: int) -> None:
        action = signal_action(signum, self.interrupts)
        if signum == signal.SIGINT:
            self.interrupts += 1
        # Act before logging: the signal must never be lost to a failing log write.
        try:
            self.act(action)
        finally:
            logger.info("received %s: %s", signal.Signals(signum).name, action)

    def act(self, action: str) -> None:
        supervisor = self.supervisor
        if action == "stop":
            supervisor.begin_stop()
        elif action == "force-stop":
            supervisor.begin_stop(force=True)
        elif action == "reload":
            supervisor.background(supervisor.reload())
        elif action == "scale-up":
            supervisor.background(supervisor.scale_by(+1))
        elif action == "scale-down":
            supervisor.background(supervisor.scale_by(-1))
        elif action == "reopen-logs":
            supervisor.reopen_logs()
