"""Small version shims for the worker (Python 3.10 to 3.13)."""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# Python >= 3.12 can start a Task eagerly: its first step runs inside the constructor, so an
# app that answers without suspending finishes within the protocol callback that started it
# (and its response joins that callback's coalesced write), while still running inside a real
# Task (asyncio.current_task(), asyncio.timeout, TaskGroup, anyio/sniffio). The stdlib's
# eager_task_factory uses the same constructor argument. uvloop's loops work with it: the Task
# machinery keys the current task by loop object (checked on uvloop 0.19+ with 3.12 and 3.13).
EAGER_TASKS = sys.version_info >= (3, 12)

if EAGER_TASKS:

    def start_task(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], context: contextvars.Context
    ) -> asyncio.Task[T]:
        """A Task for ``coro`` in ``context``, its first step run now (eager start, 3.12+)."""
        return asyncio.Task(coro, loop=loop, context=context, eager_start=True)  # type: ignore[call-arg,unused-ignore]

elif sys.version_info >= (3, 11):  # pragma: no cover - Python 3.11

    def start_task(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], context: contextvars.Context
    ) -> asyncio.Task[T]:
        """A Task for ``coro`` in ``context``; before 3.12 its first step runs on the next loop
        pass. (create_task_in's body, not a call to it: one Python frame less per request.)"""
        return loop.create_task(coro, context=context)

else:  # pragma: no cover - Python 3.10

    def start_task(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], context: contextvars.Context
    ) -> asyncio.Task[T]:
        """A Task for ``coro`` in ``context``; before 3.12 its first step runs on the next loop pass."""
        return create_task_in(loop, coro, context)


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
