"""The same server on uvloop, the loop workers run in production (transports differ in detail)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from asynccluster.config import Config
from asynccluster.worker.server import Server
from tests.waiting import wait_for
from tests.worker.apps import echo_scope, slow_path, streaming
from tests.worker.conftest import BASE, listening_socket
from tests.worker.h11check import parse_responses, read_responses, read_until_closed
from tests.worker.test_worker_http import get

uvloop = pytest.importorskip("uvloop")


def run_on_uvloop(app: Any, scenario: Callable[[Server, int], Awaitable[None]], **settings: Any) -> None:
    async def main() -> None:
        server = Server(Config(**{**BASE, **settings}), app)
        await server.startup()
        sock = listening_socket()
        await server.start_serving([sock])
        try:
            await asyncio.wait_for(scenario(server, sock.getsockname()[1]), 20)
        finally:
            await server.drain(1.0)
            await server.shutdown()

    uvloop.run(main())


def test_pipelining_bodies_and_streaming_on_uvloop() -> None:
    async def scenario(server: Server, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        paths = ["/a", "/sleep/0.02", "/yield", "/b"]
        writer.write(b"".join(get(p) for p in paths))
        responses, _ = await read_responses(reader, ["GET"] * len(paths))
        assert [r.body.decode() for r in responses] == [f"hello {p}" for p in paths]
        writer.close()

    run_on_uvloop(slow_path, scenario)


def test_chunked_upload_and_100_continue_on_uvloop() -> None:
    async def scenario(server: Server, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\nexpect: 100-continue\r\n\r\n")
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"3\r\nabc\r\n0\r\n\r\n")
        (response,), _ = await read_responses(reader, ["POST"])
        assert json.loads(response.body)["body"] == "abc"
        writer.close()

    run_on_uvloop(echo_scope, scenario)


def test_streaming_and_header_timeout_on_uvloop() -> None:
    async def scenario(server: Server, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get("/"))
        (response,), _ = await read_responses(reader, ["GET"])
        assert response.body == b"one two three"
        writer.write(b"GET / HTTP/1.1\r\n")  # an incomplete head: 408 after header_timeout
        (timeout_response,) = parse_responses(await read_until_closed(reader), ["GET"])
        assert timeout_response.status == 408
        writer.close()
        await wait_for(lambda: server.connection_count() == 0, what="connection closed")

    run_on_uvloop(streaming, scenario, header_timeout=0.2)


def test_drain_on_uvloop() -> None:
    gate: list[asyncio.Event] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await gate[0].wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def scenario(server: Server, port: int) -> None:
        gate.append(asyncio.Event())
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get("/"))
        await wait_for(lambda: server.stats.in_flight == 1, what="request in flight")
        drain = asyncio.create_task(server.drain(5.0))
        await asyncio.sleep(0)
        gate[0].set()
        (response,) = parse_responses(await read_until_closed(reader), ["GET"])
        assert response.body == b"ok" and response.header(b"connection") == b"close"
        assert await drain == 0
        writer.close()

    run_on_uvloop(app, scenario)


def test_websocket_on_uvloop() -> None:
    from tests.worker.test_worker_websocket import client_frame, echo_app, handshake, read_frame

    async def scenario(server: Server, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(handshake() + client_frame(0x1, b"early"))  # a frame right behind the handshake
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert await read_frame(reader) == (0x1, b"early")
        writer.write(client_frame(0x8, (1000).to_bytes(2, "big")))
        assert await read_frame(reader) == (0x8, (1000).to_bytes(2, "big"))
        assert await read_until_closed(reader) == b""
        writer.close()
        await wait_for(lambda: server.connection_count() == 0, what="session gone")
        assert server.stats.connections == 0

    run_on_uvloop(echo_app([]), scenario)
