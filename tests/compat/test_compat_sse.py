"""sse-starlette under asynccluster and under uvicorn (issue 8: "an sse-starlette stream hangs the worker").

App: tests/compat/apps/sse_app.py.
"""

from __future__ import annotations

import json

import pytest

from tests.compat.harness import OnPurpose, Pair, assert_same, server_pair
from tests.waiting import wait_until

pytestmark = pytest.mark.compat
pair = server_pair("tests.compat.apps.sse_app:app")
# sse-starlette adds "Connection: keep-alive" to its response. Connection is hop-by-hop and the
# server's to manage (RFC 9110 §7.6.1; RFC 9112 §9.3: HTTP/1.1 is persistent by default, §9.6):
# asynccluster reads an app's Connection only for "close" and writes the field itself (keep-alive
# only where HTTP/1.0 needs it); uvicorn passes the app's field on.
APP_CONNECTION = OnPurpose("connection", None, "RFC 9110 §7.6.1, RFC 9112 §9.3: Connection is the server's")


def test_finite_event_stream(pair: Pair) -> None:
    reply = pair.same("GET", "/events", on_purpose=(APP_CONNECTION,))
    assert reply.status == 200 and reply.header("content-type") == "text/event-stream; charset=utf-8"
    expected = "".join(f"id: {n}\r\nevent: tick\r\ndata: event {n}\r\n\r\n" for n in range(5))
    assert reply.body.decode() == expected


def test_endless_stream_ends_when_the_client_leaves(pair: Pair) -> None:
    ours, theirs = pair.each(lambda server: server.read_events_then_leave("/forever/e1"))
    assert_same("GET /forever/e1 (3 events, then leave)", ours, theirs, (APP_CONNECTION,))
    assert ours.body == b"data: event 0\ndata: event 1\ndata: event 2"
    for server in pair.both:
        # The next request is answered (the worker was pinned at 100% CPU, issue 8) and the generator closed.
        assert json.loads(server.request("GET", "/ping").body) == {"pong": True}, server.name
        wait_until(lambda s=server: json.loads(s.request("GET", "/ended/e1").body)["ended"], f"{server.name}: ended")
