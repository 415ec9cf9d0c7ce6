"""``--slow-request-threshold MS`` (issue 15): requests slower than it are logged with their
timing and, with ``--slow-request-stacks``, the await chain they were in while still running.

:class:`SlowLog` takes the access log's place in ServerState (the same ``log(scope, status,
sent, seconds)`` call Cycle already makes once per response, which it passes on), so the
request path gains one comparison and nothing at all while no threshold is set.

The stack: a sweep every ``threshold / 2`` (at most once per second, at least every 10 ms)
looks at the requests still running (ServerState.tasks: the app Tasks that suspended) and
records, once per request past the threshold, each one's await chain, outermost first: where
an awaiting request is waiting (the database call, the upstream). A request that blocks the
loop without awaiting (CPU work, a blocking call) cannot be sampled from the loop: for that a
thread (:class:`LoopWatch`) notices when the sweep has not run for the threshold and takes
the loop thread's stack then (``sys._current_frames()``); a slow request that was running
when that sample was taken gets it.

Bounded: at most :data:`LINES_PER_WINDOW` slow-request lines per :data:`WINDOW` seconds per
worker (the next line says how many were left out), :data:`MAX_SAMPLES` stacks held, and the
sweep looks at :data:`MAX_SWEEP` tasks per pass.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from asynccluster.observe.errors import request_line

logger = logging.getLogger("asynccluster.worker")

LINES_PER_WINDOW = 10
WINDOW = 10.0
MAX_SAMPLES = 200
MAX_SWEEP = 1000
MAX_STACK_LINES = 40

Report = Callable[[dict[str, Any]], None]


def await_chain(task: asyncio.Task[Any]) -> list[str]:
    """``file:line in function`` of each coroutine the task awaits through, outermost first."""
    lines: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None and len(lines) < MAX_STACK_LINES:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return lines


class SlowLog:
    """The access log's stand-in while a threshold is set (see the module docstring)."""

    def __init__(
        self,
        threshold: float,
        inner: Any,
        tasks: set[asyncio.Task[Any]],
        loop: asyncio.AbstractEventLoop,
        stacks: bool,
        report: Report | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold  # seconds
        self.inner = inner  # the real access log, or None
        self.tasks = tasks
        self.loop = loop
        self.report = report
        self.clock = clock
        # id(scope) -> (scope, task, stack): the scope is held so that its id is not reused.
        self.samples: dict[int, tuple[dict[str, Any], asyncio.Task[Any], list[str]]] = {}
        self.window_start = float("-inf")
        self.window_lines = 0
        self.left_out = 0
        self.sweeper: asyncio.Task[None] | None = None
        self.watch: LoopWatch | None = None
        if stacks:
            self.watch = LoopWatch(threshold, sweep_interval(threshold))
            self.sweeper = loop.create_task(self._sweep_forever())

    def log(self, scope: dict[str, Any], status: int, sent: int, seconds: float) -> None:
        inner = self.inner
        if inner is not None:
            inner.log(scope, status, sent, seconds)
        if seconds >= self.threshold:
            self.slow(scope, status, seconds)

    def slow(self, scope: dict[str, Any], status: int, seconds: float) -> None:
        sample = self.samples.pop(id(scope), None) if self.samples else None
        stack = sample[2] if sample is not None and sample[0] is scope else []
        if not stack and self.watch is not None:
            stack = self.watch.blocked_since(time.perf_counter() - seconds)
        entry = {
            "request": request_line(scope), "status": status, "ms": round(seconds * 1000.0, 1),
            "time": time.time(), "stack": stack,
        }  # fmt: skip
        if self.report is not None:
            self.report(entry)
        now = self.clock()
        if now - self.window_start >= WINDOW:
            self.window_start, self.window_lines = now, 0
        if self.window_lines >= LINES_PER_WINDOW:
            self.left_out += 1
            return
        self.window_lines += 1
        more = f" ({self.left_out} more slow requests were not logged)" if self.left_out else ""
        self.left_out = 0
        where = "".join(f"\n    {line}" for line in stack)
        logger.warning(
            "slow request: %s -> %d in %.0f ms (threshold %.0f ms)%s%s",
            entry["request"], status, entry["ms"], self.threshold * 1000.0, more,
            f"; stack while running:{where}" if stack else "",
        )  # fmt: skip

    # -- the sweep (only with --slow-request-stacks)

    async def _sweep_forever(self) -> None:
        interval = sweep_interval(self.threshold)
        while True:
            await asyncio.sleep(interval)
            now = time.perf_counter()
            if self.watch is not None:
                self.watch.beat = now
            self.sweep(now)

    def sweep(self, now: float) -> None:
        """Record the await chain of each running request past the threshold (once each)."""
        for scope_id in [key for key, (_, task, _) in self.samples.items() if task.done()]:
            del self.samples[scope_id]  # finished without a response (the client left)
        for index, task in enumerate(list(self.tasks)):
            if index >= MAX_SWEEP or len(self.samples) >= MAX_SAMPLES:
                break
            cycle = _cycle_of(task)
            if cycle is None or now - cycle.started_at < self.threshold:
                continue
            scope = cycle.scope
            if id(scope) not in self.samples:
                self.samples[id(scope)] = (scope, task, await_chain(task))

    def close(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
        if self.watch is not None:
            self.watch.stop.set()


def sweep_interval(threshold: float) -> float:
    return min(1.0, max(0.01, threshold / 2))


def frame_lines(frame: Any) -> list[str]:
    """``file:line in function`` of a thread's frames, outermost first (the innermost kept)."""
    lines: list[str] = []
    while frame is not None and len(lines) < MAX_STACK_LINES:
        lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        frame = frame.f_back
    return lines[::-1]


class LoopWatch:
    """Samples the loop thread once per blocked period: when the sweep (``beat``) has not run
    for ``threshold`` (and at least two sweep intervals), the loop is stuck in one request."""

    def __init__(self, threshold: float, interval: float) -> None:
        self.threshold = max(threshold, 2 * interval)
        self.interval = interval
        self.loop_thread = threading.get_ident()  # made on the loop's thread
        self.beat = time.perf_counter()
        self.blocked: tuple[float, list[str]] | None = None  # (perf_counter when sampled, stack)
        self.stop = threading.Event()
        threading.Thread(target=self._run, name="asynccluster-slow-watch", daemon=True).start()

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            now = time.perf_counter()
            taken = self.blocked[0] if self.blocked is not None else float("-inf")
            if now - self.beat >= self.threshold and taken < self.beat:  # once per blocked period
                frame = sys._current_frames().get(self.loop_thread)
                if frame is not None:
                    self.blocked = (now, frame_lines(frame))

    def blocked_since(self, started: float) -> list[str]:
        """The loop thread's stack if it was sampled after ``started`` (perf_counter), else []."""
        blocked = self.blocked
        return blocked[1] if blocked is not None and blocked[0] >= started else []


def _cycle_of(task: asyncio.Task[Any]) -> Any:
    """The Cycle whose ``_main`` this task runs (worker/cycle.py), or None for other tasks."""
    frame = getattr(task.get_coro(), "cr_frame", None)
    if frame is None or frame.f_code.co_name != "_main":
        return None
    cycle = frame.f_locals.get("self")
    return cycle if hasattr(cycle, "started_at") and hasattr(cycle, "scope") else None
