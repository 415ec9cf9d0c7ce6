"""RequestParser against a corpus of raw requests, each fed in every split size.

Whatever the segmentation (1 byte at a time, 2, 3, ... whole), the parser must produce the
same events and the same error: TCP gives no message boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from asynccluster.http.errors import ProtocolError
from asynccluster.http.limits import Limits
from asynccluster.http.parser import RequestHead, RequestParser


@dataclass
class Recorder:
    """A fake sink: records events, merging body pieces (their sizes depend on the split)."""

    events: list[Any] = field(default_factory=list)

    def on_request(self, head: RequestHead) -> None:
        self.events.append(("request", _head_dict(head)))

    def on_body(self, data: bytes) -> None:
        assert data, "on_body must not be called with empty data"
        if self.events and self.events[-1][0] == "body":
            self.events[-1] = ("body", self.events[-1][1] + data)
        else:
            self.events.append(("body", data))

    def on_request_complete(self) -> None:
        self.events.append(("complete",))


def _head_dict(head: RequestHead) -> dict[str, Any]:
    return {name: getattr(head, name) for name in RequestHead.__slots__}


def run(raw: bytes, step: int, limits: Limits | None = None) -> tuple[list[Any], int | None]:
    sink = Recorder()
    parser = RequestParser(sink, limits or Limits())
    status = None
    try:
        for start in range(0, len(raw), step):
            parser.feed(raw[start : start + step])
    except ProtocolError as exc:
        status = exc.status
    return sink.events, status


def run_all_splits(
    raw: bytes, limits: Limits | None = None, *, same_events: bool = True
) -> tuple[list[Any], int | None]:
    """Run with every split size; assert they all agree; return the outcome of the whole input.

    ``same_events=False`` compares only the error: body pieces within a body limit reach the
    sink before the piece that crosses it, and how much that is depends on the split.
    """
    whole = run(raw, max(1, len(raw)), limits)
    for step in range(1, len(raw)):
        got = run(raw, step, limits)
        if same_events:
            assert got == whole, f"split size {step} differs from whole input"
        else:
            assert got[1] == whole[1], f"split size {step} differs from whole input"
    return whole


def request(head: bytes, body: bytes = b"") -> bytes:
    return head.replace(b"\n", b"\r\n") + b"\r\n" + body


GET = request(b"GET /a/b?x=1&y=2 HTTP/1.1\nHost: example.com\nUser-Agent: t\nAccept: */*\n")


# ---------------------------------------------------------------- valid requests


def test_simple_get_fields() -> None:
    events, status = run_all_splits(GET)
    assert status is None
    assert [e[0] for e in events] == ["request", "complete"]
    head = events[0][1]
    assert head["method"] == "GET"
    assert head["raw_path"] == b"/a/b"
    assert head["path"] == "/a/b"
    assert head["query_string"] == b"x=1&y=2"
    assert head["http_version"] == "1.1"
    assert head["headers"] == [(b"host", b"example.com"), (b"user-agent", b"t"), (b"accept", b"*/*")]
    assert head["keep_alive"] is True
    assert head["content_length"] is None and head["chunked"] is False
    assert head["expect_continue"] is False and head["upgrade"] is None


def test_content_length_body() -> None:
    raw = request(b"POST /p HTTP/1.1\nHost: h\nContent-Length: 11\n", b"hello world")
    events, status = run_all_splits(raw)
    assert status is None
    assert events[0][1]["content_length"] == 11
    assert events[1:] == [("body", b"hello world"), ("complete",)]


def test_chunked_body_with_extension_and_trailer() -> None:
    raw = request(
        b"POST / HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\n",
        b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n",
    )
    events, status = run_all_splits(raw)
    assert status is None
    assert events[0][1]["chunked"] is True
    # trailers are discarded, never merged into the head (RFC 9110 §6.5.1)
    assert events[0][1]["headers"] == [(b"host", b"h"), (b"transfer-encoding", b"chunked")]
    assert events[1:] == [("body", b"hello world"), ("complete",)]


def test_pipelined_requests_in_order() -> None:
    raw = GET + request(b"POST /two HTTP/1.1\nHost: h\nContent-Length: 3\n", b"abc") + GET
    events, status = run_all_splits(raw)
    assert status is None
    kinds = [e[0] for e in events]
    assert kinds == ["request", "complete", "request", "body", "complete", "request", "complete"]
    assert events[2][1]["raw_path"] == b"/two"
    assert events[3] == ("body", b"abc")


@pytest.mark.parametrize(
    ("head", "keep_alive", "version"),
    [
        (b"GET / HTTP/1.1\nHost: h\n", True, "1.1"),
        (b"GET / HTTP/1.1\nHost: h\nConnection: close\n", False, "1.1"),
        (b"GET / HTTP/1.0\n", False, "1.0"),
        (b"GET / HTTP/1.0\nConnection: keep-alive\n", True, "1.0"),
        (b"GET / HTTP/1.2\nHost: h\n", True, "1.1"),  # a higher 1.x minor is served as 1.1
    ],
)
def test_keep_alive_and_version(head: bytes, keep_alive: bool, version: str) -> None:
    events, status = run_all_splits(request(head))
    assert status is None
    assert events[0][1]["keep_alive"] is keep_alive
    assert events[0][1]["http_version"] == version


def test_percent_decoding_keeps_raw_path() -> None:
    events, status = run_all_splits(request(b"GET /caf%C3%A9/a%2Fb?q=%20 HTTP/1.1\nHost: h\n"))
    assert status is None
    head = events[0][1]
    assert head["path"] == "/café/a/b"
    assert head["raw_path"] == b"/caf%C3%A9/a%2Fb"
    assert head["query_string"] == b"q=%20"


def test_absolute_form_and_options_star() -> None:
    events, _ = run_all_splits(request(b"GET http://example.com:8080/x?y HTTP/1.1\nHost: example.com:8080\n"))
    assert (events[0][1]["raw_path"], events[0][1]["query_string"]) == (b"/x", b"y")
    events, _ = run_all_splits(request(b"GET HTTPS://example.com HTTP/1.1\nHost: example.com\n"))
    assert events[0][1]["raw_path"] == b"/"
    events, status = run_all_splits(request(b"OPTIONS * HTTP/1.1\nHost: h\n"))
    assert status is None and events[0][1]["raw_path"] == b"*"


def test_expect_continue_and_header_value_whitespace() -> None:
    raw = request(b"POST / HTTP/1.1\nHost: h\nExpect: 100-Continue\nX-A:   padded  \nContent-Length: 1\n", b"x")
    events, status = run_all_splits(raw)
    assert status is None
    assert events[0][1]["expect_continue"] is True
    assert (b"x-a", b"padded") in events[0][1]["headers"]


def test_leading_empty_line_is_ignored() -> None:
    # RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request-line.
    events, status = run_all_splits(b"\r\n" + GET)
    assert status is None and [e[0] for e in events] == ["request", "complete"]


def test_double_spaces_outside_the_request_line_are_fine() -> None:
    raw = request(b"POST /p HTTP/1.1\nHost: h\nX-A: a  b\nContent-Length: 6\n", b"  x  \n")
    events, status = run_all_splits(b"\r\n" + raw + GET)
    assert status is None
    assert (b"x-a", b"a  b") in events[0][1]["headers"]
    assert events[1:] == [("body", b"  x  \n"), ("complete",), ("request", events[3][1]), ("complete",)]


@pytest.mark.parametrize("host", [b"a:", b"[::1]:", b"a:80", b"[::1]"])
def test_host_with_an_empty_port_is_valid(host: bytes) -> None:
    # RFC 3986 §3.2.3: port = *DIGIT, so "a:" is a valid authority (issue 8 item 5).
    events, status = run_all_splits(request(b"GET / HTTP/1.1\nHost: " + host + b"\n"))
    assert status is None
    assert (b"host", host) in events[0][1]["headers"]


@pytest.mark.parametrize(
    ("value", "length"),
    [(b"5 ", 5), (b"5\t", 5), (b"005", 5), (b"0200", 200), (b"00", 0), (b"0" * 30 + b"5", 5)],
)
def test_content_length_with_trailing_ows_or_leading_zeros_is_valid(value: bytes, length: int) -> None:
    # RFC 9110 §8.6: Content-Length = 1*DIGIT, read as a decimal number (leading zeros are
    # digits); §5.5: OWS around a field value is not part of it (issue 8 item 5).
    body = b"A" * length
    events, status = run_all_splits(request(b"POST / HTTP/1.1\nHost: h\nContent-Length: " + value + b"\n", body) + GET)
    assert status is None
    assert events[0][1]["content_length"] == length
    assert (b"content-length", value.rstrip(b" \t")) in events[0][1]["headers"]
    kinds = [e[0] for e in events]
    assert kinds == ["request", *(["body"] if length else []), "complete", "request", "complete"]
    assert events[-2][1]["raw_path"] == b"/a/b"  # the next request is framed where it starts


def test_ipv6_host_and_duplicate_headers_kept() -> None:
    raw = request(b"GET / HTTP/1.1\nHost: [::1]:8000\nX-Dup: 1\nx-dup: 2\n")
    events, status = run_all_splits(raw)
    assert status is None
    assert events[0][1]["headers"][1:] == [(b"x-dup", b"1"), (b"x-dup", b"2")]


# ---------------------------------------------------------------- invalid requests

BAD: list[tuple[str, bytes, int]] = [
    ("missing host", request(b"GET / HTTP/1.1\n"), 400),
    ("duplicate host", request(b"GET / HTTP/1.1\nHost: a\nHost: a\n"), 400),
    ("empty host", request(b"GET / HTTP/1.1\nHost: \n"), 400),
    ("host userinfo", request(b"GET / HTTP/1.1\nHost: u@a\n"), 400),
    ("host path", request(b"GET / HTTP/1.1\nHost: a/b\n"), 400),
    ("host list", request(b"GET / HTTP/1.1\nHost: a, b\n"), 400),
    ("host bad port", request(b"GET / HTTP/1.1\nHost: a:x\n"), 400),
    ("duplicate host on 1.0", request(b"GET / HTTP/1.0\nHost: a\nHost: b\n"), 400),
    ("version 2.0", request(b"GET / HTTP/2.0\nHost: a\n"), 505),
    ("version 9.9", request(b"GET / HTTP/9.9\nHost: a\n"), 505),
    ("h2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    # RFC 9112 §3: "method SP target" without a version is an invalid request-line (400),
    # answered as soon as the line ends; 505 is for a well-formed unsupported version.
    ("no version, line only", b"GET /\r\n", 400),
    ("no version, with fields", request(b"GET /\nHost: a\n"), 400),
    ("no version, long target", request(b"GET /abcdefghijk\nHost: a\n"), 400),
    ("no version, POST", request(b"POST /x\nHost: a\nContent-Length: 1\n", b"x"), 400),
    ("no version after an empty line", b"\r\nGET /\r\n", 400),
    ("version 0.9", request(b"GET / HTTP/0.9\nHost: a\n"), 505),
    ("RTSP version", request(b"GET / RTSP/1.0\nHost: a\n"), 400),
    ("version leading zero", request(b"GET / HTTP/01.1\nHost: a\n"), 400),
    ("bare LF", b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    ("bare CR in value", request(b"GET / HTTP/1.1\nHost: a\nX: a\rb\n"), 400),
    ("obs-fold", request(b"GET / HTTP/1.1\nHost: a\nX: a\n b\n"), 400),
    ("space before colon", request(b"GET / HTTP/1.1\nHost: a\nX : b\n"), 400),
    ("invalid name", request(b"GET / HTTP/1.1\nHost: a\nX[y]: b\n"), 400),
    ("NUL in value", request(b"GET / HTTP/1.1\nHost: a\nX: a\x00b\n"), 400),
    ("fragment", request(b"GET /a#b HTTP/1.1\nHost: a\n"), 400),
    ("backslash", request(b"GET /a\\b HTTP/1.1\nHost: a\n"), 400),
    ("non-ascii target", request(b"GET /caf\xc3\xa9 HTTP/1.1\nHost: a\n"), 400),
    ("bad percent", request(b"GET /a%zz HTTP/1.1\nHost: a\n"), 400),
    ("short percent", request(b"GET /a%4 HTTP/1.1\nHost: a\n"), 400),
    ("percent NUL", request(b"GET /a%00 HTTP/1.1\nHost: a\n"), 400),
    ("percent CRLF", request(b"GET /a%0d%0aX HTTP/1.1\nHost: a\n"), 400),
    ("percent overlong utf8", request(b"GET /%C0%AF HTTP/1.1\nHost: a\n"), 400),
    ("asterisk with GET", request(b"GET * HTTP/1.1\nHost: a\n"), 400),
    ("unknown scheme", request(b"GET ftp://a/ HTTP/1.1\nHost: a\n"), 400),
    ("lowercase method", request(b"get / HTTP/1.1\nHost: a\n"), 400),
    ("CONNECT", request(b"CONNECT a:443 HTTP/1.1\nHost: a:443\n"), 501),
    ("CL plus", request(b"POST / HTTP/1.1\nHost: a\nContent-Length: +1\n", b"x"), 400),
    ("CL inner space", request(b"POST / HTTP/1.1\nHost: a\nContent-Length: 1 0\n", b"x"), 400),
    ("CL hex", request(b"POST / HTTP/1.1\nHost: a\nContent-Length: 0x1\n", b"x"), 400),
    ("CL empty", request(b"POST / HTTP/1.1\nHost: a\nContent-Length: \n", b"x"), 400),
    ("CL list", request(b"POST / HTTP/1.1\nHost: a\nContent-Length: 1, 1\n", b"x"), 400),
    ("CL duplicate", request(b"POST / HTTP/1.1\nHost: a\nContent-Length: 1\nContent-Length: 1\n", b"x"), 400),
    ("CL and TE", request(b"POST / HTTP/1.1\nHost: a\nContent-Length: 5\nTransfer-Encoding: chunked\n"), 400),
    ("TE gzip", request(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: gzip\n"), 400),
    ("TE gzip, chunked", request(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: gzip, chunked\n", b"0\r\n\r\n"), 501),
    ("TE chunked twice", request(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked, chunked\n"), 400),
    ("TE on 1.0", request(b"POST / HTTP/1.0\nTransfer-Encoding: chunked\n", b"0\r\n\r\n"), 400),
    ("chunk size junk", request(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n", b"0x5\r\n"), 400),
    ("chunk spill", request(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n", b"1\r\nab\r\n"), 400),
    ("expect unknown", request(b"GET / HTTP/1.1\nHost: a\nExpect: 200-ok\n"), 417),
    ("websocket version", request(b"GET / HTTP/1.1\nHost: a\nConnection: upgrade\nUpgrade: websocket\n"
                                  b"Sec-WebSocket-Version: 8\n"), 426),
    ("ignored upgrade with body", request(b"POST / HTTP/1.1\nHost: a\nConnection: upgrade\nUpgrade: h2c\n"
                                          b"Content-Length: 1\n", b"x"), 400),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    # RFC 9112 §3: exactly one SP between the request-line's parts (llhttp skips extra ones).
    ("double SP after method", request(b"GET  / HTTP/1.1\nHost: a\n"), 400),
    ("double SP after target", request(b"GET /  HTTP/1.1\nHost: a\n"), 400),
    ("SPs around target", request(b"GET  /x  HTTP/1.1\nHost: a\n"), 400),
    # The version's 'H' lands where a single-SP line would have it: the raw bytes still tell.
    ("SPs shifting an H", request(b"GET   /aH HTTP/1.1\nHost: a\n"), 400),
    ("SPs before an absolute target", request(b"GET" + b" " * 11 + b"HTTP://a/ HTTP/1.1\nHost: a\n"), 400),
    ("double SP after an empty line", b"\r\n" + request(b"GET  / HTTP/1.1\nHost: a\n"), 400),
    ("empty line, SPs shifting an H", b"\r\n" + request(b"GET  /aHb HTTP/1.1\nHost: a\n"), 400),
    ("double SP in a POST", request(b"POST  /p HTTP/1.1\nHost: a\nContent-Length: 1\n", b"x"), 400),
]  # fmt: skip


@pytest.mark.parametrize(("name", "raw", "status"), BAD, ids=[case[0] for case in BAD])
def test_invalid_requests(name: str, raw: bytes, status: int) -> None:
    events, got = run_all_splits(raw)
    assert got == status, name
    # Nothing about a rejected request reaches the app unless its head was already valid.
    assert ("complete",) not in events[-1:]


@pytest.mark.parametrize(("second", "status"), [(b"GET /\nHost: a\n", 400), (b"GET / HTTP/2.0\nHost: a\n", 505)])
def test_versionless_request_pipelined_behind_a_valid_one(second: bytes, status: int) -> None:
    # However the reads fall (the first head split or not), the second request-line's missing
    # version is a 400 and a well-formed unsupported one a 505, after the first is answered.
    events, got = run_all_splits(GET + request(second))
    assert got == status
    assert [e[0] for e in events] == ["request", "complete"]


def test_after_error_input_is_ignored() -> None:
    sink = Recorder()
    parser = RequestParser(sink)
    with pytest.raises(ProtocolError):
        parser.feed(b"GET / HTTP/1.1\r\n\r\n")
    parser.feed(GET)
    assert sink.events == []


# ---------------------------------------------------------------- limits

SMALL = Limits(request_line=64, header_fields=4, header_size=256, body=10)


@pytest.mark.parametrize(
    ("name", "raw", "status"),
    [
        ("target too long", request(b"GET /" + b"a" * 64 + b" HTTP/1.1\nHost: a\n"), 414),
        # --limit-request-line is the whole line (method SP target SP version), issue 9 item 6.
        ("line one byte too long", request(b"GET /" + b"a" * 51 + b" HTTP/1.1\nHost: a\n"), 414),
        ("long method, line too long", request(b"OPTIONS /" + b"a" * 47 + b" HTTP/1.1\nHost: a\n"), 414),
        ("too many fields", request(b"GET / HTTP/1.1\nHost: a\n" + b"X: 1\n" * 4), 431),
        ("header section too large", request(b"GET / HTTP/1.1\nHost: a\nX: " + b"v" * 300 + b"\n"), 431),
        ("announced body too large", request(b"POST / HTTP/1.1\nHost: a\nContent-Length: 11\n"), 413),
        (
            "chunked body too large",
            request(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n", b"6\r\naaaaaa\r\n6\r\naaaaaa\r\n"),
            413,
        ),
        ("trailers too large", request(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n",
                                       b"0\r\nX: " + b"t" * 300 + b"\r\n\r\n"), 431),
    ],
)  # fmt: skip
def test_limits(name: str, raw: bytes, status: int) -> None:
    assert run_all_splits(raw, SMALL, same_events=False)[1] == status, name


def test_limits_at_the_boundary_pass() -> None:
    # Request-lines of exactly 64 bytes: "GET " + a 51-byte target + " HTTP/1.1", and so on.
    raw = request(b"GET /" + b"a" * 50 + b" HTTP/1.1\nHost: a\n" + b"X: 1\n" * 3)
    assert run_all_splits(raw, SMALL)[1] is None
    raw = request(b"OPTIONS /" + b"a" * 45 + b" HTTP/1.1\nHost: a\n")
    assert run_all_splits(raw, SMALL)[1] is None
    assert run_all_splits(raw, SMALL)[1] is None
    raw = request(b"POST / HTTP/1.1\nHost: a\nContent-Length: 10\n", b"0123456789")
    assert run_all_splits(raw, SMALL)[1] is None


def test_header_bytes_are_bounded_while_a_field_is_still_arriving() -> None:
    # httptools buffers a field until it ends: the parser must stop a never-ending one.
    parser = RequestParser(Recorder(), SMALL)
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX: ")
    with pytest.raises(ProtocolError) as info:
        for _ in range(100):
            parser.feed(b"v" * 64)
    assert info.value.status == 431


def test_endless_chunk_extension_is_refused() -> None:
    # CVE-2023-39326 class: chunk extensions are skipped, but not forever.
    parser = RequestParser(Recorder())
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=")
    with pytest.raises(ProtocolError) as info:
        for _ in range(100):
            parser.feed(b"a" * 1024)
    assert info.value.status == 400


CHUNKED_HEAD = request(b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n")


def test_long_chunk_extension_is_refused_however_it_arrives() -> None:
    # MAL-CHUNK-EXT-64K: the same bound whether the extension arrives alone or in the read
    # that also holds the head and the end of the message; the request never completes.
    raw = CHUNKED_HEAD + b"5;ext=" + b"a" * 2048 + b"\r\nhello\r\n0\r\n\r\n"
    events, status = run_all_splits(raw, Limits(chunk_framing=1024), same_events=False)
    assert status == 400
    assert [e[0] for e in events] == ["request", "body"]


def test_64k_chunk_extension_in_one_read_is_refused() -> None:
    sink = Recorder()
    parser = RequestParser(sink)
    with pytest.raises(ProtocolError) as info:
        parser.feed(CHUNKED_HEAD + b"5;ext=" + b"a" * 65536 + b"\r\nhello\r\n0\r\n\r\n")
    assert info.value.status == 400
    assert ("complete",) not in sink.events


@pytest.mark.parametrize(("ext", "status"), [(167, None), (168, 400)])
def test_chunk_framing_in_one_read_is_measured_exactly(ext: int, status: int | None) -> None:
    # Framing after the head: "5;e=" ext CRLF, CRLF after the data, "0" CRLF CRLF = 13 + ext
    # bytes; the bound is chunk_framing + 16 x 5 bytes of data = 180.
    raw = b"\r\n" + CHUNKED_HEAD + b"5;e=" + b"x" * ext + b"\r\nhello\r\n0\r\n\r\n"
    events, got = run(raw, len(raw), Limits(chunk_framing=100))
    assert got == status
    assert (("complete",) in events) is (status is None)


def test_chunk_extensions_within_the_bound_pass_in_one_read() -> None:
    chunks = b"".join(b"%x;n=%s\r\n%s\r\n" % (100, b"v" * 100, b"d" * 100) for _ in range(20))
    events, status = run(b"\r\n" + CHUNKED_HEAD + chunks + b"0;last=1\r\nX-T: 1\r\n\r\n" + GET, 1 << 20)
    assert status is None
    assert events[1:3] == [("body", b"d" * 2000), ("complete",)]
    assert [e[0] for e in events[3:]] == ["request", "complete"]


def test_chunked_request_pipelined_with_others_keeps_event_order() -> None:
    raw = GET + CHUNKED_HEAD + b"3;x=y\r\nabc\r\n0\r\n\r\n" + GET
    events, status = run_all_splits(raw)
    assert status is None
    kinds = [e[0] for e in events]
    assert kinds == ["request", "complete", "request", "body", "complete", "request", "complete"]


def test_ordinary_chunking_is_not_mistaken_for_framing_abuse() -> None:
    sink = Recorder()
    parser = RequestParser(sink)
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(5000):
        parser.feed(b"1\r\nx\r\n")  # 1-byte chunks: 5 bytes of framing per byte of data
    parser.feed(b"0\r\n\r\n")
    assert sink.events[-2:] == [("body", b"x" * 5000), ("complete",)]


# ---------------------------------------------------------------- upgrade


WS = request(
    b"GET /ws HTTP/1.1\nHost: a\nConnection: Upgrade\nUpgrade: websocket\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n"
)


def test_websocket_handshake_pauses_and_detach_returns_later_bytes() -> None:
    sink = Recorder()
    parser = RequestParser(sink)
    parser.feed(WS + b"\x81\x05")
    parser.feed(b"hello")
    assert [e[0] for e in sink.events] == ["request", "complete"]
    assert sink.events[0][1]["upgrade"] == b"websocket"
    assert parser.detach() == b"\x81\x05hello"
    parser.feed(GET)  # detached: no longer parsed
    assert len(sink.events) == 2


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\nHost: a\nUpgrade: websocket\n",  # no Connection: upgrade
        b"POST / HTTP/1.1\nHost: a\nConnection: upgrade\nUpgrade: websocket\n",  # not GET
        b"GET / HTTP/1.1\nHost: a\nConnection: upgrade\nUpgrade: h2c\n",  # not ours
    ],
)
def test_other_upgrades_are_plain_requests(head: bytes) -> None:
    events, status = run_all_splits(request(head) + GET)
    assert status is None
    assert [e[0] for e in events] == ["request", "complete", "request", "complete"]
    assert events[0][1]["upgrade"] is None
