"""HttpProtocol driven with a fake transport: coalescing, eagerness, flow control, timers."""

from __future__ import annotations

import asyncio
from typing import Any

from asynccluster.config import Config
from asynccluster.observe.stats import WorkerStats
from asynccluster.worker.compat import EAGER_TASKS
from asynccluster.worker.connstate import ConnState
from asynccluster.worker.flow import BODY_HIGH_WATER
from asynccluster.worker.protocol import HttpProtocol
from asynccluster.worker.state import ServerState
from tests.waiting import wait_for
from tests.worker.apps import hello, slow_path
from tests.worker.h11check import parse_responses
from tests.worker.test_worker_http import get


class FakeTransport:
    """Records writes and flow-control calls; never touches a socket."""

    def __init__(self, protocol: HttpProtocol) -> None:
        self.protocol = protocol
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.eof_written = False
        self.reading = True
        self.pause_calls = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False
        self.pause_calls += 1

    def resume_reading(self) -> None:
        self.reading = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    @property
    def data(self) -> bytes:
        return b"".join(self.writes)


def make(app: Any, **settings: Any) -> tuple[HttpProtocol, FakeTransport]:
    config = Config(**{"access_log": False, "proxy_headers": False, "lifespan": "off", **settings})
    state = ServerState(config, app, WorkerStats(), asyncio.get_running_loop())
    protocol = HttpProtocol(state)
    transport = FakeTransport(protocol)
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def settle_until(condition: Any) -> None:
    """Run loop passes until ``condition()`` holds (tasks start on the next pass before 3.12)."""
    for _ in range(50):
        if condition():
            return
        await asyncio.sleep(0)
    assert condition()


async def test_pipelined_responses_of_one_read_are_one_write() -> None:
    protocol, transport = make(hello)
    protocol.data_received(b"".join(get(f"/{n}") for n in range(16)))
    if EAGER_TASKS:
        # Python >= 3.12: each app runs in an eagerly started Task inside data_received, so
        # the 16 responses leave in one write.
        assert len(transport.writes) == 1
    await settle_until(lambda: protocol.state.stats.requests == 16)
    responses = parse_responses(transport.data, ["GET"] * 16, eof=False)
    assert [r.body for r in responses] == [f"hello /{n}".encode() for n in range(16)]


