"""Scheduled rolling restarts: ``--restart-cron "0 3 * * *"`` (issue 11 item 6, pm2's ``cron_restart``).

The expression is a standard 5-field cron line (minute hour day-of-month month day-of-week,
with ``*/N``, ranges, lists, names, ``L`` and ``#``), read by the maintained ``cronsim``
library (healthchecks.io's parser; no dependencies), in the master's local time zone. At
each time it fires, the master does a rolling reload (the same readiness-gated replace path
as ``asynccluster reload``: no request is dropped, a new version that cannot start is rolled
back). A reload already running at that moment is not queued behind: the slot is skipped
and logged. The schedule is a task on the master's loop, started with the control socket
and cancelled at stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

logger = logging.getLogger("asynccluster.master")

CloseFn = Callable[[], Awaitable[None]]
MAX_SLEEP = 3600.0  # re-read the clock at least hourly: a suspended laptop or a clock change


def next_fire(expression: str, after: datetime) -> datetime:
    """The first time after ``after`` (aware) the expression matches; ValueError says why not."""
    from cronsim import CronSim, CronSimError

    try:
        return next(CronSim(expression, after))
    except CronSimError as exc:
        raise ValueError(
            f"expected a 5-field cron expression like '0 3 * * *' (minute hour day month weekday), "
            f"got {expression!r}: {exc}"
        ) from None
    except StopIteration:
        raise ValueError(f"the cron expression {expression!r} never matches a date") from None


async def run_schedule(
    expression: str,
    restart: Callable[[], Awaitable[Any]],
    now: Callable[[], datetime] = lambda: datetime.now().astimezone(),
) -> None:
    """Forever: wait until the next match, then ``restart()`` (a rolling reload), and log it."""
    while True:
        due = next_fire(expression, now())
        logger.info("next scheduled restart (--restart-cron %r) at %s", expression, due.isoformat(timespec="seconds"))
        while (remaining := (due - now()).total_seconds()) > 0:
            await asyncio.sleep(min(remaining, MAX_SLEEP))  # the schedule itself, not a synchronisation
        await fire(expression, restart)


async def fire(expression: str, restart: Callable[[], Awaitable[Any]]) -> None:
    logger.info("scheduled restart (--restart-cron %r): rolling reload of every worker", expression)
    try:
        result = await restart()
    except (RuntimeError, ValueError) as exc:  # e.g. "a reload is already running"
        logger.warning("scheduled restart skipped: %s", exc)
        return
    message = getattr(result, "message", "") or getattr(result, "error", "")
    if getattr(result, "ok", True):
        logger.info("scheduled restart done: %s", message)
    else:
        logger.warning("scheduled restart failed: %s", message)


async def start_cron(supervisor: Any, config: Any) -> CloseFn | None:
    """Start the schedule of ``config.restart_cron`` for ``supervisor`` (None if not set)."""
    expression = getattr(config, "restart_cron", "")
    if not expression:
        return None
    task = asyncio.get_running_loop().create_task(run_schedule(expression, supervisor.reload))

    async def close() -> None:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    return close


__all__ = ["next_fire", "run_schedule", "start_cron"]
