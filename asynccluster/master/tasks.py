"""The master's own tasks: verbs started by a signal or a heartbeat, and async event callbacks.

Both kinds are kept referenced (a bare ``ensure_future`` can be garbage-collected mid-run)
and logged when they raise. At the end of ``Supervisor.serve()`` the verbs are cancelled
(the workers are gone, nothing is left to replace), while the event callbacks of the last
exits (``Cluster.on("exit", ...)``: e.g. a notification) get ``grace`` seconds to finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger("asynccluster.master")


class Tasks:
    """Background verbs and event callbacks of one supervisor, on its loop."""

    def __init__(self, loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
        self._loop = loop
        self._verbs: set[asyncio.Future[Any]] = set()  # cancelled when serve() ends
        self._callbacks: set[asyncio.Future[Any]] = set()  # allowed to finish, within a grace

    def verb(self, coro: Awaitable[Any]) -> None:
        """Run a verb nobody awaits (a signal's reload, a recycle); keep a reference to it."""
        task: asyncio.Future[Any] = asyncio.ensure_future(coro, loop=self._loop())
        self._verbs.add(task)
        task.add_done_callback(self._verbs.discard)

    def callback(self, awaitable: Awaitable[Any]) -> None:
        """Run what an async event callback returned; its exception is logged, not lost."""
        task: asyncio.Future[Any] = asyncio.ensure_future(awaitable, loop=self._loop())
        self._callbacks.add(task)
        task.add_done_callback(self._callback_done)

    def _callback_done(self, task: asyncio.Future[Any]) -> None:
        self._callbacks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("an event callback raised", exc_info=task.exception())

    def cancel_verbs(self) -> None:
        for task in list(self._verbs):
            task.cancel()

    async def finish_callbacks(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the pending callbacks, then cancel the rest, so
        serve() always returns."""
        pending = set(self._callbacks)
        if not pending:
            return
        _, pending = await asyncio.wait(pending, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            count = len(pending)
            logger.warning("cancelled %d event callback%s still running after %g s", count,
                           "" if count == 1 else "s", grace)  # fmt: skip
