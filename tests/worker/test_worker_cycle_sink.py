"""Cycle talks to its connection only through the ResponseSink interface (issue 10): a fake
sink that has nothing but the interface's members drives whole responses."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

from asynccluster.config import Config
from asynccluster.http.response import ResponseWriter
from asynccluster.observe.stats import WorkerStats
from asynccluster.worker import cycle as cycle_module
from asynccluster.worker.cycle import Cycle
from asynccluster.worker.flow import FlowControl
from asynccluster.worker.interfaces import ResponseSink
from asynccluster.worker.state import ServerState
from tests.waiting import wait_for
from tests.worker.apps import hello


class NullTransport:
    """Enough of a transport for FlowControl's read pauses."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class FakeSink:
    """Exactly the ResponseSink members (slotted: any other attribute access fails)."""

    __slots__ = ("aborted", "completed", "flow", "writer", "written")

    def __init__(self) -> None:
        self.writer = ResponseWriter(None)
        self.flow = FlowControl(NullTransport())  # type: ignore[arg-type]
        self.written: list[bytes] = []
        self.completed: list[tuple[object, bool]] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def error_bytes(self, status: int) -> bytes:
        return b"HTTP/1.1 %d Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n" % status

    def response_complete(self, cycle: object, keep_alive: bool) -> None:
        self.completed.append((cycle, keep_alive))

    def abort_response(self) -> None:
        self.aborted = True

    def close_unread_body(self) -> None:
        raise AssertionError("not expected in these tests")


def make_cycle(app: Any, sink: ResponseSink, method: str = "GET", keep_alive: bool = True) -> Cycle:
    config = Config(access_log=False, proxy_headers=False, lifespan="off", date_header=False)
    state = ServerState(config, app, WorkerStats(), asyncio.get_running_loop())
    scope = {"type": "http", "method": method, "path": "/x", "http_version": "1.1", "headers": []}
    cycle = Cycle(sink, state, scope, keep_alive, False)
    cycle.body_complete = True  # a request without a body
    return cycle


async def test_a_fake_sink_drives_a_whole_response() -> None:
    sink = FakeSink()
    cycle = make_cycle(hello, sink)
    cycle.run()
    await wait_for(lambda: bool(sink.completed), timeout=5.0)
    data = b"".join(sink.written)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nhello /x")
    assert sink.completed == [(cycle, True)]
    assert cycle.response_complete and cycle.state.stats.requests == 1


async def test_a_streamed_response_goes_through_write_and_completes_once() -> None:
    async def stream(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"a", b"b"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    sink = FakeSink()
    cycle = make_cycle(stream, sink, keep_alive=False)
    cycle.run()
    await wait_for(lambda: bool(sink.completed), timeout=5.0)
    assert b"".join(sink.written).endswith(b"1\r\na\r\n1\r\nb\r\n0\r\n\r\n")  # chunked
    assert sink.completed == [(cycle, False)]  # the request's own Connection: close is passed on


async def test_a_failing_app_gets_the_sinks_500_and_completes() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    sink = FakeSink()
    cycle = make_cycle(broken, sink)
    cycle.run()
    await wait_for(lambda: bool(sink.completed), timeout=5.0)
    assert sink.written == [sink.error_bytes(500)]
    assert sink.completed == [(cycle, False)]


async def test_a_response_that_cannot_be_completed_is_aborted_through_the_sink() -> None:
    async def short(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})

    sink = FakeSink()
    cycle = make_cycle(short, sink)
    cycle.run()
    await wait_for(lambda: sink.aborted, timeout=5.0)
    assert not sink.completed and cycle.disconnected


def test_cycle_imports_no_connection_module() -> None:
    """The only worker types cycle.py names are the interfaces and the shared state."""
    tree = ast.parse(Path(cycle_module.__file__).read_text())
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("asynccluster.worker")
    }
    assert not imported & {
        "asynccluster.worker.protocol",
        "asynccluster.worker.connection",
        "asynccluster.worker.h2protocol",
        "asynccluster.worker.tls",
    }
    assert "asynccluster.worker.interfaces" in imported
