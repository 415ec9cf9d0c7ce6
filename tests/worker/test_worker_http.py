"""The worker's HTTP server over real sockets: framing, keep-alive, pipelining, bodies, errors."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest

from tests.waiting import wait_for
from tests.worker.apps import TEXT, contextvar_app, echo_scope, hello, slow_path, status_app, streaming
from tests.worker.conftest import StartServer
from tests.worker.h11check import parse_responses, read_responses, read_until_closed

GET = b"GET %s HTTP/1.1\r\nhost: test\r\n\r\n"


def get(path: str = "/", extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    host = b"host: test\r\n" if version == b"1.1" else b""
    return b"GET " + path.encode() + b" HTTP/" + version + b"\r\n" + host + extra + b"\r\n"


# ---------------------------------------------------------------- scope


async def test_scope_is_complete(start_server: StartServer) -> None:
    running = await start_server(echo_scope, root_path="/api")
    async with httpx.AsyncClient() as client:
        response = await client.get(running.url + "/a%20b/c?x=1&y=%20", headers=[("X-Dup", "1"), ("x-dup", "2")])
    assert response.status_code == 200
    scope = response.json()
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/a b/c"  # percent-decoded, root_path included (like uvicorn)
    assert scope["raw_path"] == "/api/a%20b/c"
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["server"] == ["127.0.0.1", running.port]
    assert scope["client"][0] == "127.0.0.1"
    assert isinstance(scope["client"][1], int)
    # names lower-cased, order and duplicates kept
    dups = [value for name, value in scope["headers"] if name == "x-dup"]
    assert dups == ["1", "2"]
    assert all(name == name.lower() for name, _ in scope["headers"])
    assert scope["state"] == []
    assert scope["extensions"] == []


async def test_asgi2_app_is_adapted(start_server: StartServer) -> None:
    class App:
        def __init__(self, scope: dict[str, Any]) -> None:
            self.scope = scope

        async def __call__(self, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": TEXT})
            await send({"type": "http.response.body", "body": b"asgi2 " + self.scope["path"].encode()})

    running = await start_server(App, lifespan="off")
    async with httpx.AsyncClient() as client:
        response = await client.get(running.url + "/x")
    assert response.text == "asgi2 /x"


async def test_contextvars_are_fresh_per_request(start_server: StartServer) -> None:
    """A contextvar set by one request is not seen by the next on the same connection."""
    running = await start_server(contextvar_app)
    reader, writer = await running.connect()
    writer.write(get("/one") + get("/suspend-two") + get("/three"))
    responses, _ = await read_responses(reader, ["GET"] * 3)
    writer.close()
    assert [r.body for r in responses] == [b"unset /one", b"unset /suspend-two", b"unset /three"]


async def test_scope_dicts_are_not_shared_between_requests(start_server: StartServer) -> None:
    """An app writing into scope["extensions"] or scope["state"] leaves the next request's alone."""

    async def marking_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = f"{sorted(scope['extensions'])} {sorted(scope['state'])}".encode()
        scope["extensions"]["mark"] = True
        scope["state"]["mark"] = True
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    running = await start_server(marking_app)
    reader, writer = await running.connect()
    writer.write(get("/one") + get("/two"))
    responses, _ = await read_responses(reader, ["GET"] * 2)
    writer.close()
    assert [r.body for r in responses] == [b"[] []", b"[] []"]


# ---------------------------------------------------------------- keep-alive, pipelining, versions


async def test_keep_alive_serves_several_requests_on_one_connection(start_server: StartServer) -> None:
    running = await start_server(hello)
    reader, writer = await running.connect()
    for n in range(3):
        writer.write(get(f"/{n}"))
        (response,), closed = await read_responses(reader, ["GET"])
        assert response.body == f"hello /{n}".encode()
        assert response.header(b"connection") is None
        assert not closed
    writer.close()
    assert running.server.stats.requests == 3


async def test_pipelined_requests_are_answered_in_order(start_server: StartServer) -> None:
    """Mixed eager and suspending apps, one write from the client: responses keep request order."""
    running = await start_server(slow_path)
    paths = ["/a", "/sleep/0.03", "/b", "/yield", "/sleep/0.01", "/c", "/d"]
    reader, writer = await running.connect()
    writer.write(b"".join(get(p) for p in paths))
    responses, _ = await read_responses(reader, ["GET"] * len(paths))
    writer.close()
    assert [r.body.decode() for r in responses] == [f"hello {p}" for p in paths]


