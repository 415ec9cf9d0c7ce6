"""Quart under asynccluster and under uvicorn: a route, JSON, a POST body, a WebSocket (issue 8: Quart pinned the CPU).

App: tests/compat/apps/quart_app.py.
"""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.compat.harness import REQUEST_TIMEOUT, Pair, Server, server_pair

pytestmark = pytest.mark.compat
pair = server_pair("tests.compat.apps.quart_app:app")


def test_route(pair: Pair) -> None:
    reply = pair.same("GET", "/")
    assert (reply.status, reply.body) == (200, b"hello from quart")


def test_json(pair: Pair) -> None:
    reply = pair.same("GET", "/json", params={"name": "x"})
    assert reply.status == 200 and reply.header("content-type") == "application/json"
    assert json.loads(reply.body)["framework"] == "quart"


def test_post_body(pair: Pair) -> None:
    data = b"0123456789" * 10_000  # 100 KB: several reads, flow control
    reply = pair.same("POST", "/echo", content=data)
    assert json.loads(reply.body) == {"size": len(data), "head": "01234567"}


def test_post_json(pair: Pair) -> None:
    reply = pair.same("POST", "/json-echo", json={"a": [1, 2, 3]})
    assert json.loads(reply.body) == {"got": {"a": [1, 2, 3]}}


def test_not_found_and_method_not_allowed(pair: Pair) -> None:
    assert pair.same("GET", "/nowhere").status == 404
    assert pair.same("GET", "/echo").status == 405


def websocket_session(server: Server) -> tuple[list[str], tuple[int, str] | None]:
    with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=REQUEST_TIMEOUT, close_timeout=REQUEST_TIMEOUT) as ws:
        echoed = []
        for text in ("one", "two"):
            ws.send(text)
            echoed.append(str(ws.recv(timeout=REQUEST_TIMEOUT)))
        ws.send("bye")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=REQUEST_TIMEOUT)
    received = closed.value.rcvd
    return echoed, (received.code, received.reason) if received else None


def test_websocket_echo(pair: Pair) -> None:
    ours, theirs = pair.each(websocket_session)
    assert ours == theirs == (["echo: one", "echo: two"], (1000, "done"))
