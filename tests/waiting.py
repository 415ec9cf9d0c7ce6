"""The suite's one way to wait for something: poll a condition until it holds, with a deadline.

    view = wait_until(lambda: status(ctl, "web"), "the status to answer")          # sync, threads
    await wait_for(lambda: server.connection_count() == 0, "the connection to close")  # on a loop

The probe is called until ``done(result)`` holds (default: the result is truthy), and that result
is returned. After ``timeout`` seconds an ``AssertionError`` names ``what`` and the last value the
probe returned, so a failure says what was awaited and how far it got. Between checks the wait
starts short (a condition that holds within milliseconds costs milliseconds) and backs off up to
``interval`` seconds (a probe that spawns a CLI process is not run back to back). The sleeps here
are the polling interval of a condition with a deadline, never a synchronisation by themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

FIRST_INTERVAL = 0.002  # seconds before the second check; doubled after every miss up to ``interval``
LAST_VALUE_CHARS = 4000  # of the last value's repr in the failure message (a screen, a status view)


def wait_until(
    probe: Callable[[], T],
    what: str = "the condition",
    timeout: float = 20.0,
    *,
    done: Callable[[T], bool] = bool,
    interval: float = 0.2,
) -> T:
    """Block until ``done(probe())``; that last ``probe()`` result. AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    pause = FIRST_INTERVAL
    while True:
        last = probe()
        if done(last):
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(timed_out(what, timeout, last))
        time.sleep(min(pause, interval, max(0.0, deadline - time.monotonic())))
        pause *= 2


async def wait_for(
    probe: Callable[[], T],
    what: str = "the condition",
    timeout: float = 10.0,
    *,
    done: Callable[[T], bool] = bool,
    interval: float = 0.05,
) -> T:
    """``wait_until`` for a test running on an event loop: yields to the loop between checks."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pause = FIRST_INTERVAL
    while True:
        last = probe()
        if done(last):
            return last
        if loop.time() >= deadline:
            raise AssertionError(timed_out(what, timeout, last))
        await asyncio.sleep(min(pause, interval, max(0.0, deadline - loop.time())))
        pause *= 2


def timed_out(what: str, timeout: float, last: object) -> str:
    """The failure message: what was awaited, for how long, and the last value seen (shortened)."""
    seen = repr(last)
    if len(seen) > LAST_VALUE_CHARS:
        seen = f"{seen[:LAST_VALUE_CHARS]}... ({len(seen)} characters)"
    return f"timed out after {timeout:g} s waiting for {what}; last value: {seen}"