async def test_pipelining_beyond_the_limit_still_answers_everything(start_server: StartServer) -> None:
    running = await start_server(slow_path, limit_pipeline=2)
    paths = [f"/yield/{n}" if n % 3 == 0 else f"/{n}" for n in range(40)]
    reader, writer = await running.connect()
    writer.write(b"".join(get(p) for p in paths))
    responses, _ = await read_responses(reader, ["GET"] * len(paths))
    writer.close()
    assert [r.body.decode() for r in responses] == [f"hello {p}" for p in paths]


async def test_http10_closes_by_default(start_server: StartServer) -> None:
    running = await start_server(hello)
    raw = await running.exchange(get("/old", version=b"1.0"))
    (response,) = parse_responses(raw, ["GET"], http_version="1.0")
    assert response.body == b"hello /old"
    assert response.header(b"connection") == b"close"


async def test_http10_keep_alive_when_asked(start_server: StartServer) -> None:
    running = await start_server(hello)
    reader, writer = await running.connect()
    writer.write(get("/1", b"connection: keep-alive\r\n", b"1.0"))
    (first,), closed = await read_responses(reader, ["GET"], http_version="1.0")
    assert first.header(b"connection") == b"keep-alive" and not closed
    writer.write(get("/2", version=b"1.0"))
    raw = await read_until_closed(reader)
    writer.close()
    (second,) = parse_responses(raw, ["GET"], http_version="1.0")
    assert second.body == b"hello /2"


async def test_http10_streaming_response_is_close_delimited(start_server: StartServer) -> None:
    running = await start_server(streaming)
    raw = await running.exchange(get("/", version=b"1.0"))
    (response,) = parse_responses(raw, ["GET"], http_version="1.0")
    assert response.body == b"one two three"
    assert response.header(b"transfer-encoding") is None
    assert response.header(b"content-length") is None


async def test_connection_close_with_chunked_response(start_server: StartServer) -> None:
    running = await start_server(streaming)
    raw = await running.exchange(get("/", b"connection: close\r\n") + get("/never-answered"))
    (response,) = parse_responses(raw, ["GET"])
    assert response.header(b"transfer-encoding") == b"chunked"
    assert response.header(b"connection") == b"close"
    assert response.body == b"one two three"
    assert raw.count(b"HTTP/1.1") == 1  # the request after Connection: close is not answered


async def test_head_204_304_have_no_body(start_server: StartServer) -> None:
    running = await start_server(hello)
    raw = await running.exchange(b"HEAD /h HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
    (response,) = parse_responses(raw, ["HEAD"])
    assert response.status == 200 and response.body == b""
    assert response.header(b"content-length") == b"8"  # the length a GET would have
    for status in (204, 304):
        running = await start_server(status_app(status))
        raw = await running.exchange(get("/", b"connection: close\r\n"))
        (response,) = parse_responses(raw, ["GET"])
        assert response.status == status and response.body == b""
        assert response.header(b"transfer-encoding") is None


async def test_date_and_server_headers(start_server: StartServer) -> None:
    running = await start_server(hello)
    async with httpx.AsyncClient() as client:
        response = await client.get(running.url)
    assert response.headers["server"] == "asynccluster"
    assert response.headers["date"].endswith(" GMT")
    running = await start_server(hello, server_header=False, date_header=False)
    async with httpx.AsyncClient() as client:
        response = await client.get(running.url)
    assert "server" not in response.headers and "date" not in response.headers


# ---------------------------------------------------------------- request bodies


async def test_chunked_request_body(start_server: StartServer) -> None:
    running = await start_server(echo_scope)
    request = (
        b"POST /up HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    (response,) = parse_responses(await running.exchange(request), ["POST"])
    assert json.loads(response.body)["body"] == "hello world"


async def test_large_body_streams_with_back_pressure(start_server: StartServer) -> None:
    """1 MiB through an app that reads slowly: every byte arrives, in order."""
    received: list[int] = []

    async def slow_reader(scope: Any, receive: Any, send: Any) -> None:
        total = 0
        while True:
            message = await receive()
            total += len(message["body"])
            await asyncio.sleep(0)
            if not message["more_body"]:
                break
        received.append(total)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(total).encode()})

    running = await start_server(slow_reader)
    payload = bytes(range(256)) * 4096
    async with httpx.AsyncClient() as client:
        response = await client.post(running.url, content=payload)
    assert response.text == str(len(payload))
    assert received == [len(payload)]


