"""Collapsed stacks -> speedscope/SVG/top (observe/flamegraph.py); the slow log (worker/slowlog.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import pytest

from asynccluster.observe import flamegraph
from asynccluster.worker import slowlog
from asynccluster.worker.slowlog import SlowLog

RAW = (
    "main (a.py:1);serve (b.py:5);handler (c.py:9) 30\n"
    "main (a.py:1);serve (b.py:5) 10\n"
    "bad line\n"
    "main (a.py:1);x<&> 5\n"
)


def test_parse_collapsed_skips_bad_lines() -> None:
    stacks = flamegraph.parse_collapsed(RAW)
    assert stacks[("main (a.py:1)", "serve (b.py:5)", "handler (c.py:9)")] == 30
    assert sum(stacks.values()) == 45 and len(stacks) == 3


def test_speedscope_shape() -> None:
    document = flamegraph.speedscope(flamegraph.parse_collapsed(RAW), "w0")
    frames = [f["name"] for f in document["shared"]["frames"]]
    profile = document["profiles"][0]
    assert profile["type"] == "sampled" and sum(profile["weights"]) == profile["endValue"] == 45
    first = profile["samples"][0]
    assert frames[first[-1]] == "handler (c.py:9)"


def test_svg_is_well_formed_escaped_and_names_frames(tmp_path: Path) -> None:
    path = tmp_path / "p.svg"
    flamegraph.write(flamegraph.parse_collapsed(RAW), str(path), "svg", "title <&>")
    root = ElementTree.fromstring(path.read_text())
    titles = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert any(t.startswith("handler (c.py:9) (30 samples, 66.7%)") for t in titles)
    assert any(t.startswith("x<&>") for t in titles)


def test_top_functions_by_self_samples() -> None:
    top = flamegraph.top_functions(flamegraph.parse_collapsed(RAW))
    assert top[0] == {"function": "handler (c.py:9)", "self": 30, "self_pct": 66.7, "total_pct": 66.7}
    assert top[1]["function"] == "serve (b.py:5)" and top[1]["total_pct"] == 88.9


class Inner:
    def __init__(self) -> None:
        self.lines: list[tuple[Any, ...]] = []

    def log(self, *args: Any) -> None:
        self.lines.append(args)


def test_slow_log_passes_on_and_logs_only_slow(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    reports: list[dict[str, Any]] = []
    inner = Inner()
    try:
        log = SlowLog(0.5, inner, set(), loop, stacks=False, report=reports.append)
        with caplog.at_level(logging.WARNING, "asynccluster.worker"):
            log.log({"method": "GET", "path": "/fast"}, 200, 2, 0.1)
            log.log({"method": "GET", "path": "/slow", "query_string": b"k=secret"}, 200, 2, 0.75)
    finally:
        loop.close()
    assert len(inner.lines) == 2
    assert [r["request"] for r in reports] == ["GET /slow"] and reports[0]["ms"] == 750.0
    assert [r.getMessage() for r in caplog.records] == ["slow request: GET /slow -> 200 in 750 ms (threshold 500 ms)"]


def test_slow_log_lines_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    now = [0.0]
    try:
        log = SlowLog(0.01, None, set(), loop, stacks=False, clock=lambda: now[0])
        with caplog.at_level(logging.WARNING, "asynccluster.worker"):
            for _ in range(100):
                log.log({"method": "GET", "path": "/"}, 200, 0, 1.0)
            now[0] = slowlog.WINDOW + 1
            log.log({"method": "GET", "path": "/"}, 200, 0, 1.0)
    finally:
        loop.close()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == slowlog.LINES_PER_WINDOW + 1
    assert messages[-1].endswith(f"({100 - slowlog.LINES_PER_WINDOW} more slow requests were not logged)")


def test_sweep_records_the_await_chain_of_a_running_request() -> None:
    class Cycle:  # the attributes the sweep reads from worker/cycle.py's Cycle
        def __init__(self) -> None:
            self.started_at = time.perf_counter() - 1.0
            self.scope = {"method": "GET", "path": "/x"}

        async def _main(self) -> None:
            await asyncio.sleep(10)

    async def scenario() -> list[str]:
        cycle = Cycle()
        task = asyncio.get_running_loop().create_task(cycle._main())
        await asyncio.sleep(0)
        log = SlowLog(0.5, None, {task}, asyncio.get_running_loop(), stacks=False)
        log.sweep(time.perf_counter())
        stack = log.samples[id(cycle.scope)][2]
        task.cancel()
        return stack

    stack = asyncio.run(scenario())
    assert stack[0].endswith("in _main") and stack[-1].endswith("in sleep")
    assert json.dumps(stack)
