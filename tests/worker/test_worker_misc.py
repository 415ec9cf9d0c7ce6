"""Unix sockets, ASGI 2 detection, and the scope of a unix-socket request."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

from asynccluster.config import Config
from asynccluster.worker.asgi2 import as_asgi3, is_asgi2
from asynccluster.worker.server import Server
from tests.worker.apps import echo_scope, hello
from tests.worker.h11check import parse_responses, read_until_closed


async def test_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(16)
    server = Server(Config(lifespan="off", access_log=False), echo_scope)
    await server.startup()
    await server.start_serving([sock])
    try:
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"GET /u HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        (response,) = parse_responses(await read_until_closed(reader), ["GET"])
        writer.close()
        scope = json.loads(response.body)
        assert scope["path"] == "/u"
        assert scope["client"] is None
        assert scope["server"] == [path, None]
    finally:
        await server.drain(1.0)
        await server.shutdown()


def test_asgi_version_detection() -> None:
    class Asgi2:
        def __init__(self, scope: Any) -> None: ...

        async def __call__(self, receive: Any, send: Any) -> None: ...

    def asgi2_function(scope: Any) -> Any:
        return Asgi2(scope)

    class Asgi3Callable:
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...

    assert is_asgi2(Asgi2) and is_asgi2(asgi2_function)
    assert not is_asgi2(hello) and not is_asgi2(Asgi3Callable())
    assert as_asgi3(hello) is hello
    assert as_asgi3(Asgi2) is not Asgi2


async def test_date_header_is_computed_by_the_tick_not_per_request(monkeypatch: Any) -> None:
    """Many requests, at most a couple of date computations (one per second boundary)."""
    import asynccluster.worker.state as state_module
    from tests.worker.test_worker_protocol_unit import make

    calls: list[float] = []
    real = state_module.date_header

    def counting(timestamp: float) -> bytes:
        calls.append(timestamp)
        return real(timestamp)

    monkeypatch.setattr(state_module, "date_header", counting)
    protocol, transport = make(hello)
    computed = len(calls)
    for n in range(50):
        protocol.data_received(b"GET /%d HTTP/1.1\r\nhost: t\r\n\r\n" % n)
        for _ in range(3):  # before 3.12 the request's Task runs on a later loop pass
            await asyncio.sleep(0)
    assert len(calls) == computed == 1  # once at startup, none per request
    assert transport.data.count(protocol.state.date or b"?") == 50


async def test_tick_refreshes_the_date_once_per_second(monkeypatch: Any) -> None:
    import asynccluster.worker.server as server_module
    import asynccluster.worker.state as state_module

    calls: list[float] = []

    def fake_date_header(ts: float) -> bytes:
        calls.append(ts)
        return b"date: x\r\n"

    monkeypatch.setattr(state_module, "date_header", fake_date_header)
    now = [1_000_000.5]
    monkeypatch.setattr(server_module.time, "time", lambda: now[0])
    monkeypatch.setattr(state_module.time, "time", lambda: now[0])
    server = Server(Config(lifespan="off"), hello)
    await server.startup()  # computes the first date
    server._tick()  # the server's first tick: a new second for it, refreshed
    server._tick()  # same second: not refreshed
    now[0] += 1.0
    server._tick()  # the next second: refreshed
    await server.shutdown()
    assert calls == [1_000_000.5, 1_000_000.5, 1_000_001.5]
