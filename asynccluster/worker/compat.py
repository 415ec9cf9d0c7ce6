"""Small version shims for the worker (Python 3.10 support)."""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

if sys.version_info >= (3, 11):

    def create_task_in(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], context: contextvars.Context
    ) -> asyncio.Task[T]:
        """A task that runs every step of ``coro`` in ``context`` itself."""
        return loop.create_task(coro, context=context)

else:  # pragma: no cover - Python 3.10

    def create_task_in(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], context: contextvars.Context
    ) -> asyncio.Task[T]:
        """3.10 has no ``context=``: the task captures a copy of ``context`` (same values)."""
        return context.run(loop.create_task, coro)
