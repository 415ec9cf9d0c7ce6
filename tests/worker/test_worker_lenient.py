"""Lenient where the RFCs allow, strict where they require (issue 8 item 5; issue 9 item 6).

Raw requests over a real socket to the real worker server; every response is read back by h11
(a strict, independent client).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.worker.apps import echo_scope, hello, status_app
from tests.worker.conftest import StartServer
from tests.worker.h11check import parse_responses


def get(path: str = "/", extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nhost: t\r\n" + extra + b"\r\n"


async def body_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the request body it read."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize("status", [204, 304])
async def test_app_no_body_status_with_content_length_zero(start_server: StartServer, status: int) -> None:
    # Frameworks send "content-length: 0" on 204/304 (Django's CommonMiddleware does). Not an
    # app error: on 204 the field is dropped (RFC 9110 §8.6: a server MUST NOT send it); on
    # 304 it is kept as sent, as uvicorn does (§8.6 allows it: the length a 200 would have).
    app = status_app(status, [(b"content-length", b"0"), (b"x-app", b"yes")])
    running = await start_server(app)
    raw = await running.exchange(get() + get("/", b"connection: close\r\n"))
    responses = parse_responses(raw, ["GET", "GET"])  # keep-alive survives: both answered
    for response in responses:
        assert response.status == status and response.body == b""
        assert response.header(b"x-app") == b"yes"
        assert response.header(b"transfer-encoding") is None
        assert response.header(b"content-length") == (None if status == 204 else b"0")


@pytest.mark.parametrize("value", [b"5 ", b"5\t", b"005", b"0000000000000000000005"])
async def test_content_length_with_trailing_ows_or_leading_zeros(start_server: StartServer, value: bytes) -> None:
    # RFC 9110 §5.5 (OWS is not part of a field value) and §8.6 (1*DIGIT, read as decimal).
    running = await start_server(body_echo)
    request = b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: " + value + b"\r\n\r\nhello"
    raw = await running.exchange(request + get("/next", b"connection: close\r\n"))
    first, second = parse_responses(raw, ["POST", "GET"])
    assert (first.status, first.body) == (200, b"hello")
    assert second.status == 200  # framed exactly: the next request starts after 5 bytes


@pytest.mark.parametrize("request_line", [b"GET /\r\n", b"GET /\r\nhost: t\r\n\r\n", b"GET /index.html\r\n"])
async def test_request_line_without_version_is_400(start_server: StartServer, request_line: bytes) -> None:
    # RFC 9112 §3: request-line = method SP request-target SP HTTP-version. "GET /" is HTTP/0.9's
    # form, which we do not speak: 400 as soon as the line is complete, not 505 nor a wait.
    running = await start_server(hello)
    raw = await running.exchange(request_line)
    (response,) = parse_responses(raw, ["GET"])
    assert response.status == 400
    assert response.header(b"connection") == b"close"


@pytest.mark.parametrize(("version", "status"), [(b"HTTP/2.0", 505), (b"HTTP/0.9", 505), (b"HTTP/1.2", 200)])
async def test_505_only_for_a_well_formed_unsupported_major_version(
    start_server: StartServer, version: bytes, status: int
) -> None:
    running = await start_server(hello)
    raw = await running.exchange(b"GET / " + version + b"\r\nhost: t\r\nconnection: close\r\n\r\n")
    (response,) = parse_responses(raw, ["GET"])
    assert response.status == status


@pytest.mark.parametrize("host", [b"a:", b"[::1]:", b"example.com:"])
async def test_host_with_an_empty_port_is_valid(start_server: StartServer, host: bytes) -> None:
    # RFC 3986 §3.2.3: port = *DIGIT; RFC 9110 §7.2: Host = uri-host [ ":" port ].
    running = await start_server(echo_scope)
    raw = await running.exchange(b"GET / HTTP/1.1\r\nhost: " + host + b"\r\nconnection: close\r\n\r\n")
    (response,) = parse_responses(raw, ["GET"])
    assert response.status == 200


async def test_limit_request_line_bounds_the_whole_line(start_server: StartServer) -> None:
    # --limit-request-line is "longest request line in bytes" (its --help): method SP target
    # SP version, not only the target (issue 9 item 6).
    running = await start_server(hello, limit_request_line=100)
    line = b"GET /" + b"a" * 86 + b" HTTP/1.1"  # exactly 100 bytes
    assert len(line) == 100
    raw = await running.exchange(line + b"\r\nhost: t\r\nconnection: close\r\n\r\n")
    assert parse_responses(raw, ["GET"])[0].status == 200
    for method in (b"GET", b"OPTIONS"):  # one byte over, whichever part makes it long
        line = method + b" /" + b"a" * (100 - len(method) - 11 + 1) + b" HTTP/1.1"
        assert len(line) == 101
        raw = await running.exchange(line + b"\r\nhost: t\r\n\r\n")
        (response,) = parse_responses(raw, [method.decode()])
        assert response.status == 414
