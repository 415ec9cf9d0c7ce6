"""The websocket scope over real sockets: handshake, echo, fragments, ping, close, errors, drain."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from typing import Any

import pytest

from asynccluster.worker.wsframes import FrameReader, WebSocketError, accept_key, encode_frame
from tests.waiting import wait_for
from tests.worker.conftest import Running, StartServer
from tests.worker.h11check import parse_responses, read_until_closed
from tests.worker.test_worker_http import get

KEY = base64.b64encode(b"0123456789abcdef")


def handshake(path: str = "/ws", extra: bytes = b"") -> bytes:
    return (
        b"GET " + path.encode() + b" HTTP/1.1\r\nhost: t\r\nconnection: Upgrade\r\nupgrade: websocket\r\n"
        b"sec-websocket-version: 13\r\nsec-websocket-key: " + KEY + b"\r\n" + extra + b"\r\n"
    )


def client_frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True) -> bytes:
    """A client frame: masked (RFC 6455 §5.3), as a browser sends it."""
    length = len(payload)
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        header = bytes((first, (0x80 if mask else 0) | length))
    elif length < 65536:
        header = bytes((first, (0x80 if mask else 0) | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((first, (0x80 if mask else 0) | 127)) + length.to_bytes(8, "big")
    if not mask:
        return header + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return header + key + masked


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One server frame (never masked)."""
    first, second = await asyncio.wait_for(reader.readexactly(2), 5)
    assert not second & 0x80, "server frames must not be masked"
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await reader.readexactly(length)


