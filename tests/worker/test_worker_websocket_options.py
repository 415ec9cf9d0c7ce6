"""WebSocket settings (issue 13): permessage-deflate (RFC 7692) on the wire and with the
``websockets`` client, --ws-max-size (inflated size too), --ws-max-queue, server pings and
the ping timeout, the drain grace then 1012 with websocket.disconnect for the app."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import pytest

from asynccluster.worker.websocket import WebSocketSession
from asynccluster.worker.wsdeflate import DeflateParams, PerMessageDeflate, negotiate
from asynccluster.worker.wsframes import WebSocketError
from tests.waiting import wait_for
from tests.worker.conftest import Running, StartServer
from tests.worker.h11check import read_until_closed
from tests.worker.test_worker_websocket import client_frame, echo_app, open_ws

pytest.importorskip("websockets")

DEFLATE_OFFER = b"sec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n"


async def read_raw_frame(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """(opcode, rsv1, payload) of one server frame."""
    first, second = await asyncio.wait_for(reader.readexactly(2), 5)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, bool(first & 0x40), await reader.readexactly(length)


def compressed_frame(opcode: int, payload: bytes, compressor: Any = None) -> bytes:
    """A client message compressed as RFC 7692 §7.2.1 says, RSV1 set on its frame."""
    compressor = compressor or zlib.compressobj(6, zlib.DEFLATED, -15)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    frame = bytearray(client_frame(opcode, data[:-4]))
    frame[0] |= 0x40
    return bytes(frame)


def inflate(payload: bytes, decompressor: Any = None) -> bytes:
    return (decompressor or zlib.decompressobj(-15)).decompress(payload + b"\x00\x00\xff\xff")


def session_of(running: Running) -> WebSocketSession:
    (session,) = [c for c in running.server.state.connections if isinstance(c, WebSocketSession)]
    return session


# ---------------------------------------------------------------- permessage-deflate


async def test_deflate_on_the_wire(start_server: StartServer) -> None:
    events: list[Any] = []
    running = await start_server(echo_app(events))
    reader, writer, head = await open_ws(running, DEFLATE_OFFER)
    assert b"sec-websocket-extensions: permessage-deflate; server_max_window_bits=12\r\n" in head
    text = "hello, compressed world " * 200
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    decompressor = zlib.decompressobj(-15)
    for _ in range(2):  # the second message reuses both contexts (no context takeover reset)
        writer.write(compressed_frame(0x1, text.encode(), compressor))
        opcode, rsv1, payload = await read_raw_frame(reader)
        assert (opcode, rsv1) == (0x1, True)
        assert len(payload) < len(text) // 10
        assert inflate(payload, decompressor).decode() == text
    # An uncompressed message is allowed too (RSV1 clear): the answer is still compressed.
    writer.write(client_frame(0x2, b"raw bytes"))
    opcode, rsv1, payload = await read_raw_frame(reader)
    assert (opcode, rsv1, inflate(payload, decompressor)) == (0x2, True, b"raw bytes")
    assert {"type": "websocket.receive", "text": text} in events
    writer.close()


async def test_server_no_context_takeover_is_honoured(start_server: StartServer) -> None:
    running = await start_server(echo_app([]))
    offer = b"sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
    reader, writer, head = await open_ws(running, offer)
    assert b"server_no_context_takeover; client_no_context_takeover" in head
    payloads = []
    for _ in range(2):
        writer.write(compressed_frame(0x1, b"same message, same bytes " * 20))
        opcode, rsv1, payload = await read_raw_frame(reader)
        assert (opcode, rsv1) == (0x1, True)
        assert inflate(payload) == b"same message, same bytes " * 20  # a fresh decompressor each time
        payloads.append(payload)
    assert payloads[0] == payloads[1]  # nothing carried over from the first message
    writer.close()


async def test_deflate_off_means_rsv1_is_a_protocol_error(start_server: StartServer) -> None:
    events: list[Any] = []
    running = await start_server(echo_app(events), ws_per_message_deflate=False)
    reader, writer, head = await open_ws(running, DEFLATE_OFFER)
    assert b"sec-websocket-extensions" not in head
    writer.write(compressed_frame(0x1, b"hello"))
    opcode, _, payload = await read_raw_frame(reader)
    assert (opcode, int.from_bytes(payload[:2], "big")) == (0x8, 1002)
    writer.close()


async def test_rsv1_on_a_control_frame_is_a_protocol_error(start_server: StartServer) -> None:
    running = await start_server(echo_app([]))
    reader, writer, _ = await open_ws(running, DEFLATE_OFFER)
    frame = bytearray(client_frame(0x9, b"ping"))
    frame[0] |= 0x40
    writer.write(bytes(frame))
    opcode, _, payload = await read_raw_frame(reader)
    assert (opcode, int.from_bytes(payload[:2], "big")) == (0x8, 1002)
    writer.close()


async def test_inflated_size_is_bounded(start_server: StartServer) -> None:
    """A small message that inflates past --ws-max-size is a 1009, not a memory bomb."""
    running = await start_server(echo_app([]), ws_max_size=64 * 1024)
    reader, writer, _ = await open_ws(running, DEFLATE_OFFER)
    bomb = compressed_frame(0x2, bytes(10 * 1024 * 1024))
    assert len(bomb) < 64 * 1024
    writer.write(bomb)
    opcode, _, payload = await read_raw_frame(reader)
    assert (opcode, int.from_bytes(payload[:2], "big")) == (0x8, 1009)
    writer.close()


async def test_websockets_client_with_and_without_compression(start_server: StartServer) -> None:
    from websockets.asyncio.client import connect

    running = await start_server(echo_app([]))
    url = f"ws://127.0.0.1:{running.port}/ws"
    for compression in ("deflate", None):
        async with connect(url, compression=compression, max_size=None) as ws:
            negotiated = ws.response.headers.get("Sec-WebSocket-Extensions")
            assert (negotiated is not None) == (compression is not None)
            for size in (1, 1024, 64 * 1024):
                message = bytes(range(256)) * (size // 256) or b"x"
                await ws.send(message)
                assert await ws.recv() == message
                await ws.send("é" * size)
                assert await ws.recv() == "é" * size


def test_negotiation_rules() -> None:
    def offer(value: str) -> DeflateParams | None:
        return negotiate([(b"sec-websocket-extensions", value.encode())])

    assert offer("permessage-deflate") == DeflateParams()
    assert offer("x-webkit-deflate-frame") is None
    assert offer("permessage-deflate; server_max_window_bits=10") == DeflateParams(server_max_window_bits=10)
    assert offer("permessage-deflate; server_max_window_bits=15").server_max_window_bits == 12  # type: ignore[union-attr]
    assert offer("permessage-deflate; client_max_window_bits=9").client_max_window_bits == 9  # type: ignore[union-attr]
    assert offer("permessage-deflate; client_max_window_bits").client_max_window_bits is None  # type: ignore[union-attr]
    # Not honourable: 8-bit server window (zlib), duplicates, unknown or malformed parameters;
    # the next offer in the list is then taken.
    for bad in ("server_max_window_bits=8", "server_max_window_bits=16", "server_max_window_bits=010",
                "server_no_context_takeover; server_no_context_takeover", "mystery=1",
                "server_no_context_takeover=1", "server_max_window_bits"):  # fmt: skip
        assert offer(f"permessage-deflate; {bad}") is None, bad
        assert offer(f"permessage-deflate; {bad}, permessage-deflate") == DeflateParams(), bad
    header = DeflateParams(True, True, 10, 11).header()
    assert header == (
        b"permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        b"server_max_window_bits=10; client_max_window_bits=11"
    )


def test_codec_round_trip_and_errors() -> None:
    codec = PerMessageDeflate(DeflateParams(), max_size=1000)
    assert inflate(codec.compress(b"")) == b""
    for message in (b"a", b"abc" * 300, b""):
        assert codec.decompress(codec.compress(message)) == message
    with pytest.raises(WebSocketError) as info:
        codec.decompress(PerMessageDeflate(DeflateParams(), 10**6).compress(b"x" * 1001))
    assert info.value.code == 1009
    with pytest.raises(WebSocketError) as info:
        PerMessageDeflate(DeflateParams(), 1000).decompress(b"\xff\xff\xff not deflate")
    assert info.value.code == 1007


# ---------------------------------------------------------------- sizes and queue


async def test_max_size_uncompressed(start_server: StartServer) -> None:
    running = await start_server(echo_app([]), ws_max_size=100)
    reader, writer, _ = await open_ws(running)
    writer.write(client_frame(0x2, b"x" * 100))
    assert (await read_raw_frame(reader))[2] == b"x" * 100
    writer.write(client_frame(0x2, b"x" * 101))
    opcode, _, payload = await read_raw_frame(reader)
    assert (opcode, int.from_bytes(payload[:2], "big")) == (0x8, 1009)
    writer.close()


async def test_max_queue_pauses_reading_until_the_app_reads(start_server: StartServer) -> None:
    release = asyncio.Event()
    received: list[str] = []

    async def slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            received.append(message["text"])

    running = await start_server(slow_app, ws_max_queue=2)
    _, writer, _ = await open_ws(running)
    for index in range(5):
        writer.write(client_frame(0x1, str(index).encode()))
        await writer.drain()
    await wait_for(lambda: len(session_of(running).queue) > 2, what="the queue to pass --ws-max-queue")
    session = session_of(running)
    await wait_for(lambda: not session.transport.is_reading(), what="reading to pause")
    release.set()
    await wait_for(lambda: len(received) == 5, what="every message")
    assert received == ["0", "1", "2", "3", "4"]
    assert session.transport.is_reading()
    writer.close()


# ---------------------------------------------------------------- pings


async def test_server_pings_and_closes_a_client_that_stops_answering(start_server: StartServer) -> None:
    events: list[Any] = []
    running = await start_server(echo_app(events), ws_ping_interval=0.1, ws_ping_timeout=2.0)
    reader, writer, _ = await open_ws(running)
    for _ in range(2):  # answered pings keep it open; the next ping follows the pong
        opcode, _, payload = await read_raw_frame(reader)
        assert opcode == 0x9 and len(payload) == 4
        writer.write(client_frame(0xA, payload))
    opcode, _, payload = await read_raw_frame(reader)
    assert opcode == 0x9  # not answered this time
    opcode, _, payload = await read_raw_frame(reader)
    assert (opcode, int.from_bytes(payload[:2], "big")) == (0x8, 1011)
    assert await read_until_closed(reader) == b""
    await wait_for(lambda: bool(events) and events[-1]["type"] == "websocket.disconnect", what="disconnect")
    assert events[-1]["code"] == 1006
    writer.close()


async def test_no_pings_when_interval_is_zero(start_server: StartServer) -> None:
    running = await start_server(echo_app([]), ws_ping_interval=0.0, timeout_keep_alive=0.2)
    reader, writer, _ = await open_ws(running)
    assert session_of(running).keepalive is not None
    # Several ticks later (the tick follows the 0.2 s keep-alive timeout) an echo is the
    # first frame to arrive: no ping came before it.
    state = running.server.state
    since = state.now
    await wait_for(lambda: state.now > since + 0.5, what="ticks past a would-be ping interval")
    writer.write(client_frame(0x1, b"first"))
    opcode, _, payload = await read_raw_frame(reader)
    assert (opcode, payload) == (0x1, b"first")
    writer.close()


# ---------------------------------------------------------------- drain


async def test_drain_grace_then_1012(start_server: StartServer) -> None:
    events: list[Any] = []
    running = await start_server(echo_app(events), ws_drain_grace=2.0)
    reader, writer, _ = await open_ws(running)
    await wait_for(lambda: running.server.connection_count() == 1, what="session registered")
    drain = asyncio.create_task(running.server.drain(20.0))
    writer.write(client_frame(0x1, b"still here"))  # within the grace the socket still works
    assert (await read_raw_frame(reader))[::2] == (0x1, b"still here")
    opcode, _, payload = await read_raw_frame(reader)
    assert (opcode, int.from_bytes(payload[:2], "big")) == (0x8, 1012)
    assert payload[2:] == b"service restart"
    await wait_for(lambda: events[-1]["type"] == "websocket.disconnect", what="disconnect")
    assert events[-1]["code"] == 1012
    writer.write(client_frame(0x8, (1012).to_bytes(2, "big")))
    assert await read_until_closed(reader) == b""
    assert await drain == 0
    writer.close()
