"""The measurements a worker runs when the master asks (issue 15): memory and stack samples.

``measure_memory``: tracemalloc is switched on for the measured window only (it slows every
allocation and costs memory while on), with one frame per trace (the allocating line: what
points at a leak, and the cheapest setting). Snapshot A is taken at half the window and B at
its end; the answer is B's top allocation sites (memory allocated during the window and still
alive) and the growth from A to B by line (what keeps growing while the worker serves: a
leak). Then tracemalloc is stopped and its memory freed.

``sample_stacks``: the stdlib sampler, used by ``asynccluster profile`` when py-spy is not
installed (or cannot attach). The CPU-time timer (``setitimer(ITIMER_PROF)``) sends SIGPROF
``rate`` times per CPU second of the worker; CPython runs the handler on the loop thread
between bytecodes with the frame that was running, and the distinct stacks (function level:
name, file and first line) are counted. A waiting worker uses no CPU and is not sampled.
Where SIGPROF cannot be used (not on the main thread, the app uses it), a thread reads the
loop thread's stack (``sys._current_frames()``) instead; it can only look when the loop
releases the GIL, which favours the moments it waits for events (those are left out).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import selectors
import signal
import sys
import threading
import time
import tracemalloc
from collections import Counter
from types import FrameType
from typing import Any

from asynccluster.worker.resources import rss_bytes


class DiagnoseError(Exception):
    """A request the worker refuses, with the reason for the operator."""


MAX_STACKS = 2000  # distinct stacks kept by the sampler; the rest are counted as "[other]"
MAX_DEPTH = 128  # frames per sampled stack (innermost kept)
_ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep
_SELECTORS = selectors.__file__
_SKIP_FILES = (tracemalloc.__file__, __file__, "<frozen importlib._bootstrap>", "<unknown>")


async def measure_memory(seconds: float, top: int) -> dict[str, Any]:
    """``{seconds, rss_before, rss_after, traced, peak, overhead, top: [site], growth: [site]}``,
    a site being ``{where: "file:line", size, count}`` (growth adds ``size_diff, count_diff``)."""
    if tracemalloc.is_tracing():
        raise DiagnoseError("tracemalloc is already on in this worker (the app or PYTHONTRACEMALLOC started it)")
    rss_before = rss_bytes()
    tracemalloc.start(1)
    try:
        await asyncio.sleep(seconds / 2)
        first = tracemalloc.take_snapshot()
        await asyncio.sleep(seconds / 2)
        second = tracemalloc.take_snapshot()
        traced, peak = tracemalloc.get_traced_memory()
        overhead = tracemalloc.get_tracemalloc_memory()
    finally:
        tracemalloc.stop()
    # Filtered once tracing is off: the filters' own allocations (fnmatch) are not measured.
    first, second = _filtered(first), _filtered(second)
    sites = second.statistics("lineno")[:top]
    growth = [stat for stat in second.compare_to(first, "lineno") if stat.size_diff > 0][:top]
    return {
        "seconds": seconds,
        "rss_before": rss_before,
        "rss_after": rss_bytes(),
        "traced": traced,
        "peak": peak,
        "overhead": overhead,
        "top": [_site(stat.traceback, stat.size, stat.count) for stat in sites],
        "growth": [
            {**_site(stat.traceback, stat.size, stat.count), "size_diff": stat.size_diff, "count_diff": stat.count_diff}
            for stat in growth
        ],
    }


def _filtered(snapshot: tracemalloc.Snapshot) -> tracemalloc.Snapshot:
    return snapshot.filter_traces([tracemalloc.Filter(False, name) for name in _SKIP_FILES])


def _site(tb: tracemalloc.Traceback, size: int, count: int) -> dict[str, Any]:
    frame = tb[0]
    return {"where": f"{_relative(frame.filename)}:{frame.lineno}", "size": size, "count": count}


def _relative(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except ValueError:
        return filename
    return filename if relative.startswith("..") else relative


# ---------------------------------------------------------------- the stdlib sampler


async def sample_stacks(loop: asyncio.AbstractEventLoop, seconds: float, rate: float) -> dict[str, Any]:
    """``{samples, idle, mode, rate, seconds, frames: [name], stacks: [[[frame index, ...outermost
    first], count]]}``, a frame name being ``"function (file:first line)"``; taken while the loop
    serves. Called on the loop (the main thread)."""
    sampler = StackSampler(threading.get_ident(), 1.0 / rate, loop_base_frame(sys._getframe()))
    if cpu_timer_usable():
        mode = "cpu-timer"
        await sampler.run_on_cpu_timer(seconds)
    else:
        mode = "thread"
        thread = threading.Thread(target=sampler.run, args=(seconds,), name="asynccluster-sampler", daemon=True)
        thread.start()
        await loop.run_in_executor(None, thread.join)
    # Frame names once, stacks as indexes into them: the answer stays far below the channel's
    # frame limit (MAX_STACKS x MAX_DEPTH small ints).
    index: dict[str, int] = {}
    stacks = [
        [[index.setdefault(name, len(index)) for name in stack], count] for stack, count in sampler.counts.items()
    ]
    return {
        "samples": sampler.samples, "idle": sampler.idle, "mode": mode, "rate": rate, "seconds": seconds,
        "frames": list(index), "stacks": stacks,
    }  # fmt: skip


def cpu_timer_usable() -> bool:
    """SIGPROF on the CPU-time timer: Unix, on the main thread, and SIGPROF unused by the app."""
    return (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGPROF) in (signal.SIG_DFL, signal.SIG_IGN, None)
    )


def loop_base_frame(frame: FrameType | None) -> FrameType | None:
    """The innermost plain function below the loop's callbacks (``run_worker``, which called
    ``run_until_complete``): the loop thread's innermost Python frame while uvloop waits in
    C, i.e. while the worker is idle. ``frame`` is a coroutine's frame running on the loop."""
    while frame is not None and frame.f_code.co_flags & inspect.CO_COROUTINE:
        frame = frame.f_back
    while frame is not None and frame.f_code.co_filename.startswith(_ASYNCIO_DIR):
        frame = frame.f_back  # the pure-Python loop: below events.py / base_events.py
    return frame