async def open_ws(running: Running, extra: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    reader, writer = await running.connect()
    writer.write(handshake(extra=extra))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return reader, writer, head


def echo_app(events: list[Any]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            body = b"plain http"
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
            await send({"type": "http.response.body", "body": body})
            return
        events.append(("scope", scope["scheme"], scope["path"], scope["subprotocols"]))
        assert (await receive())["type"] == "websocket.connect"
        subprotocol = scope["subprotocols"][0] if scope["subprotocols"] else None
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        while True:
            message = await receive()
            events.append(message)
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "close please":
                await send({"type": "websocket.close", "code": 4000, "reason": "asked"})
                continue
            await send({"type": "websocket.send", **{k: v for k, v in message.items() if k in ("text", "bytes")}})

    return app


async def test_handshake_and_echo(start_server: StartServer) -> None:
    events: list[Any] = []
    running = await start_server(echo_app(events))
    reader, writer, head = await open_ws(running, b"sec-websocket-protocol: chat, superchat\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    expected = base64.b64encode(hashlib.sha1(KEY + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    assert b"sec-websocket-accept: " + expected in head
    assert b"sec-websocket-protocol: chat\r\n" in head
    writer.write(client_frame(0x1, "héllo".encode()))
    assert await read_frame(reader) == (0x1, "héllo".encode())
    writer.write(client_frame(0x2, b"\x00\x01" * 40000))  # 64-bit length form on the way back
    assert await read_frame(reader) == (0x2, b"\x00\x01" * 40000)
    # fragmented text with a ping in the middle: the pong comes first, then the whole message
    writer.write(client_frame(0x1, b"frag", fin=False) + client_frame(0x9, b"p") + client_frame(0x0, b"ment"))
    assert await read_frame(reader) == (0xA, b"p")
    assert await read_frame(reader) == (0x1, b"fragment")
    # client closes: the server answers with the same code, then closes TCP
    writer.write(client_frame(0x8, (1000).to_bytes(2, "big") + b"bye"))
    assert await read_frame(reader) == (0x8, (1000).to_bytes(2, "big"))
    assert await read_until_closed(reader) == b""
    writer.close()
    await wait_for(lambda: bool(events) and events[-1]["type"] == "websocket.disconnect", what="disconnect")
    assert events[0] == ("scope", "ws", "/ws", ["chat", "superchat"])
    assert events[-1] == {"type": "websocket.disconnect", "code": 1000, "reason": "bye"}


async def test_app_initiated_close(start_server: StartServer) -> None:
    events: list[Any] = []
    running = await start_server(echo_app(events))
    reader, writer, _ = await open_ws(running)
    writer.write(client_frame(0x1, b"close please"))
    assert await read_frame(reader) == (0x8, (4000).to_bytes(2, "big") + b"asked")
    writer.write(client_frame(0x8, (4000).to_bytes(2, "big")))
    assert await read_until_closed(reader) == b""
    writer.close()


@pytest.mark.parametrize(
    "frame,code",
    [
        (client_frame(0x1, b"x", mask=False), 1002),  # unmasked
        (client_frame(0x3, b"x"), 1002),  # reserved opcode
        (client_frame(0x1, b"\xff\xfe"), 1007),  # invalid UTF-8
        (client_frame(0x0, b"x"), 1002),  # continuation without a start
        (client_frame(0x9, b"x", fin=False), 1002),  # fragmented control frame
    ],
    # Named: the frames carry a random mask key, and ids made of them changed from run to run.
    ids=["unmasked", "reserved-opcode", "invalid-utf8", "continuation-first", "fragmented-control"],
)
async def test_protocol_errors_close_with_the_right_code(start_server: StartServer, frame: bytes, code: int) -> None:
    events: list[Any] = []
    running = await start_server(echo_app(events))
    reader, writer, _ = await open_ws(running)
    writer.write(frame)
    opcode, payload = await read_frame(reader)
    assert (opcode, int.from_bytes(payload[:2], "big")) == (0x8, code)
    assert await read_until_closed(reader) == b""
    writer.close()
    await wait_for(lambda: bool(events) and events[-1]["type"] == "websocket.disconnect", what="disconnect")
    assert events[-1]["code"] == code


async def test_close_before_accept_is_403(start_server: StartServer) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close"})

    running = await start_server(app)
    (response,) = parse_responses(await running.exchange(handshake()), ["GET"])
    assert response.status == 403


async def test_app_error_before_accept_is_500(start_server: StartServer) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise ValueError("no websockets here")

    running = await start_server(app)
    (response,) = parse_responses(await running.exchange(handshake()), ["GET"])
    assert response.status == 500


async def test_handshake_after_pipelined_request_and_invalid_key(start_server: StartServer) -> None:
    events: list[Any] = []
    running = await start_server(echo_app(events))
    reader, writer = await running.connect()
    writer.write(get("/first") + handshake())
    (first,) = parse_responses(await asyncio.wait_for(reader.readuntil(b"plain http"), 5), ["GET"], eof=False)
    assert first.body == b"plain http"
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 101 ")
    writer.close()
    bad = handshake().replace(KEY, b"not-a-key")
    (response,) = parse_responses(await running.exchange(bad), ["GET"])
    assert response.status == 400


async def test_drain_closes_websockets_with_1012(start_server: StartServer) -> None:
    """Issue 13: 1012 (service restart), after --ws-drain-grace (0 here); the app is told."""
    events: list[Any] = []
    running = await start_server(echo_app(events), ws_drain_grace=0.0)
    reader, writer, _ = await open_ws(running)
    await wait_for(lambda: running.server.connection_count() == 1, what="session registered")
    drain = asyncio.create_task(running.server.drain(5.0))
    opcode, payload = await read_frame(reader)
    assert (opcode, int.from_bytes(payload[:2], "big")) == (0x8, 1012)
    await wait_for(lambda: bool(events) and events[-1]["type"] == "websocket.disconnect", what="disconnect")
    assert events[-1]["code"] == 1012
    writer.write(client_frame(0x8, (1012).to_bytes(2, "big")))
    assert await read_until_closed(reader) == b""
    assert await drain == 0
    writer.close()


def test_frame_codec_round_trip_and_limits() -> None:
    reader = FrameReader(max_message=100)
    data = client_frame(0x2, b"abc") + client_frame(0x1, b"de", fin=False)
    assert reader.feed(data[:3]) == []  # partial frames wait for more bytes
    assert reader.feed(data[3:]) == [(0x2, b"abc")]
    assert reader.feed(client_frame(0x0, b"f")) == [(0x1, b"def")]
    with pytest.raises(WebSocketError) as too_big:
        reader.feed(client_frame(0x2, b"x" * 101))
    assert too_big.value.code == 1009
    assert encode_frame(0x1, b"hi") == b"\x81\x02hi"
    assert accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3


@pytest.mark.parametrize("length", [1, 3, 4, 5, 2047, 2048, 2049, 65536, 65539])
def test_unmask_is_the_xor_with_the_repeated_key(length: int) -> None:
    """RFC 6455 §5.3, on both sides of the size where unmask changes method."""
    import os

    from asynccluster.worker.wsframes import unmask

    data, mask = os.urandom(length), os.urandom(4)
    assert unmask(data, mask) == bytes(byte ^ mask[index % 4] for index, byte in enumerate(data))
