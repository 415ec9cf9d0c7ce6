"""Parser fast paths: a repeated request-line skips its checks (never their outcome); proxy fields noted."""

from __future__ import annotations

import pytest

from asynccluster.http.errors import ProtocolError
from asynccluster.http.parser import RequestParser
from tests.http.test_parser import Recorder

GET = b"GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"


def heads(sink: Recorder) -> list[dict[str, object]]:
    return [event[1] for event in sink.events if event[0] == "request"]


def fresh_head(raw: bytes) -> dict[str, object]:
    """What a parser that never saw another request makes of ``raw``."""
    sink = Recorder()
    RequestParser(sink).feed(raw)
    return heads(sink)[0]


@pytest.mark.parametrize(
    "second",
    [
        GET,  # the same line: served from the cache
        b"GET /a?x=2 HTTP/1.1\r\nHost: example.com\r\n\r\n",  # another query
        b"GET /a?x=1 HTTP/1.0\r\nHost: example.com\r\n\r\n",  # another version
        b"HEAD /a?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",  # another method
        b"GET /a?x=10 HTTP/1.1\r\nHost: example.com\r\n\r\n",  # the cached line is a prefix of the target
        b"\r\nGET /a?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",  # an empty line first
        b"GET /%C3%A9 HTTP/1.1\r\nHost: example.com\r\n\r\n",  # percent-decoded path
    ],
)
def test_second_request_parses_as_if_fresh(second: bytes) -> None:
    sink = Recorder()
    parser = RequestParser(sink)
    parser.feed(GET)
    parser.feed(second)
    first, head = heads(sink)
    assert first == fresh_head(GET)
    assert head == fresh_head(second)


def test_cached_line_followed_by_a_different_one_in_the_same_read() -> None:
    sink = Recorder()
    parser = RequestParser(sink)
    parser.feed(GET)
    other = b"POST /b HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n"
    parser.feed(GET + other)  # pipelined: the second line is checked on its own
    paths = [(head["method"], head["path"]) for head in heads(sink)]
    assert paths == [("GET", "/a"), ("GET", "/a"), ("POST", "/b")]


@pytest.mark.parametrize(
    "bad",
    [
        b"GET /a?x=1  HTTP/1.1\r\nHost: example.com\r\n\r\n",  # double SP after the target
        b"GET  /a?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",  # double SP after the method
        b"GET /a?x=1 HTTP/2.0\r\nHost: example.com\r\n\r\n",  # unsupported version
    ],
)
def test_bad_line_after_a_cached_one_is_still_refused(bad: bytes) -> None:
    parser = RequestParser(Recorder())
    parser.feed(GET)
    parser.feed(GET)
    with pytest.raises(ProtocolError):
        parser.feed(bad)


def test_cached_line_still_needs_a_valid_host() -> None:
    parser = RequestParser(Recorder())
    parser.feed(GET)
    with pytest.raises(ProtocolError) as caught:
        parser.feed(b"GET /a?x=1 HTTP/1.1\r\n\r\n")
    assert caught.value.status == 400


def test_proxied_notes_a_proxy_field_per_request() -> None:
    sink = Recorder()
    parser = RequestParser(sink)
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n")
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\nFORWARDED: for=10.0.0.2\r\n\r\n")
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Host: b\r\n\r\n")  # not one we act on
    assert [head["proxied"] for head in heads(sink)] == [True, False, True, False]
