"""The worker's measurements (issue 15): tracemalloc for the window only; the stdlib sampler."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import tracemalloc
from typing import Any

import pytest

from asynccluster.worker.diagnose_ops import DiagnoseError, StackSampler, measure_memory, sample_stacks
from tests.waiting import wait_for

KEPT: list[bytes] = []


async def leak_for(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        KEPT.append(bytes(4096))  # the leaking line
        await asyncio.sleep(0.001)


def test_memory_window_finds_the_leak_and_switches_tracemalloc_off() -> None:
    async def scenario() -> dict[str, Any]:
        leaking = asyncio.ensure_future(leak_for(0.5))
        result = await measure_memory(0.4, 5)
        await leaking
        return result

    KEPT.clear()
    result = asyncio.run(scenario())
    KEPT.clear()
    assert not tracemalloc.is_tracing()
    line = f"test_diagnose_ops.py:{leak_for.__code__.co_firstlineno + 3}"  # KEPT.append(...)
    assert result["top"][0]["where"].endswith(line)
    assert result["growth"][0]["where"].endswith(line) and result["growth"][0]["size_diff"] > 0


def test_memory_refused_while_tracemalloc_is_already_on() -> None:
    tracemalloc.start()
    try:
        with pytest.raises(DiagnoseError, match="already on"):
            asyncio.run(measure_memory(0.1, 5))
        assert tracemalloc.is_tracing()  # the app's own tracing is left alone
    finally:
        tracemalloc.stop()


def busy_known_function(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(500))


def test_sampler_names_the_busy_function_and_skips_idle() -> None:
    stop = threading.Event()
    worker = threading.Thread(target=busy_known_function, args=(stop,))
    worker.start()
    try:
        assert worker.ident is not None
        sampler = StackSampler(worker.ident, 0.005)
        sampler.run(0.3)
    finally:
        stop.set()
        worker.join()
    (stack, _), *_ = sampler.counts.most_common(1)
    assert stack[-1].startswith("busy_known_function (") and sampler.samples > 0


def spin_on_the_loop(seconds: float) -> None:
    deadline = time.process_time() + seconds
    while time.process_time() < deadline:
        sum(range(500))


def test_cpu_timer_sampler_names_what_runs_on_the_loop() -> None:
    async def scenario() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        sampling = asyncio.ensure_future(sample_stacks(loop, 0.6, 200))
        # The sampler is armed once its SIGPROF handler is in place: only then block the loop.
        await wait_for(lambda: signal.getsignal(signal.SIGPROF) not in (signal.SIG_DFL, signal.SIG_IGN, None),
                       "the sampler's CPU timer to start")  # fmt: skip
        spin_on_the_loop(0.3)  # blocks the loop: CPU time the timer samples
        return await sampling

    result = asyncio.run(scenario())
    assert result["mode"] == "cpu-timer" and result["samples"] > 10
    frames = result["frames"]
    top = max(result["stacks"], key=lambda entry: entry[1])
    assert frames[top[0][-1]].startswith("spin_on_the_loop (")
    assert signal.getsignal(signal.SIGPROF) == signal.SIG_IGN  # the timer's handler is gone


def test_cpu_timer_sampler_does_not_sample_a_waiting_loop() -> None:
    async def scenario() -> dict[str, Any]:
        return await sample_stacks(asyncio.get_running_loop(), 0.3, 100)

    result = asyncio.run(scenario())
    assert result["mode"] == "cpu-timer" and result["samples"] <= 5
