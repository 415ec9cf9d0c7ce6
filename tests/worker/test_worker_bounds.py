"""Issue 9 item 6, worker side: a body timeout, bounded output for clients that never read,
one 503 summary per interval, and no streaming into a closed connection."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from typing import Any

import pytest

from asynccluster.worker.connstate import ConnState
from tests.waiting import wait_for
from tests.worker.apps import TEXT, hello
from tests.worker.conftest import StartServer
from tests.worker.h11check import parse_responses, read_responses, read_until_closed
from tests.worker.test_worker_http import get
from tests.worker.test_worker_protocol_unit import make, settle


async def reads_body(scope: Any, receive: Any, send: Any) -> None:
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message["body"])
        if not message["more_body"]:
            break
    await send({"type": "http.response.start", "status": 200, "headers": TEXT})
    await send({"type": "http.response.body", "body": b"%d" % size})


# ---------------------------------------------------------------- --body-timeout


async def test_a_stalled_body_is_answered_408_and_closed(start_server: StartServer) -> None:
    running = await start_server(reads_body, body_timeout=0.3)
    reader, writer = await running.connect()
    writer.write(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\nonly part")
    data = await read_until_closed(reader, 5)
    writer.close()
    assert parse_responses(data, ["POST"], eof=True)[0].status == 408


async def test_a_body_that_keeps_coming_is_not_cut(start_server: StartServer) -> None:
    """The timeout is between pieces, not for the whole body."""
    running = await start_server(reads_body, body_timeout=0.3)
    reader, writer = await running.connect()
    writer.write(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\n")
    loop = asyncio.get_running_loop()
    for _ in range(10):  # 10 pieces 0.1 s apart: 1 s in all, each gap well under 0.3 s
        writer.write(b"x")
        waiter = loop.create_future()  # the client's pace, not synchronisation
        loop.call_later(0.1, waiter.set_result, None)
        await waiter
    responses, _ = await asyncio.wait_for(read_responses(reader, ["POST"]), 5)
    writer.close()
    assert responses[0].status == 200 and responses[0].body == b"10"


async def test_time_the_server_stops_reading_does_not_count() -> None:
    """Back-pressure (the app is not reading) is not the client's delay."""
    protocol, transport = make(reads_body, body_timeout=1.0)
    protocol.flow.pause_reading(2)  # as BODY back-pressure does
    protocol.data_received(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\nab")
    assert protocol.conn_state is ConnState.BODY
    protocol.check_timeout(protocol.deadline)
    assert not transport.writes and protocol.conn_state is ConnState.BODY  # re-armed, nothing sent
    protocol.flow.resume_reading(2)
    protocol.check_timeout(protocol.deadline)
    await settle()
    assert parse_responses(transport.data, ["POST"], eof=False)[0].status == 408


# ---------------------------------------------------------------- clients that never read


async def test_reading_pauses_while_the_write_buffer_is_full() -> None:
    protocol, transport = make(hello)
    protocol.pause_writing()
    assert not transport.reading
    protocol.resume_writing()
    assert transport.reading


async def test_a_pipelining_client_that_never_reads_costs_bounded_memory(start_server: StartServer) -> None:
    body = b"y" * 4096

    async def big(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": TEXT})
        await send({"type": "http.response.body", "body": body})

    running = await start_server(big)
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", running.port))
    # 1 KB requests, so the kernel's socket buffers cannot absorb them all (20 MB).
    batch = get("/", b"x-pad: " + b"p" * 1000 + b"\r\n") * 100
    sent = 0
    # Up to 20,000 requests (80 MB of responses if all were buffered), never reading: a server
    # that stops reading makes a batch wait past its 1 s deadline, which ends the loop.
    while sent < 20_000:
        try:
            await asyncio.wait_for(loop.sock_sendall(sock, batch), 1.0)
        except asyncio.TimeoutError:
            break
        sent += 100
    connections = list(running.server.state.connections)
    assert len(connections) == 1
    buffered = connections[0].transport.get_write_buffer_size()
    queued = len(connections[0].pipeline)
    sock.close()
    assert queued <= 1100  # at most one read's worth of requests beyond --limit-pipeline
    assert sent < 20_000, "the server kept reading although nothing was read from it"
    assert buffered < 8 * 1024 * 1024, f"{buffered} bytes buffered for one connection"


# ---------------------------------------------------------------- 503 summary


async def test_connections_over_the_limit_are_summarised_not_logged_each(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start_server(hello, limit_concurrency=1, timeout_keep_alive=0.2)
    holder, holder_writer = await running.connect()
    holder_writer.write(get("/hold"))
    await read_responses(holder, ["GET"])
    caplog.set_level(logging.WARNING, logger="asynccluster.worker")
    for _ in range(30):
        data = await running.exchange(get("/"))
        assert data.startswith(b"HTTP/1.1 503")
    await wait_for(lambda: any("answered 503" in r.getMessage() for r in caplog.records), what="the summary")
    lines = [r.getMessage() for r in caplog.records if "connection limit" in r.getMessage()]
    holder_writer.close()
    # One line per 10 s interval (a tick may fall inside the loop above and report part of
    # them), never one per connection: at most two lines here, and they count at most 30.
    counts = [int(re.search(r"(\d+) connection\(s\)", line).group(1)) for line in lines]  # type: ignore[union-attr]
    assert 1 <= len(lines) <= 2 and 1 <= sum(counts) <= 30


# ---------------------------------------------------------------- streaming into a closed connection


async def test_a_stream_that_never_yields_stops_when_the_client_is_gone(start_server: StartServer) -> None:
    outcome: list[str] = []

    async def stream(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": TEXT})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await gone.wait()
        try:
            for _ in range(1000):  # never suspends unless the transport pauses writing
                await send({"type": "http.response.body", "body": b"z" * 1024, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            outcome.append("completed")
        except OSError:
            outcome.append("disconnected")

    gone = asyncio.Event()
    running = await start_server(stream)
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", running.port))
    await loop.sock_sendall(sock, get("/"))
    await asyncio.wait_for(loop.sock_recv(sock, 100), 5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # linger 0: a reset, so the server's next write fails
    gone.set()  # the app resumes before the loop has read the reset
    await wait_for(lambda: bool(outcome), what="the app to finish")
    assert outcome == ["disconnected"]
