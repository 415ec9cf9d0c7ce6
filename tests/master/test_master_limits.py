"""Issue 9 on the master's side: bounded connections, summarised accept errors, control input."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from asynccluster.config import Config
from asynccluster.master import accepterrors, control
from asynccluster.master.control import ControlError, parse_scale, start_control
from asynccluster.observe.streams import Connections, Throttled
from tests.control.fakes import FakeSupervisor
from tests.waiting import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_throttled_logs_once_per_interval_with_the_count(caplog: Any) -> None:
    clock = Clock()
    throttled = Throttled(logging.getLogger("test.throttled"), interval=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, "test.throttled"):
        logged = [throttled.event(logging.WARNING, "accept failed") for _ in range(1000)]
        clock.now = 10.0
        logged.append(throttled.event(logging.WARNING, "accept failed"))
    assert logged.count(True) == 2
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["accept failed", "accept failed (1000 times in the last 10 s)"]


def test_accept_resource_errors_are_summarised_and_others_passed_on(caplog: Any) -> None:
    loop = asyncio.new_event_loop()
    try:
        seen: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: seen.append(context))
        summary = accepterrors.install(loop)
        emfile = OSError(errno.EMFILE, "Too many open files")
        for _ in range(500):
            loop.call_exception_handler({"message": "socket.accept() out of system resource", "exception": emfile})
        loop.call_exception_handler({"message": "something else", "exception": ValueError("x")})
    finally:
        loop.close()
    assert summary.total == 500
    assert [r.getMessage() for r in caplog.records if "cannot accept" in r.getMessage()] == [
        "cannot accept connections: Too many open files; pausing accepts for 1 s"
    ]
    assert [context["message"] for context in seen] == ["something else"]


@pytest.mark.parametrize("text", ["٣", "+١٢", "1" * 10, "", "1e3", " 2 x"])
def test_scale_counts_are_ascii_digits(text: str) -> None:
    with pytest.raises(ControlError, match="expected N, \\+N or -N"):
        parse_scale(text, 2)


async def test_control_caps_connections_evicts_the_oldest_idle_and_answers_bad_args(tmp_path: Path) -> None:
    supervisor = FakeSupervisor()
    config = Config(app="tests.apps.basic:app", name="web", control_dir=str(tmp_path / "ctl"))
    close = await start_control(supervisor, config)
    path = str(tmp_path / "ctl" / "web.sock")
    idle = [await asyncio.open_unix_connection(path) for _ in range(control.MAX_CONNECTIONS + 5)]
    try:
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b'{"cmd": "scale", "args": [3]}\n{"cmd": "scale", "args": {"count": "\xd9\xa3"}}\n')
        answers = [json.loads(await asyncio.wait_for(reader.readline(), 10)) for _ in range(2)]
        assert answers[0]["ok"] is False and "'args' must be a JSON object" in answers[0]["error"]
        assert answers[1]["ok"] is False and answers[1]["usage"] is True
        # The oldest idle connections were closed to make room: they read EOF.
        assert await asyncio.wait_for(idle[0][0].read(), 10) == b""
        writer.close()
    finally:
        for _, idle_writer in idle:
            idle_writer.close()
        await close()


async def test_connections_refuse_when_every_one_is_busy() -> None:
    connections = Connections(limit=1, name="test", refusal=b"busy\n")
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.busy(writer)
        await release.wait()

    server = await asyncio.start_server(connections.track(handler), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        first = await asyncio.open_connection("127.0.0.1", port)
        await wait_for(lambda: len(connections._open) == 1, "the first connection to be held", 10)
        second_reader, second_writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(second_reader.read(), 10) == b"busy\n"
        assert connections.refused == 1
        second_writer.close()
        first[1].close()
    finally:
        release.set()
        server.close()
        await connections.close()


def test_a_metric_keeps_at_most_max_series_and_warns_once(caplog: Any) -> None:
    from asynccluster import metrics

    metrics.clear()
    try:
        by_path = metrics.counter("bomb_requests", labels=("path",))
        for index in range(metrics.MAX_SERIES + 500):
            by_path.labels(path=f"/item/{index}").inc()
        by_path.labels(path="/item/0").inc()  # an existing series still counts
        snapshot = metrics.snapshot()["bomb_requests"]
    finally:
        metrics.clear()
    assert len(snapshot["samples"]) == metrics.MAX_SERIES and snapshot["dropped"] == 500
    assert [["/item/0"], 2.0] in snapshot["samples"]
    warnings = [r.getMessage() for r in caplog.records if "bomb_requests" in r.getMessage()]
    assert len(warnings) == 1 and "1000 series" in warnings[0]


def test_label_values_are_cut_and_metrics_past_the_limit_are_not_exported(caplog: Any) -> None:
    """The two other ways to grow the heartbeat (attack run on issue 9): huge label values and
    a metric name per request."""
    from asynccluster import metrics

    metrics.clear()
    try:
        big = metrics.gauge("big_labels", labels=("name",))
        big.labels(name="x" * 20_000).set(1)
        for index in range(metrics.MAX_METRICS + 50):
            metrics.counter(f"dynamic_{index}").inc()
        snapshot = metrics.snapshot()
    finally:
        metrics.clear()
    assert snapshot["big_labels"]["samples"] == [[["x" * metrics.MAX_LABEL_VALUE], 1.0]]
    assert len(snapshot) == metrics.MAX_METRICS  # big_labels + 99 dynamic ones
    warnings = [r.getMessage() for r in caplog.records if "not exported" in r.getMessage()]
    assert len(warnings) == 1 and "'dynamic_99'" in warnings[0]


def test_the_fd_reserve_is_freed_for_a_spawn_and_taken_back() -> None:
    from asynccluster.master.fdreserve import FdReserve

    reserve = FdReserve(size=4)
    try:
        assert reserve.held == 4
        with reserve.released():
            assert reserve.held == 0
        assert reserve.held == 4
    finally:
        reserve.release()


def test_connection_caps_shrink_under_a_low_fd_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    from asynccluster.observe.streams import connection_cap

    monkeypatch.setattr(resource, "getrlimit", lambda _which: (256, 256))
    assert connection_cap(64) == 32 and connection_cap(16) == 16
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (16, 16))
    assert connection_cap(64) == 4


def test_worker_stats_call_the_request_limit_at_exactly_n() -> None:
    from asynccluster.observe.stats import WorkerStats

    stats = WorkerStats()
    calls: list[int] = []
    stats.request_limit = 3
    stats.on_limit = lambda: calls.append(stats.requests)
    for _ in range(5):
        stats.record_response(200, 0.001)
    assert calls == [3]


@pytest.mark.parametrize(("count", "target"), [(3, 3), ("3", 3), ("+1", 3), ("-1", 1), (" 2 ", 2)])
def test_scale_count_forms(count: object, target: int) -> None:
    assert parse_scale(count, 2) == target


@pytest.mark.parametrize("count", [-1, 0, True, 2.0, None, [1]])
def test_a_json_number_is_an_absolute_count_and_other_types_are_refused(count: object) -> None:
    # Found by the attack on issue 10: {"count": -1} was read as the text "-1", one fewer.
    with pytest.raises(ControlError):
        parse_scale(count, 2)
