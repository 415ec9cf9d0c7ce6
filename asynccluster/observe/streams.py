"""Ending the connections of an asyncio stream server cleanly when the master stops.

``Server.close()`` stops accepting but leaves open connections (before Python 3.13), and the
master's loop then cancels their handler tasks at shutdown; on 3.11 asyncio logs each such
cancelled handler as an error ("Exception in callback StreamReaderProtocol..."). So the
control socket and the admin endpoint track their connections and close them first: each
handler sees EOF and returns normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Throttled:
    """One log line per ``interval`` seconds for an event that can recur thousands of times a
    second (issue 9: "nothing anyone can send floods the log"); each line carries the count
    of events since the previous line."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self.count = 0  # events since the last line
        self.total = 0
        self._last: float | None = None

    def event(self, level: int, message: str) -> bool:
        """Count one event; log ``message`` with the count if the interval has passed. True if logged."""
        self.count += 1
        self.total += 1
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            return False
        since = "" if self._last is None else f" ({self.count} times in the last {now - self._last:.0f} s)"
        self.logger.log(level, "%s%s", message, since)
        self._last, self.count = now, 0
        return True


# Connections asyncio accepts per readiness event is the listen backlog: a small one keeps a
# flood from taking dozens of descriptors at once before any handler runs (issue 9).
ACCEPT_BACKLOG = 16


def connection_cap(default: int) -> int:
    """``default``, or an eighth of RLIMIT_NOFILE's soft limit if that is smaller (at least 4):
    under a lowered limit the connections must still leave the master its descriptors."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return default
    if soft == resource.RLIM_INFINITY:
        return default
    return max(4, min(default, soft // 8))


class Connections:
    """The open connections of one stream server, at most ``limit`` of them (0: no limit).

    At the limit a new connection evicts the oldest *idle* one (connected, no request in
    progress: see :meth:`busy`), so a flood of idle connections cannot lock out a /livez
    probe or a ``reload``; if none is idle the new one gets ``refusal`` and is closed. Either
    way the connection count, and with it the master's file descriptors, stays bounded
    (issue 9), and the log gets one line per interval.
    """

    def __init__(self, limit: int = 0, name: str = "connection", refusal: bytes = b"") -> None:
        self._open: dict[asyncio.StreamWriter, asyncio.Task[None] | None] = {}
        self._idle: dict[asyncio.StreamWriter, None] = {}  # insertion order: oldest first
        self.closing = False
        self.limit = limit
        self.refusal = refusal
        self.evicted = 0
        self.refused = 0
        self._log = Throttled(logging.getLogger("asynccluster.master"))
        self._name = name

    def busy(self, writer: asyncio.StreamWriter, busy: bool = True) -> None:
        """Mark a connection busy (a request in progress: never evicted) or idle again."""
        if busy:
            self._idle.pop(writer, None)
        elif writer in self._open:
            self._idle[writer] = None

    def _make_room(self, writer: asyncio.StreamWriter) -> bool:
        """Below the limit, or room made by evicting the oldest idle connection."""
        if not self.limit or len(self._open) < self.limit:
            return True
        if self._idle:
            oldest = next(iter(self._idle))
            self._idle.pop(oldest)
            oldest.close()
            self.evicted += 1
            self._log.event(logging.WARNING, f"{self._name}: {self.limit} connections open, closed the oldest idle one")
            return True
        self.refused += 1
        self._log.event(logging.WARNING, f"{self._name}: {self.limit} connections busy, refused a new one")
        if self.refusal:
            writer.write(self.refusal)
        writer.close()
        return False

    def track(self, handler: Handler) -> Handler:
        """Wrap a stream handler so its connection is known (and idle) until it returns."""

        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if self.closing or not self._make_room(writer):
                writer.close()
                return
            self._open[writer] = asyncio.current_task()
            self._idle[writer] = None
            try:
                await handler(reader, writer)
            except asyncio.CancelledError:
                if not self.closing:
                    raise
                # Cancelled by close() after its grace period: end quietly, see the docstring.
            finally:
                self._open.pop(writer, None)
                self._idle.pop(writer, None)
                writer.close()

        return tracked

    async def close(self, grace: float = 1.0) -> None:
        """Close every connection; handlers still busy after ``grace`` seconds are cancelled."""
        self.closing = True
        tasks = [task for task in self._open.values() if task is not None]
        for writer in list(self._open):
            writer.close()
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
