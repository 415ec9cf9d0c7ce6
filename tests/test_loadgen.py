"""The load generator of tests/loadgen.py against tiny in-test asyncio servers on 127.0.0.1.

Each server misbehaves in one way, and the test checks that the generator counts it as the
right kind of failure, retries only what a real client would retry (RFC 9112 §9.3.1), and
stops at its request budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.loadgen import LoadGenerator, load_running, run_load

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

BODY = b"hello"


def response(status: str = "200 OK", body: bytes = BODY, extra: bytes = b"", length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return b"HTTP/1.1 " + status.encode() + b"\r\ncontent-length: %d\r\n" % size + extra + b"\r\n" + body


async def read_request(reader: asyncio.StreamReader) -> bool:
    """Read one GET's header section; False at end of stream."""
    try:
        await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    return True


def abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN (SO_LINGER 0), like a process that died."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[int]:
    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def answering(payload: Callable[[int], bytes], *, first_only: bool = False, rst: bool = False) -> Handler:
    """A keep-alive server; with first_only it drops a connection at its second request."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        while await read_request(reader):
            if first_only and served == 1:
                abort(writer) if rst else writer.close()
                return
            writer.write(payload(served))
            await writer.drain()
            served += 1

    return handle


async def test_counts_ok_responses_and_stops_at_the_budget() -> None:
    async with serve(answering(lambda _: response(extra=b"x-pid: 41\r\n"))) as port:
        result = await run_load("127.0.0.1", port, keepalive=3, fresh=2, max_requests=50, duration=30)
    assert (result.ok, result.failed, result.retried) == (50, 0, 0)
    assert result.pids == {"41": 50}
    assert result.statuses == {200: 50}
    assert result.connections >= 3 + 1  # keep-alive connections plus at least one fresh one


async def test_a_reused_connection_closed_by_the_server_is_retried_once() -> None:
    async with serve(answering(lambda _: response(), first_only=True)) as port:
        result = await run_load("127.0.0.1", port, keepalive=2, fresh=0, max_requests=20, duration=30)
    assert result.failed == 0
    assert result.ok == 20
    # Each loop's first request is on a fresh connection; every later one meets a closed reused one.
    assert result.retried == 20 - 2
    assert set(result.retry_causes) == {"closed"}


async def test_a_reused_connection_reset_by_the_server_is_retried_once() -> None:
    async with serve(answering(lambda _: response(), first_only=True, rst=True)) as port:
        result = await run_load("127.0.0.1", port, keepalive=1, fresh=0, max_requests=10, duration=30)
    assert (result.ok, result.failed, result.retried) == (10, 0, 9)
    assert set(result.retry_causes) <= {"closed", "reset"}


async def test_a_fresh_connection_is_never_retried() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with serve(hang_up) as port:
        result = await run_load("127.0.0.1", port, keepalive=1, fresh=1, max_requests=10, duration=30)
    assert (result.ok, result.failed, result.retried) == (0, 10, 0)
    assert result.failures == {"closed": 10}


async def test_connection_close_from_the_server_is_honoured() -> None:
    async with serve(answering(lambda _: response(extra=b"connection: close\r\n"))) as port:
        result = await run_load("127.0.0.1", port, keepalive=2, fresh=0, max_requests=12, duration=30)
    assert (result.ok, result.failed, result.retried) == (12, 0, 0)
    assert result.connections == 12
    assert result.server_closes == 12


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (response(status="500 Internal Server Error"), "status_500"),
        (response(status="404 Not Found"), "status_404"),
        (response(length=10), "truncated"),
        (b"HTTP/1.1 2x0 OK\r\ncontent-length: 0\r\n\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab", "malformed"),
    ],
)
async def test_bad_responses_are_failures_of_their_kind(payload: bytes, kind: str) -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await read_request(reader):
            writer.write(payload)
            await writer.drain()

    async with serve(once) as port:
        result = await run_load("127.0.0.1", port, keepalive=1, fresh=1, max_requests=6, duration=30)
    assert result.failures == {kind: 6}
    assert (result.ok, result.retried) == (0, 0)


async def test_a_response_cut_on_a_reused_connection_is_not_retried() -> None:
    """Bytes of the response arrived: RFC 9112 §9.3.1 no longer allows a silent retry."""
    payloads = {0: response(), 1: b"HTTP/1.1 200 OK\r\n"}
    async with serve(answering(lambda n: payloads[min(n, 1)], first_only=False)) as port:
        result = await run_load("127.0.0.1", port, keepalive=1, fresh=0, max_requests=2, duration=5, timeout=0.5)
    assert result.ok == 1
    assert result.retried == 0
    assert result.failed == 1 and set(result.failures) <= {"timeout", "truncated"}


async def test_a_silent_server_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes

    async with serve(silent) as port:
        result = await run_load("127.0.0.1", port, keepalive=1, fresh=1, max_requests=2, duration=30, timeout=0.2)
    assert result.failures == {"timeout": 2}


async def test_refused_connections_are_failures() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens on this port now
    result = await run_load("127.0.0.1", port, keepalive=1, fresh=1, max_requests=4, duration=30)
    assert result.failures == {"refused": 4}
    assert result.connections == 0


async def test_pids_since_a_mark_and_stop() -> None:
    pid = {"value": b"1"}

    handler = answering(lambda _: response(extra=b"x-pid: " + pid["value"] + b"\r\n"))
    async with serve(handler) as port, load_running("127.0.0.1", port, keepalive=1, fresh=1, duration=30) as gen:
        assert await gen.wait_for_responses(5, timeout=10)
        mark = gen.mark()
        pid["value"] = b"2"
        assert await gen.wait_for_responses(5, timeout=10)
        assert "2" in gen.pids_since(mark)
        assert gen.pids_since(gen.mark()) == set()
    assert gen.result.failed == 0
    assert set(gen.result.pids) == {"1", "2"}
    assert gen.result.requests < 100_000  # stop() ended it, not the budget


def test_only_loopback_targets() -> None:
    with pytest.raises(ValueError):
        LoadGenerator("192.0.2.1", 80)
