"""WebSocket closes from the app are valid on the wire (issue 8 item 6).

A real client (the ``websockets`` package, which validates every frame it receives) against
the real in-process server; each test reads the close frame the client got.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from asynccluster.worker.wsframes import MAX_CLOSE_REASON, close_payload, sendable_close_code
from tests.worker.conftest import Running, StartServer

LONG_REASONS = {
    "/reason/ascii": "x" * 200,
    "/reason/2byte": "é" * 100,  # 200 bytes; 123 would split the 62nd character
    "/reason/3byte": "a" + "€" * 60,  # 181 bytes; the cut falls inside a 3-byte character
    "/reason/4byte": "🙂" * 40,  # 160 bytes; 4-byte characters
}


async def closing_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accepts, then closes with the code in the path (/code/N) or a long reason (/reason/...)."""
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    path = scope["path"]
    if path.startswith("/code/"):
        await send({"type": "websocket.close", "code": int(path.rsplit("/", 1)[1]), "reason": "bye"})
    else:
        await send({"type": "websocket.close", "code": 4000, "reason": LONG_REASONS[path]})
    while (await receive())["type"] != "websocket.disconnect":
        pass


async def close_seen_by_client(running: Running, path: str) -> tuple[int, str]:
    """(code, reason) of the close frame the client received."""
    async with connect(f"ws://127.0.0.1:{running.port}{path}", open_timeout=5, close_timeout=5) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    received = info.value.rcvd
    assert received is not None, f"no valid close frame received: {info.value!r}"
    return received.code, received.reason


@pytest.mark.parametrize("code", [1005, 1006, 1015, 999, 0, 1004, 1016, 2999, 5000, 65535])
async def test_codes_that_must_never_be_sent_become_1011_with_one_error(
    start_server: StartServer, caplog: pytest.LogCaptureFixture, code: int
) -> None:
    running = await start_server(closing_app)
    with caplog.at_level(logging.ERROR, "asynccluster.worker"):
        assert await close_seen_by_client(running, f"/code/{code}") == (1011, "bye")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert f"code {code}, which must never be sent" in errors[0] and "1011" in errors[0]


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1008, 1011, 1012, 1013, 1014, 3000, 4999])
async def test_valid_codes_are_sent_as_given(
    start_server: StartServer, caplog: pytest.LogCaptureFixture, code: int
) -> None:
    running = await start_server(closing_app)
    with caplog.at_level(logging.ERROR, "asynccluster.worker"):
        assert await close_seen_by_client(running, f"/code/{code}") == (code, "bye")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("path", sorted(LONG_REASONS))
async def test_long_reason_is_cut_at_a_character_boundary(start_server: StartServer, path: str) -> None:
    running = await start_server(closing_app)
    code, reason = await close_seen_by_client(running, path)  # the client checks the UTF-8
    full = LONG_REASONS[path]
    assert code == 4000
    assert full.startswith(reason)
    size = len(reason.encode("utf-8"))
    assert size <= MAX_CLOSE_REASON
    assert size + len(full[len(reason)].encode("utf-8")) > MAX_CLOSE_REASON  # as long as fits


def test_close_payload_and_sendable_codes() -> None:
    assert close_payload(1000) == b"\x03\xe8"
    assert close_payload(4000, "é" * 100) == b"\x0f\xa0" + ("é" * 61).encode()
    assert len(close_payload(4000, "🙂" * 40)) == 2 + 120
    assert close_payload(1000, "\udcff") == b"\x03\xe8?"  # a lone surrogate cannot fail the close
    assert not any(sendable_close_code(c) for c in (True, "1000", 1000.0, None, 1005, 1006, 1015))
    assert all(sendable_close_code(c) for c in (1000, 1014, 3000, 4999))
