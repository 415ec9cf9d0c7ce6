"""HTTP/2 under hostile input (issue 13): the 2023-2024 denial-of-service classes, each bounded
in what the test sends. After each, the connection is closed with GOAWAY (or at once), the
worker keeps serving other clients, and nothing is left behind (streams, Tasks)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import h2.errors
import httpx
import pytest
import trustme
from hpack import Encoder
from hyperframe.frame import ContinuationFrame, DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame

from tests.waiting import wait_for
from tests.worker.conftest import Running, StartServer
from tests.worker.h2client import PREFACE

pytest.importorskip("h2")


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"hi"})


async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A POST waits for the client to go (a stream that a reset ends); a GET is answered."""
    if scope["method"] == "GET":
        await hello(scope, receive, send)
        return
    while (await receive())["type"] != "http.disconnect":
        pass


async def serving(running: Running) -> None:
    """Another client is still served over HTTP/2."""
    async with httpx.AsyncClient(http1=False, http2=True) as client:
        response = await client.get(f"http://127.0.0.1:{running.port}/")
    assert (response.status_code, response.http_version) == (200, "HTTP/2")


async def nothing_left(running: Running) -> None:
    state = running.server.state
    await wait_for(lambda: not state.connections and not state.tasks, "connections and Tasks to go", 10.0)
    assert state.stats.in_flight == 0


def headers_block(stream_id: int, encoder: Encoder, end_headers: bool = True, path: str = "/") -> bytes:
    block = encoder.encode([(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "t")])
    frame = HeadersFrame(stream_id, block)
    frame.flags.add("END_STREAM")
    if end_headers:
        frame.flags.add("END_HEADERS")
    return frame.serialize()


async def raw_connection(running: Running, first: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await running.connect()
    writer.write(first)
    await writer.drain()
    return reader, writer


async def goaway_code(reader: asyncio.StreamReader, timeout: float = 10.0) -> int | None:
    """The error code of the GOAWAY the server sends before closing (None: closed without one)."""
    data = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), max(0.05, deadline - loop.time()))
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            chunk = b""
        except asyncio.TimeoutError:
            raise AssertionError(f"the server did not close the connection within {timeout} s") from None
        if not chunk:
            break
        data += chunk
    position = 0
    code = None
    while position + 9 <= len(data):  # walk the frames: 9-byte headers (RFC 9113 §4.1)
        length = int.from_bytes(data[position : position + 3], "big")
        kind = data[position + 3]
        payload = data[position + 9 : position + 9 + length]
        if kind == 0x7 and len(payload) >= 8:
            code = int.from_bytes(payload[4:8], "big")
        position += 9 + length
    return code


@pytest.fixture
def tls(tmp_path: Path) -> tuple[dict[str, str], ssl.SSLContext]:
    """Server settings and a client context offering only "h2" by ALPN."""
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(tmp_path / "server.pem")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(["h2"])
    return {"ssl_certfile": str(tmp_path / "server.pem")}, context


async def tls_connection(
    running: Running, context: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port, ssl=context)
    assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
    return reader, writer


async def test_bad_preface(start_server: StartServer, tls: tuple[dict[str, str], ssl.SSLContext]) -> None:
    settings, context = tls
    running = await start_server(hello, **settings)
    reader, writer = await tls_connection(running, context)
    writer.write(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")  # HTTP/1.1 after choosing h2
    assert await goaway_code(reader) == h2.errors.ErrorCodes.PROTOCOL_ERROR
    writer.close()
    await nothing_left(running)


async def test_no_preface_in_time(start_server: StartServer, tls: tuple[dict[str, str], ssl.SSLContext]) -> None:
    """ALPN chose h2, then the client says nothing: closed after --header-timeout."""
    settings, context = tls
    running = await start_server(hello, **settings, header_timeout=0.3)
    reader, writer = await tls_connection(running, context)
    writer.write(PREFACE[:5])
    assert await goaway_code(reader) is None  # closed, nothing to say to a client that never began
    writer.close()
    await nothing_left(running)


async def test_oversized_frame(start_server: StartServer) -> None:
    running = await start_server(hello, http="2")
    big = DataFrame(1, b"x" * 20000)  # over the 16384 bytes SETTINGS_MAX_FRAME_SIZE allows
    encoder = Encoder()
    first = PREFACE + SettingsFrame(0).serialize() + headers_block(1, encoder)
    reader, writer = await raw_connection(running, first + big.serialize())
    assert await goaway_code(reader) == h2.errors.ErrorCodes.FRAME_SIZE_ERROR
    writer.close()
    await serving(running)
    await nothing_left(running)


async def test_rapid_reset_flood(start_server: StartServer) -> None:
    """CVE-2023-44487: open and reset streams as fast as possible; bounded at 1000 streams."""
    running = await start_server(slow, http="2")
    encoder = Encoder()
    frames = [PREFACE, SettingsFrame(0).serialize()]
    for index in range(1000):
        stream_id = 2 * index + 1
        block = encoder.encode([(":method", "POST"), (":path", "/"), (":scheme", "http"), (":authority", "t")])
        frames.append(HeadersFrame(stream_id, block, flags=["END_HEADERS"]).serialize())
        frames.append(RstStreamFrame(stream_id, error_code=8).serialize())
    reader, writer = await raw_connection(running, b"".join(frames))
    assert await goaway_code(reader) == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    writer.close()
    await serving(running)
    await nothing_left(running)


async def test_continuation_flood(start_server: StartServer) -> None:
    """CVE-2024 CONTINUATION flood: a header block that never ends; bounded at 5000 frames."""
    running = await start_server(hello, http="2")
    encoder = Encoder()
    frames = [PREFACE, SettingsFrame(0).serialize(), headers_block(1, encoder, end_headers=False)]
    filler = encoder.encode([("x-filler", "a" * 1000)])
    frames += [ContinuationFrame(1, filler).serialize() for _ in range(5000)]
    reader, writer = await running.connect()
    writer.write(b"".join(frames))
    try:
        await writer.drain()
    except (ConnectionResetError, BrokenPipeError):
        pass  # closed while we were still sending: that is the point
    code = await goaway_code(reader)
    assert code in (h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, h2.errors.ErrorCodes.PROTOCOL_ERROR, None)
    writer.close()
    await serving(running)
    await nothing_left(running)


async def test_client_goaway_ends_the_connection(start_server: StartServer) -> None:
    running = await start_server(hello, http="2")
    encoder = Encoder()
    first = PREFACE + SettingsFrame(0).serialize() + headers_block(1, encoder) + GoAwayFrame(0).serialize()
    reader, writer = await raw_connection(running, first)
    assert await goaway_code(reader) == 0
    writer.close()
    await nothing_left(running)
