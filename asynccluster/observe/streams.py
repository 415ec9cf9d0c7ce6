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
from collections.abc import Awaitable, Callable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Connections:
    def __init__(self) -> None:
        self._open: dict[asyncio.StreamWriter, asyncio.Task[None] | None] = {}
        self.closing = False

    def track(self, handler: Handler) -> Handler:
        """Wrap a stream handler so its connection is known until it returns."""

        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if self.closing:
                writer.close()
                return
            self._open[writer] = asyncio.current_task()
            try:
                await handler(reader, writer)
            except asyncio.CancelledError:
                if not self.closing:
                    raise
                # Cancelled by close() after its grace period: end quietly, see the docstring.
            finally:
                self._open.pop(writer, None)
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
