"""The Starlette example app (JSON, a request body, streaming, lifespan state) served by the worker."""

from __future__ import annotations

import httpx

from examples.starlette_app import app
from tests.worker.conftest import StartServer
from tests.worker.h11check import read_responses


async def test_starlette_example(start_server: StartServer) -> None:
    running = await start_server(app, lifespan="on")
    async with httpx.AsyncClient(base_url=running.url) as client:
        home = await client.get("/")
        assert home.status_code == 200 and home.json()["hello"] == "world"
        assert (await client.get("/items/3")).json() == {"id": 3, "name": "item 3"}
        assert (await client.get("/items/99")).status_code == 404
        echo = await client.post("/echo", json={"a": [1, 2, 3]})
        assert echo.json() == {"received": {"a": [1, 2, 3]}, "bytes": len(echo.request.content)}
        stream = await client.get("/stream", params={"count": 3})
        assert stream.headers["transfer-encoding"] == "chunked"
        assert stream.text == "line 0\nline 1\nline 2\n"
        assert (await client.get("/state")).json() == {"hits": 1}


async def test_starlette_pipelined_mixed_routes(start_server: StartServer) -> None:
    """Streaming (suspending) and JSON (eager) responses pipelined on one connection."""
    running = await start_server(app, lifespan="on")
    reader, writer = await running.connect()
    paths = ["/items/1", "/stream?count=2", "/items/2", "/state"]
    writer.write(b"".join(b"GET %s HTTP/1.1\r\nhost: t\r\n\r\n" % p.encode() for p in paths))
    responses, _ = await read_responses(reader, ["GET"] * len(paths))
    writer.close()
    assert [r.status for r in responses] == [200] * 4
    assert responses[1].body == b"line 0\nline 1\n"
    assert b'"id":2' in responses[2].body
