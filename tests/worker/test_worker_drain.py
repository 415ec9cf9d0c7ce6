"""Graceful drain, timeouts (keep-alive, header 408) and the connection limit (503)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from asynccluster.config import Config
from asynccluster.worker.server import serve
from tests.waiting import wait_for
from tests.worker.apps import hello
from tests.worker.conftest import StartServer, listening_socket
from tests.worker.h11check import parse_responses, read_responses, read_until_closed
from tests.worker.test_worker_http import get


def gated_app(gate: asyncio.Event, started: list[str]) -> Any:
    """Answers /slow only once ``gate`` is set; everything else at once."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            started.append(scope["path"])
            await gate.wait()
        await hello(scope, receive, send)

    return app


async def test_drain_finishes_in_flight_with_close_and_closes_idle(start_server: StartServer) -> None:
    gate = asyncio.Event()
    started: list[str] = []
    running = await start_server(gated_app(gate, started))
    busy_reader, busy_writer = await running.connect()
    idle_reader, idle_writer = await running.connect()
    idle_writer.write(get("/idle"))
    (idle_response,), _ = await read_responses(idle_reader, ["GET"])
    assert idle_response.header(b"connection") is None  # kept alive, now idle
    busy_writer.write(get("/slow"))
    await wait_for(lambda: started == ["/slow"], what="the slow request to start")

    drain = asyncio.create_task(running.server.drain(5.0))
    # The idle connection is closed after the drain grace, without a response.
    assert await read_until_closed(idle_reader) == b""
    idle_writer.close()
    # New connections are refused once the listener is closed.
    await wait_for(lambda: running.server.connection_count() == 1, what="idle connection to go")
    with pytest.raises(ConnectionRefusedError):
        await running.connect()
    gate.set()
    raw = await read_until_closed(busy_reader)
    (response,) = parse_responses(raw, ["GET"])
    assert response.body == b"hello /slow" and response.header(b"connection") == b"close"
    assert await drain == 0
    busy_writer.close()
    idle_writer.close()
    await running.server.shutdown()


async def test_drain_answers_the_next_request_on_an_idle_connection(start_server: StartServer) -> None:
    """Issue 4: a keep-alive connection idle when the drain starts is not closed under the
    client's feet; its next request is answered, with Connection: close."""
    running = await start_server(hello)
    reader, writer = await running.connect()
    writer.write(get("/first"))
    (first,), _ = await read_responses(reader, ["GET"])
    assert first.header(b"connection") is None
    drain = asyncio.create_task(running.server.drain(5.0))
    await wait_for(lambda: running.server.state.draining, what="the drain to start")
    writer.write(get("/next"))
    (response,) = parse_responses(await read_until_closed(reader), ["GET"])
    assert response.body == b"hello /next" and response.header(b"connection") == b"close"
    assert await drain == 0
    writer.close()
    await running.server.shutdown()


async def test_drain_closes_idle_connections_without_forcing_them(start_server: StartServer) -> None:
    """Idle keep-alive clients do not hold a graceful stop until its timeout: the grace is
    bounded by half the drain timeout (the lingering close after it by a quarter), so they are
    closed by it and none is counted as forced, even when the clients do not close on our FIN."""
    running = await start_server(hello, timeout_keep_alive=0.2)
    clients = [await running.connect() for _ in range(3)]
    for reader, writer in clients:
        writer.write(get("/"))
        await read_responses(reader, ["GET"])
    assert await running.server.drain(3.0) == 0
    for reader, writer in clients:
        assert await read_until_closed(reader) == b""  # a clean EOF, no response
        writer.close()
    await running.server.shutdown()


async def test_drain_force_closes_after_the_timeout(start_server: StartServer) -> None:
    gate = asyncio.Event()  # never set: the request hangs
    started: list[str] = []
    running = await start_server(gated_app(gate, started))
    reader, writer = await running.connect()
    writer.write(get("/slow"))
    await wait_for(lambda: bool(started), what="the request to start")
    forced = await running.server.drain(0.2)
    assert forced == 1
    assert await read_until_closed(reader) == b""  # aborted: no response
    assert running.server.state.tasks == set()  # the app task was cancelled
    writer.close()
    await running.server.shutdown()


async def test_serve_runs_until_stop_then_drains() -> None:
    sock = listening_socket()
    port = sock.getsockname()[1]
    stop = asyncio.Event()
    task = asyncio.create_task(
        # (a short keep-alive timeout: the idle client's drain grace is short too)
        serve(
            Config(lifespan="off", access_log=False, graceful_timeout=2.0, timeout_keep_alive=0.2), hello, [sock], stop
        )
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(get("/x"))
    (response,), _ = await read_responses(reader, ["GET"])
    assert response.body == b"hello /x"
    stop.set()
    await asyncio.wait_for(task, 5)
    assert await read_until_closed(reader) == b""
    writer.close()


async def test_idle_keep_alive_connection_is_closed_after_the_timeout(start_server: StartServer) -> None:
    running = await start_server(hello, timeout_keep_alive=0.2)
    reader, writer = await running.connect()
    writer.write(get("/"))
    (response,), _ = await read_responses(reader, ["GET"])
    assert response.status == 200
    assert await read_until_closed(reader, timeout=5) == b""  # closed silently
    writer.close()


async def test_incomplete_head_gets_408(start_server: StartServer) -> None:
    running = await start_server(hello, header_timeout=0.2)
    reader, writer = await running.connect()
    writer.write(b"GET / HTTP/1.1\r\nhost: t\r\nx-slow: ")  # never finished
    raw = await read_until_closed(reader, timeout=5)
    writer.close()
    (response,) = parse_responses(raw, ["GET"])
    assert response.status == 408 and response.header(b"connection") == b"close"


async def test_slow_body_is_not_a_header_timeout(start_server: StartServer) -> None:
    """The header timeout covers the head only; a body may take longer."""

    async def read_all(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    running = await start_server(read_all, header_timeout=0.1)
    reader, writer = await running.connect()
    writer.write(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 4\r\n\r\nab")
    await asyncio.sleep(0.4)  # not synchronisation: the client is slow on purpose (> header timeout)
    writer.write(b"cd")
    (response,), _ = await read_responses(reader, ["POST"])
    writer.close()
    assert response.status == 200 and response.body == b"abcd"


async def test_connections_beyond_the_limit_get_503(start_server: StartServer) -> None:
    running = await start_server(hello, limit_concurrency=1)
    first_reader, first_writer = await running.connect()
    first_writer.write(get("/first"))
    (first,), _ = await read_responses(first_reader, ["GET"])
    assert first.status == 200
    raw = await running.exchange(get("/second"))
    (second,) = parse_responses(raw, ["GET"])
    assert second.status == 503 and second.header(b"connection") == b"close"
    first_writer.close()
    await wait_for(lambda: running.server.connection_count() == 0, what="first connection to close")
    raw = await running.exchange(get("/third", b"connection: close\r\n"))
    assert parse_responses(raw, ["GET"])[0].status == 200


async def test_stats_count_connections_and_requests(start_server: StartServer) -> None:
    running = await start_server(hello)
    stats = running.server.stats
    reader, writer = await running.connect()
    await wait_for(lambda: stats.connections == 1, what="connection counted")
    writer.write(get("/a") + get("/b"))
    await read_responses(reader, ["GET", "GET"])
    assert stats.requests == 2 and stats.status_counts == {200: 2} and stats.in_flight == 0
    assert sum(stats.latency_counts) == 2
    writer.close()
    await wait_for(lambda: stats.connections == 0, what="connection uncounted")
