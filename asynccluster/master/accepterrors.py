"""Accept errors (EMFILE and kin) summarised instead of one traceback per attempt (issue 9).

When a listening socket of the master (control socket, --admin) cannot accept because the
process is out of file descriptors, asyncio's selector loop stops accepting on it for one
second (``ACCEPT_RETRY_DELAY``) and reports the error with a full traceback through the
loop's exception handler, each time. An attacker holding connections makes that a flood
(43k-400k log lines in seconds). The handler installed here logs one line per interval with
the count, and passes every other report to the handler that was there before.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import Any

from asynccluster.observe.streams import Throttled

logger = logging.getLogger("asynccluster.master")

RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
INTERVAL = 10.0  # seconds between two summary lines


def is_accept_resource_error(context: dict[str, Any]) -> bool:
    """asyncio's "socket.accept() out of system resource" report (base_events/selector_events)."""
    exc = context.get("exception")
    if isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS:
        return "accept" in str(context.get("message", ""))
    return False


def install(loop: asyncio.AbstractEventLoop, interval: float = INTERVAL) -> Throttled:
    """Summarise accept resource errors on ``loop``; returns the counter (tests read it)."""
    previous = loop.get_exception_handler()
    summary = Throttled(logger, interval)

    def handler(handler_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if is_accept_resource_error(context):
            exc = context["exception"]
            summary.event(logging.ERROR, f"cannot accept connections: {exc.strerror}; pausing accepts for 1 s")
            return
        if previous is not None:
            previous(handler_loop, context)
        else:
            handler_loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    return summary
