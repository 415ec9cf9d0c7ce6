"""The worker's side of diagnosing a live cluster (issue 15): grouped errors, slow requests,
and the answers to the master's ``diagnose`` requests (memory, and the stdlib CPU sampler).

Off the request path when unused: nothing here runs per request unless
``--slow-request-threshold`` is set (then one float comparison per response, in place of
the access log's call: :class:`SlowLog` wraps it) or a request fails (500s only:
:func:`record_error`, called from Cycle._app_failed). Measurements (tracemalloc, the
sampler thread) run only while the master asked for one, one at a time.

Messages (contracts/messages.py): worker -> master :class:`Errors` (batches of observe/errors.py
entries, at most one per :data:`FLUSH_DELAY` s, only after an error) and :class:`DiagnoseResult`;
master -> worker :class:`Diagnose` (``memory`` or ``sample``, and the op's arguments).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from asynccluster.contracts.messages import Diagnose, DiagnoseResult, Errors, WorkerMessage
from asynccluster.observe import errors as grouping

# The measurements themselves (tracemalloc, the samplers) only start when asked for; the
# module is imported here, below this one: diagnose_ops never imports back (issue 10).
from asynccluster.worker.diagnose_ops import DiagnoseError, measure_memory, sample_stacks

if TYPE_CHECKING:
    from asynccluster.worker.accesslog import AccessLog
    from asynccluster.worker.state import ServerState

__all__ = ["DiagnoseError", "Diagnostics", "ErrorBatch", "flush", "install", "record_error"]


class Served(Protocol):
    """What diagnostics need of the worker's server: its shared state (not the server type,
    which imports the connection code that reports errors here)."""

    @property
    def state(self) -> ServerState: ...


logger = logging.getLogger("asynccluster.worker")

FLUSH_DELAY = 1.0  # seconds: errors are sent to the master in one batch per this interval
MAX_SLOW = 20  # slow requests per batch (the master keeps the last 100)
Send = Callable[[WorkerMessage], None]


class ErrorBatch:
    """Errors since the last flush, grouped; at most MAX_GROUPS groups (more are counted)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, send: Send, delay: float = FLUSH_DELAY) -> None:
        self.loop = loop
        self.send = send
        self.delay = delay
        self.pending: dict[tuple[str, str], dict[str, Any]] = {}
        self.dropped = 0  # errors of groups beyond the cap in this batch
        self.slow: list[dict[str, Any]] = []  # slow requests (worker/slowlog.py), at most MAX_SLOW
        self.timer: asyncio.TimerHandle | None = None

    def add(self, exc: BaseException, scope: dict[str, Any]) -> None:
        kind, frame = grouping.type_name(exc), grouping.app_frame(exc.__traceback__)
        now = time.time()
        entry = self.pending.get((kind, frame))
        if entry is None:
            if len(self.pending) >= grouping.MAX_GROUPS:
                self.dropped += 1
                return
            # The traceback is formatted once per group and batch: at most MAX_GROUPS per second.
            entry = self.pending[(kind, frame)] = {
                "type": kind, "frame": frame, "traceback": grouping.format_traceback(exc),
                "count": 0, "first_seen": now,
            }  # fmt: skip
        entry["count"] += 1
        entry["last_seen"] = now
        entry["message"] = grouping.short_message(exc)
        entry["request"] = grouping.request_line(scope)
        self._schedule()

    def add_slow(self, entry: dict[str, Any]) -> None:
        """A slow request (SlowLog's report): the first MAX_SLOW of each batch are sent."""
        if len(self.slow) < MAX_SLOW:
            self.slow.append(entry)
            self._schedule()

    def _schedule(self) -> None:
        if self.timer is None:
            self.timer = self.loop.call_later(self.delay, self.flush)

    def flush(self) -> None:
        self.timer = None
        if not self.pending and not self.slow:
            return
        message = Errors(groups=list(self.pending.values()), dropped=self.dropped, slow=self.slow)
        self.pending = {}
        self.dropped = 0
        self.slow = []
        self.send(message)


_errors: ErrorBatch | None = None


def record_error(exc: BaseException, scope: dict[str, Any]) -> None:
    """An app's unhandled exception (Cycle._app_failed): into this interval's batch."""
    batch = _errors
    if batch is None or isinstance(exc, asyncio.CancelledError):
        return
    try:
        batch.add(exc, scope)
    except Exception:  # grouping must never turn an app's 500 into a worker failure
        logger.exception("could not group an app error")


class Diagnostics:
    """Installed once per worker by :func:`install`; answers the master's requests."""

    def __init__(self, loop: asyncio.AbstractEventLoop, send: Send, server: Served) -> None:
        self.loop = loop
        self.send = send
        self.server = server
        self.busy: str | None = None  # the measurement running now (one at a time)
        self.tasks: set[asyncio.Task[None]] = set()

    def on_request(self, message: Diagnose) -> None:
        """A ``diagnose`` message: run it in a task; the answer goes back with its ``id``."""
        task = self.loop.create_task(self._answer(message))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, message: Diagnose) -> None:
        ident, op = message.id, message.op
        try:
            if self.server.state.draining:
                raise DiagnoseError("this worker is draining (being replaced or stopped); ask its successor")
            if self.busy is not None:
                raise DiagnoseError(f"this worker is already running a {self.busy} measurement; try again after it")
            self.busy = op
            try:
                result = await self._run(op, message)
            finally:
                self.busy = None
        except DiagnoseError as exc:
            self.send(DiagnoseResult(id=ident, ok=False, error=str(exc)))
        except Exception as exc:
            logger.exception("diagnose %s failed", op)
            self.send(DiagnoseResult(id=ident, ok=False, error=f"{op} failed: {exc!r}"))
        else:
            self.send(DiagnoseResult(id=ident, ok=True, result=result))

    async def _run(self, op: str, message: Diagnose) -> dict[str, Any]:
        # Types are checked by the channel (contracts/messages.py); the ranges are checked here.
        seconds = _bounded(message.seconds, 0.1, 600.0, "seconds")
        if op == "memory":
            top = int(_bounded(message.top, 1, 50, "top"))
            return await measure_memory(seconds, top)
        if op == "sample":
            rate = _bounded(message.rate, 1, 1000, "rate")
            return await sample_stacks(self.loop, seconds, rate)
        raise DiagnoseError(f"unknown diagnose operation {op!r}")


def _bounded(value: Any, low: float, high: float, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise DiagnoseError(f"{name} must be a number from {low:g} to {high:g}, got {value!r:.40}")
    return float(value)


def install(loop: asyncio.AbstractEventLoop, send: Send, server: Served, slow_threshold_ms: float,
            slow_stacks: bool) -> Diagnostics:  # fmt: skip
    """Turn on error grouping for this process, and the slow log if a threshold is set."""
    global _errors
    _errors = ErrorBatch(loop, send)
    if slow_threshold_ms > 0:
        from asynccluster.worker.slowlog import SlowLog

        state = server.state
        slow = SlowLog(
            slow_threshold_ms / 1000.0, state.access_log, state.tasks, loop, slow_stacks, report=_errors.add_slow
        )
        # Duck-typed: Cycle calls access_log.log(scope, status, sent, seconds); SlowLog passes it on.
        state.access_log = cast("AccessLog", slow)
    return Diagnostics(loop, send, server)


def flush() -> None:
    """Send what the current batch holds now (a draining worker, before its channel closes)."""
    if _errors is not None:
        if _errors.timer is not None:
            _errors.timer.cancel()
        _errors.flush()