async def test_expect_100_continue_sent_only_when_app_reads(start_server: StartServer) -> None:
    running = await start_server(echo_scope)
    reader, writer = await running.connect()
    writer.write(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    (response,), _ = await read_responses(reader, ["POST"])
    writer.close()
    assert json.loads(response.body)["body"] == "hello"


async def test_expect_100_continue_not_sent_when_app_answers_without_reading(start_server: StartServer) -> None:
    running = await start_server(hello)
    raw = await running.exchange(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n")
    assert b"100 Continue" not in raw
    (response,) = parse_responses(raw, ["POST"])
    # The client may or may not send the body now: the connection cannot be reused.
    assert response.status == 200 and response.header(b"connection") == b"close"


async def test_unread_body_is_skipped_on_keep_alive(start_server: StartServer) -> None:
    running = await start_server(hello)
    reader, writer = await running.connect()
    writer.write(b"POST /p HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\n0123456789" + get("/next"))
    responses, _ = await read_responses(reader, ["POST", "GET"])
    writer.close()
    assert [r.body for r in responses] == [b"hello /p", b"hello /next"]


# ---------------------------------------------------------------- response framing


async def test_chunked_response_when_no_content_length(start_server: StartServer) -> None:
    running = await start_server(streaming)
    reader, writer = await running.connect()
    writer.write(get("/"))
    (response,), closed = await read_responses(reader, ["GET"])
    writer.close()
    assert response.header(b"transfer-encoding") == b"chunked"
    assert response.body == b"one two three" and not closed


@pytest.mark.parametrize("declared,sent", [(10, b"short"), (3, b"too long")])
async def test_content_length_mismatch_closes_the_connection(
    start_server: StartServer, caplog: pytest.LogCaptureFixture, declared: int, sent: bytes
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-length", str(declared).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": sent, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    running = await start_server(app)
    with caplog.at_level(logging.ERROR, "asynccluster.worker"):
        raw = await running.exchange(get("/") + get("/second"))
    assert "Content-Length" in caplog.text
    # Nothing usable arrives: either a truncated 200 (h11 rejects it) or a 500 when no byte of
    # the response had been written yet; never a second response on this connection.
    assert raw.count(b"HTTP/1.1 ") <= 1
    if raw.startswith(b"HTTP/1.1 500"):
        (response,) = parse_responses(raw, ["GET"])
        assert response.header(b"connection") == b"close"
    else:
        import h11

        with pytest.raises(h11.RemoteProtocolError):
            parse_responses(raw, ["GET"])


async def test_large_streamed_response_arrives_intact(start_server: StartServer) -> None:
    piece = bytes(range(256)) * 256  # 64 KiB

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(64):  # 4 MiB, eagerly: the write buffer must push back
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    running = await start_server(app)
    async with httpx.AsyncClient() as client:
        response = await client.get(running.url)
    assert response.content == piece * 64


# ---------------------------------------------------------------- app errors


async def test_exception_before_response_gives_500(start_server: StartServer, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("boom before start")

    running = await start_server(app)
    with caplog.at_level(logging.ERROR, "asynccluster.worker"):
        raw = await running.exchange(get("/"))
    (response,) = parse_responses(raw, ["GET"])
    assert response.status == 500 and response.header(b"connection") == b"close"
    assert "boom before start" in caplog.text and "Traceback" in caplog.text
    assert running.server.stats.status_counts.get(500) == 1


async def test_exception_after_start_closes_connection(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("boom mid-body")

    running = await start_server(app)
    with caplog.at_level(logging.ERROR, "asynccluster.worker"):
        raw = await running.exchange(get("/"))
    assert "boom mid-body" in caplog.text
    assert raw.startswith(b"HTTP/1.1 200") and not raw.endswith(b"0\r\n\r\n")  # no last chunk


async def test_return_without_response_gives_500(start_server: StartServer, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    running = await start_server(app)
    with caplog.at_level(logging.ERROR, "asynccluster.worker"):
        (response,) = parse_responses(await running.exchange(get("/")), ["GET"])
    assert response.status == 500
    assert "without starting a response" in caplog.text


@pytest.mark.parametrize(
    "messages,named",
    [
        ([{"type": "http.response.body", "body": b"x"}], "expected 'http.response.start'"),
        ([{"type": "http.response.start", "status": "200"}], "'status' must be an int"),
        ([{"type": "http.response.start", "status": 200, "headers": [(b"x", b"a\nb")]}], "invalid response header"),
        ([{"type": "http.response.start", "status": 200, "headers": [(b"bad name", b"v")]}], "invalid response header"),
        (["not a dict"], "must be a dict"),
        (
            [
                {"type": "http.response.start", "status": 200, "headers": []},
                {"type": "http.response.body", "body": "str"},
            ],
            "'body' must be bytes",
        ),
    ],
)
async def test_invalid_messages_are_named_in_the_log(
    start_server: StartServer, caplog: pytest.LogCaptureFixture, messages: list[Any], named: str
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        for message in messages:
            await send(message)

    running = await start_server(app)
    with caplog.at_level(logging.ERROR, "asynccluster.worker"):
        (response,) = parse_responses(await running.exchange(get("/")), ["GET"])
    assert response.status == 500
    assert named in caplog.text


async def test_message_after_completion_is_an_error(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await hello(scope, receive, send)
        await send({"type": "http.response.body", "body": b"extra"})

    running = await start_server(app)
    with caplog.at_level(logging.ERROR, "asynccluster.worker"):
        reader, writer = await running.connect()
        writer.write(get("/") + get("/2"))
        responses, _ = await read_responses(reader, ["GET", "GET"])
        writer.close()
    assert [r.body for r in responses] == [b"hello /", b"hello /2"]  # the connection is unaffected
    assert "after the response was complete" in caplog.text


# ---------------------------------------------------------------- disconnects


async def test_disconnect_is_delivered_to_a_waiting_app(start_server: StartServer) -> None:
    events: list[str] = []
    send_errors: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:  # the rest of the body never comes: the client goes away
            message = await receive()
            events.append(message["type"])
            if message["type"] == "http.disconnect":
                break
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        except OSError as exc:  # ASGI 2.4: send() on a closed connection raises an OSError
            send_errors.append(exc)

    running = await start_server(app, lifespan="off")
    _reader, writer = await running.connect()
    writer.write(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\nabc")
    await wait_for(lambda: running.server.stats.in_flight == 1, what="request in flight")
    writer.close()
    await wait_for(lambda: bool(send_errors), what="send() to raise")
    assert events == ["http.request", "http.disconnect"]
    assert running.server.stats.in_flight == 0


async def test_receive_after_response_returns_disconnect(start_server: StartServer) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await hello(scope, receive, send)
        seen.append((await receive())["type"])

    running = await start_server(app)
    async with httpx.AsyncClient() as client:
        await client.get(running.url)
    await wait_for(lambda: bool(seen))
    assert seen == ["http.disconnect"]


# ---------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    "request_bytes,status",
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nhost: a\r\n\r\n", 505),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nhost: a\r\n\r\n", 414),
    ],
)
async def test_malformed_requests_get_an_error_and_close(
    start_server: StartServer, request_bytes: bytes, status: int
) -> None:
    running = await start_server(hello)
    raw = await running.exchange(request_bytes)
    (response,) = parse_responses(raw, ["GET"])
    assert response.status == status
    assert response.header(b"connection") == b"close"


async def test_bad_request_after_a_good_one_answers_both_in_order(start_server: StartServer) -> None:
    running = await start_server(slow_path)
    raw = await running.exchange(get("/sleep/0.02") + b"GET / HTTP/1.1\r\n\r\n")
    responses = parse_responses(raw, ["GET", "GET"])
    assert [r.status for r in responses] == [200, 400]
    assert responses[0].body == b"hello /sleep/0.02"


async def test_body_over_the_limit_gets_413(start_server: StartServer) -> None:
    running = await start_server(echo_scope, limit_request_body=10)
    raw = await running.exchange(
        b"POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n"
    )
    (response,) = parse_responses(raw, ["POST"])
    assert response.status == 413


async def _half_closed_exchange(running: Any, data: bytes) -> bytes:
    reader, writer = await running.connect()
    writer.write(data)
    writer.write_eof()  # SHUT_WR: the client sends nothing more but still reads
    try:
        return await read_until_closed(reader, 5.0)
    finally:
        writer.close()


async def test_pipelined_requests_then_half_close_are_all_answered(start_server: StartServer) -> None:
    # Found by the attack on issue 10: the queued requests ran but only the first was answered.
    # Differential with uvicorn: tests/compat/test_compat_plain.py.
    running = await start_server(echo_scope)
    posts = b"".join(b"POST /p%d HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello" % n for n in range(3))
    raw = await _half_closed_exchange(running, b"GET /g HTTP/1.1\r\nHost: t\r\n\r\n" + posts)
    responses = parse_responses(raw, ["GET", "POST", "POST", "POST"])  # h11 checks the framing
    assert [json.loads(r.body)["path"] for r in responses] == ["/g", "/p0", "/p1", "/p2"]
    assert [r.header(b"connection") for r in responses] == [None, None, None, b"close"]


async def test_half_close_mid_body_closes_without_an_answer(start_server: StartServer) -> None:
    # The body can never complete: nothing to answer (the app sees http.disconnect).
    running = await start_server(echo_scope)
    raw = await _half_closed_exchange(running, b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhel")
    assert raw == b""
