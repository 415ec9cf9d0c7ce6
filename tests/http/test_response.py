"""Responses built by response.py, read back by h11 as a strict, independent client."""

from __future__ import annotations

import h11
import pytest

from asynccluster.http.errors import ResponseError
from asynccluster.http.response import (
    LAST_CHUNK,
    ResponseWriter,
    date_header,
    encode_chunk,
    error_response,
    http_date,
    status_line,
)

DATE = date_header(784111777.0)


def h11_read(raw: bytes, *, method: str = "GET", http_version: str = "1.1") -> tuple[h11.Response, bytes, bool]:
    """Parse ``raw`` as the response to one request; return (response, body, server closes).

    h11 only sends HTTP/1.1; an HTTP/1.0 request is stood in for by ``Connection: close``,
    under which h11 likewise accepts a close-delimited body.
    """
    client = h11.Connection(h11.CLIENT)
    headers = [("host", "test")]
    if http_version == "1.0":
        headers.append(("connection", "close"))
    client.send(h11.Request(method=method, target="/", headers=headers))
    client.send(h11.EndOfMessage())
    client.receive_data(raw)
    response = None
    body = b""
    while True:
        event = client.next_event()
        if isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
        elif event is h11.NEED_DATA:
            client.receive_data(b"")  # the server closed: ends a close-delimited body
        else:
            raise AssertionError(f"unexpected {event!r}")
    assert response is not None
    assert not isinstance(client.next_event(), (h11.Response, h11.Data))
    assert client.trailing_data[0] == b"", "bytes after the end of the response"
    return response, body, client.their_state is h11.MUST_CLOSE or client.our_state is h11.MUST_CLOSE


def write(writer: ResponseWriter, head: bytes, *pieces: bytes) -> bytes:
    return head + b"".join(writer.body(piece) for piece in pieces) + writer.end()


def test_content_length_common_case() -> None:
    writer = ResponseWriter()
    head = writer.start(200, [(b"content-type", b"text/plain"), (b"content-length", b"5")], date=DATE)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    response, body, closes = h11_read(write(writer, head, b"he", b"llo"))
    assert response.status_code == 200 and body == b"hello" and not closes
    assert (b"server", b"asynccluster") in response.headers
    assert (b"date", b"Sun, 06 Nov 1994 08:49:37 GMT") in response.headers
    assert writer.keep_alive


def test_chunked_when_no_length_on_http11() -> None:
    writer = ResponseWriter(None)
    head = writer.start(200, [(b"content-type", b"text/plain")])
    assert writer.chunked
    response, body, closes = h11_read(write(writer, head, b"a", b"", b"bc" * 100))
    assert body == b"a" + b"bc" * 100 and not closes
    assert (b"transfer-encoding", b"chunked") in response.headers
    assert not any(name == b"server" for name, _ in response.headers)


def test_close_delimited_on_http10() -> None:
    writer = ResponseWriter()
    head = writer.start(200, [], http_version="1.0", keep_alive=True)
    assert not writer.keep_alive
    response, body, closes = h11_read(write(writer, head, b"old", b"client"), http_version="1.0")
    assert body == b"oldclient" and closes
    assert (b"connection", b"close") in response.headers


def test_http10_keep_alive_is_announced() -> None:
    writer = ResponseWriter()
    head = writer.start(200, [(b"content-length", b"2")], http_version="1.0", keep_alive=True)
    assert b"connection: keep-alive\r\n" in head and writer.keep_alive
    _, body, _ = h11_read(write(writer, head, b"ok"))
    assert body == b"ok"


@pytest.mark.parametrize(
    ("status", "method"),
    [(204, "GET"), (304, "GET"), (200, "HEAD")],
)
def test_no_body_responses(status: int, method: str) -> None:
    writer = ResponseWriter()
    headers = [(b"content-length", b"10")] if status != 204 else []
    head = writer.start(status, headers, head_request=method == "HEAD")
    assert writer.no_body and not writer.chunked
    raw = write(writer, head, b"ignored!!!")
    assert raw == head
    response, body, _ = h11_read(raw, method=method)
    assert response.status_code == status and body == b""


def test_connection_close_requested() -> None:
    for app_headers, keep_alive in (([(b"connection", b"close")], True), ([], False)):
        writer = ResponseWriter()
        head = writer.start(200, [*app_headers, (b"content-length", b"1")], keep_alive=keep_alive)
        assert not writer.keep_alive
        assert head.count(b"connection: close") == 1
        _, body, closes = h11_read(write(writer, head, b"x"))
        assert body == b"x" and closes


def test_app_chunked_and_own_server_and_date_headers() -> None:
    writer = ResponseWriter()
    head = writer.start(201, [(b"Transfer-Encoding", b"chunked"), (b"Server", b"mine"), (b"Date", b"x")], date=DATE)
    assert head.count(b"transfer-encoding: chunked") == 1
    response, _, _ = h11_read(write(writer, head, b"data"))
    assert [v for n, v in response.headers if n == b"server"] == [b"mine"]
    assert [v for n, v in response.headers if n == b"date"] == [b"x"]