class StackSampler:
    """Counts the distinct stacks of one thread, sampled every ``interval`` seconds."""

    def __init__(self, thread_id: int, interval: float, base: FrameType | None = None) -> None:
        self.thread_id = thread_id
        self.interval = interval
        self.base = base  # the loop thread's innermost frame while it waits for events
        self.counts: Counter[tuple[str, ...]] = Counter()
        self.samples = 0
        self.idle = 0  # samples of a loop waiting for events: left out, as py-spy does
        self._names: dict[Any, str] = {}  # code object -> its frame name (formatted once)

    def run(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        next_at = time.monotonic()
        while True:
            next_at += self.interval
            now = time.monotonic()
            if now >= deadline:
                return
            time.sleep(max(0.0, min(next_at, deadline) - now))
            self.take()

    async def run_on_cpu_timer(self, seconds: float) -> None:
        """Sample on SIGPROF from ITIMER_PROF: ``1/interval`` times per CPU second of this
        process, so a waiting loop is not sampled at all, and the handler (run by CPython on
        the main thread between bytecodes) sees the frame that was running: no bias toward the
        moments the loop releases the GIL, which a sampling thread has."""
        signal.signal(signal.SIGPROF, self._on_timer)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)
        try:
            await asyncio.sleep(seconds)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0, 0)
            # Ignored, not SIG_DFL (which terminates): a tick already on its way does no harm.
            signal.signal(signal.SIGPROF, signal.SIG_IGN)

    def _on_timer(self, signum: int, frame: FrameType | None) -> None:
        if frame is not None:
            self.record(frame)

    def take(self) -> None:
        frame = sys._current_frames().get(self.thread_id)
        if frame is None:
            return
        if frame is self.base or (frame.f_code.co_name == "select" and frame.f_code.co_filename == _SELECTORS):
            self.idle += 1
            return
        self.record(frame)

    def record(self, frame: FrameType | None) -> None:
        names: list[str] = []
        while frame is not None and len(names) < MAX_DEPTH:
            code = frame.f_code
            name = self._names.get(code)
            if name is None:
                name = self._names[code] = f"{code.co_name} ({_relative(code.co_filename)}:{code.co_firstlineno})"
            names.append(name)
            frame = frame.f_back
        stack = tuple(reversed(names))
        self.samples += 1
        if stack in self.counts or len(self.counts) < MAX_STACKS:
            self.counts[stack] += 1
        else:
            self.counts[("[other]",)] += 1