async def test_every_app_call_runs_in_a_real_task() -> None:
    """Issue 8 item 1: asyncio.current_task() is the request's own Task from the app's first line."""
    seen: list[asyncio.Task[Any] | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(asyncio.current_task())
        await hello(scope, receive, send)

    protocol, transport = make(app)
    protocol.data_received(get("/") + get("/2"))
    if EAGER_TASKS:  # started eagerly: answered within the callback, no task kept alive
        assert protocol.state.stats.requests == 2 and protocol.state.tasks == set()
    await settle_until(lambda: protocol.state.stats.requests == 2)
    assert len(seen) == 2 and all(task is not None for task in seen) and seen[0] is not seen[1]
    assert transport.writes


async def test_suspending_app_becomes_a_task_and_pipeline_resumes() -> None:
    protocol, transport = make(slow_path)
    protocol.data_received(get("/a") + get("/yield") + get("/b"))
    await settle_until(lambda: protocol.state.stats.requests == 3)
    responses = parse_responses(transport.data, ["GET"] * 3, eof=False)
    assert [r.body for r in responses] == [b"hello /a", b"hello /yield", b"hello /b"]
    await settle_until(lambda: protocol.state.tasks == set())  # finished tasks are let go


async def test_reading_pauses_beyond_the_pipeline_limit_and_resumes() -> None:
    protocol, transport = make(slow_path, limit_pipeline=2)
    protocol.data_received(b"".join(get(f"/yield/{n}") for n in range(5)))
    assert not transport.reading  # 5 queued > 2
    await wait_for(lambda: protocol.state.stats.requests == 5, what="all five answered")
    assert transport.reading
    assert len(parse_responses(transport.data, ["GET"] * 5, eof=False)) == 5


async def test_body_high_water_pauses_until_the_app_reads() -> None:
    release = asyncio.Event()
    got: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        total = 0
        more = True
        while more:
            message = await receive()
            total += len(message["body"])
            more = message["more_body"]
        got.append(total)
        await hello(scope, receive, send)

    protocol, transport = make(app)
    size = BODY_HIGH_WATER * 3
    protocol.data_received(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n\r\n" % size)
    protocol.data_received(b"x" * (BODY_HIGH_WATER + 1))
    assert not transport.reading  # the app has not read anything yet
    release.set()
    await settle()
    assert transport.reading  # it read: resume
    protocol.data_received(b"x" * (size - BODY_HIGH_WATER - 1))
    await settle()
    assert got == [size]


async def test_write_back_pressure_makes_send_wait() -> None:
    sent: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for n in range(3):
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            sent.append(n)
        await send({"type": "http.response.body", "body": b""})

    protocol, transport = make(app)
    protocol.pause_writing()
    protocol.data_received(get("/"))
    assert sent == []  # the first body send is waiting for drain
    protocol.resume_writing()
    await settle()
    assert sent == [0, 1, 2]
    assert parse_responses(transport.data, ["GET"], eof=False)[0].body == b"xxx"


async def test_header_timeout_answers_408_and_lingers() -> None:
    protocol, transport = make(hello, header_timeout=1.0)
    assert protocol.conn_state is ConnState.FRESH
    protocol.data_received(b"GET / HTTP/1.1\r\n")
    assert protocol.conn_state is ConnState.HEAD
    protocol.check_timeout(protocol.deadline - 0.001)
    assert not transport.writes  # not yet
    protocol.check_timeout(protocol.deadline)
    assert parse_responses(transport.data, ["GET"], eof=False)[0].status == 408
    assert protocol.conn_state is ConnState.LINGER and transport.eof_written and not transport.closed
    protocol.data_received(b"more junk")  # discarded while lingering
    protocol.check_timeout(protocol.deadline)
    assert transport.closed


async def test_idle_timeout_closes_without_a_response() -> None:
    protocol, transport = make(hello, timeout_keep_alive=1.0)
    protocol.data_received(get("/"))
    await settle()
    assert protocol.conn_state is ConnState.IDLE
    writes = len(transport.writes)
    protocol.check_timeout(protocol.deadline)
    assert transport.closed and len(transport.writes) == writes


async def test_protocol_error_is_answered_after_earlier_responses() -> None:
    protocol, transport = make(slow_path)
    protocol.data_received(get("/yield") + b"BROKEN\r\n\r\n")
    assert transport.writes == []  # /yield still running: the 400 waits its turn
    await settle()
    responses = parse_responses(transport.data, ["GET", "GET"], eof=False)
    assert [r.status for r in responses] == [200, 400]
    assert transport.eof_written


async def test_connection_lost_disconnects_a_waiting_app() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                seen.append("disconnect")
                return

    protocol, _transport = make(app)
    protocol.data_received(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\n")
    assert protocol.state.stats.in_flight == 1
    protocol.connection_lost(None)
    await settle()
    assert seen == ["disconnect"]
    assert protocol.state.stats.in_flight == 0 and protocol.state.stats.connections == 0


def start_draining(protocol: HttpProtocol, grace: float = 1.0) -> None:
    """What Server.drain does to the shared state before it calls shutdown() on each connection."""
    state = protocol.state
    state.draining = True
    state.drain_idle_deadline = state.now + grace


async def test_drain_answers_a_request_on_an_idle_connection_with_close() -> None:
    protocol, transport = make(hello)
    protocol.data_received(get("/"))
    await settle()
    start_draining(protocol)
    protocol.shutdown()
    assert protocol.conn_state is ConnState.DRAIN_IDLE and not transport.closed  # idle: not closed under the client
    protocol.data_received(get("/next"))  # the client's next request was already on its way
    await settle()
    responses = parse_responses(transport.data, ["GET", "GET"], eof=False)
    assert [r.header(b"connection") for r in responses] == [None, b"close"]
    assert responses[1].body == b"hello /next"
    assert transport.closed


async def test_drain_closes_a_still_idle_connection_in_stages() -> None:
    protocol, transport = make(hello)
    protocol.data_received(get("/"))
    await settle()
    writes = len(transport.writes)
    start_draining(protocol)
    protocol.shutdown()
    protocol.check_timeout(protocol.deadline - 0.001)
    assert not transport.eof_written  # the grace is not over
    protocol.check_timeout(protocol.deadline)
    # Write side shut first (RFC 9112 §9.6), reading on: a request racing the FIN is dropped, not reset.
    assert transport.eof_written and not transport.closed and protocol.conn_state is ConnState.LINGER
    protocol.data_received(get("/late"))
    assert len(transport.writes) == writes  # nothing answered after the FIN
    protocol.check_timeout(protocol.deadline)
    assert transport.closed


async def test_drain_grace_never_extends_the_keep_alive_deadline() -> None:
    protocol, _transport = make(hello, timeout_keep_alive=0.5)
    protocol.data_received(get("/"))
    await settle()
    keep_alive_deadline = protocol.deadline
    start_draining(protocol, grace=60.0)
    protocol.shutdown()
    assert protocol.conn_state is ConnState.DRAIN_IDLE and protocol.deadline == keep_alive_deadline


async def test_unread_body_then_idle_gets_the_keep_alive_timer() -> None:
    protocol, _transport = make(hello)
    protocol.data_received(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 4\r\n\r\nab")
    await settle()
    assert protocol.conn_state is ConnState.BODY  # answered; the rest of the body is still due (--body-timeout)
    protocol.data_received(b"cd")
    assert protocol.conn_state is ConnState.IDLE


async def test_drain_marks_the_last_in_flight_response_close() -> None:
    release = asyncio.Event()

    async def waiting(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await hello(scope, receive, send)

    protocol, transport = make(waiting)
    protocol.data_received(get("/1") + get("/2"))
    start_draining(protocol)
    protocol.shutdown()
    assert not transport.closed
    release.set()
    await settle()
    responses = parse_responses(transport.data, ["GET", "GET"], eof=False)
    assert [r.header(b"connection") for r in responses] == [None, b"close"]
    assert transport.closed


async def test_drain_never_closes_after_a_response_whose_head_said_keep_alive() -> None:
    """A response started before the drain (its head built without Connection: close) must
    not be followed by a close the client cannot see coming: the connection waits as a
    draining idle one and its next request gets Connection: close (wrk read errors while a
    FastAPI app was reloaded: middleware sends the head and the body in different steps)."""
    release = asyncio.Event()

    async def two_steps(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await release.wait()
        await send({"type": "http.response.body", "body": b"ok"})

    protocol, transport = make(two_steps)
    protocol.data_received(get("/first"))
    await settle_until(lambda: bool(protocol.pipeline) and protocol.pipeline[0].response_started)
    start_draining(protocol)
    protocol.shutdown()
    release.set()
    await settle_until(lambda: not protocol.pipeline)
    assert not transport.closed and protocol.conn_state is ConnState.DRAIN_IDLE
    protocol.data_received(get("/next"))  # the client's next request, sent on the keep-alive promise
    await settle_until(lambda: transport.closed)
    responses = parse_responses(transport.data, ["GET", "GET"], eof=False)
    assert [r.header(b"connection") for r in responses] == [None, b"close"]