def test_identical_duplicate_content_length_sent_once() -> None:
    writer = ResponseWriter()
    head = writer.start(200, [(b"content-length", b"1"), (b"Content-Length", b"1")])
    assert head.lower().count(b"content-length") == 1


def test_header_value_whitespace_is_trimmed() -> None:
    writer = ResponseWriter()
    head = writer.start(200, [(b"x-a", b" v "), (b"content-length", b"0")])
    response, _, _ = h11_read(head + writer.end())
    assert (b"x-a", b"v") in response.headers


@pytest.mark.parametrize(
    "headers",
    [
        [(b"bad name", b"v")],
        [(b"", b"v")],
        [(b"x", b"a\r\nb")],
        [(b"x", b"a\x00b")],
        [("x", b"v")],
        [(b"x", "v")],
        [(b"content-length", b"1"), (b"content-length", b"2")],
        [(b"content-length", b"-1")],
        [(b"content-length", b"1"), (b"transfer-encoding", b"chunked")],
        [(b"transfer-encoding", b"gzip")],
    ],
)
def test_app_header_errors(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(ResponseError):
        ResponseWriter().start(200, headers)


def test_content_length_enforced() -> None:
    writer = ResponseWriter()
    writer.start(200, [(b"content-length", b"3")])
    writer.body(b"ab")
    with pytest.raises(ResponseError):
        writer.body(b"cd")
    writer = ResponseWriter()
    writer.start(200, [(b"content-length", b"3")])
    writer.body(b"ab")
    with pytest.raises(ResponseError):
        writer.end()


def test_content_length_zero_on_204_is_dropped() -> None:
    # RFC 9110 §8.6: a server MUST NOT send Content-Length in a 204; "0" is true, so it is
    # dropped rather than refused (frameworks add it); the other fields stay, in order.
    writer = ResponseWriter(server=None)
    head = writer.start(204, [(b"x-a", b"1"), (b"Content-Length", b"0"), (b"x-b", b"2")], date=DATE)
    assert head == b"HTTP/1.1 204 No Content\r\nx-a: 1\r\nx-b: 2\r\n" + DATE + b"\r\n"
    assert writer.no_body and writer.remaining is None
    response, body, _ = h11_read(write(writer, head, b""))
    assert response.status_code == 204 and body == b""


def test_content_length_announcing_a_body_on_204_is_an_app_error() -> None:
    with pytest.raises(ResponseError):
        ResponseWriter().start(204, [(b"content-length", b"5")])


def test_content_length_on_304_is_kept() -> None:
    # RFC 9110 §8.6: a 304 MAY carry the length the 200 would have had; uvicorn keeps it too.
    for value in (b"0", b"120"):
        writer = ResponseWriter()
        head = writer.start(304, [(b"content-length", value)])
        assert b"content-length: " + value + b"\r\n" in head
        raw = write(writer, head, b"")
        assert raw == head
        response, body, _ = h11_read(raw)
        assert response.status_code == 304 and body == b""


def test_writer_is_reusable() -> None:
    writer = ResponseWriter()
    first = writer.start(200, [])
    assert writer.chunked
    second = writer.start(200, [(b"content-length", b"1")])
    assert not writer.chunked and writer.remaining == 1
    assert first != second


def test_status_lines() -> None:
    assert status_line(404) == b"HTTP/1.1 404 Not Found\r\n"
    assert status_line(299) == b"HTTP/1.1 299 \r\n"
    with pytest.raises(ResponseError):
        status_line(1000)
    writer = ResponseWriter()
    response, _, _ = h11_read(writer.start(299, [(b"content-length", b"0")]))
    assert response.status_code == 299


@pytest.mark.parametrize("status", [400, 408, 413, 414, 417, 426, 431, 500, 501, 503, 505])
def test_error_responses(status: int) -> None:
    raw = error_response(status, server_header=b"asynccluster", date=DATE)
    response, body, closes = h11_read(raw)
    assert response.status_code == status and closes and body.endswith(b"\n")
    assert (b"connection", b"close") in response.headers
    assert (b"server", b"asynccluster") in response.headers
    if status == 426:
        assert (b"sec-websocket-version", b"13") in response.headers


def test_error_response_accepts_encoded_lines() -> None:
    raw = error_response(400, server_header=b"server: x\r\n", date=DATE)
    response, _, _ = h11_read(raw)
    assert (b"server", b"x") in response.headers


def test_dates_and_chunks() -> None:
    assert http_date(0) == b"Thu, 01 Jan 1970 00:00:00 GMT"
    assert DATE == b"date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
    assert encode_chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert LAST_CHUNK == b"0\r\n\r\n"
