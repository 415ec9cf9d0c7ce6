"""The access log cannot be forged (issue 8 item 7), and logs the query by default as uvicorn.

A request may carry '"' (raw in the target, or %22), and, percent-encoded in its path, the
Unicode line breaks U+0085 and U+2028 (valid UTF-8, not C0 controls, so they reach the app).
Written as they are, they close the quoted request field early or split one line into two
for any reader that splits on Unicode line boundaries (Python's str.splitlines, many log
viewers). Percent-quoted, each request is exactly one line with its own two quotes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from asynccluster import logs
from asynccluster.worker.accesslog import ACCESS_LOGGER, DEFAULT_FORMAT, AccessLog, quoted_path, quoted_query
from tests.worker.apps import hello
from tests.worker.conftest import StartServer
from tests.worker.h11check import parse_responses

# (raw request-target, what the log must show for it)
EVIL_TARGETS = [
    (b'/a"b', "/a%22b"),
    (b"/a%22%20200%201%200.0ms%0d", None),  # a decoded CR: refused by the parser (400), never logged
    (b"/x%C2%85fake", "/x%C2%85fake"),  # U+0085 NEL
    (b"/x%E2%80%A8fake", "/x%E2%80%A8fake"),  # U+2028 LINE SEPARATOR
    (b"/x%E2%80%A9%C2%A0y", "/x%E2%80%A9%C2%A0y"),  # U+2029, NBSP
    (b'/q?a="b"&c=%22d', "/q?a=%22b%22&c=%22d"),  # the query's own escapes are kept
    (b"/caf%C3%A9/%25", "/caf%C3%A9/%25"),  # non-ASCII and a literal '%' in the decoded path
]


async def test_default_format_logs_the_query_like_uvicorn(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert "%(full_path)s" in DEFAULT_FORMAT
    running = await start_server(hello, access_log=True)
    with caplog.at_level(logging.INFO, ACCESS_LOGGER):
        raw = await running.exchange(b"GET /p?q=1&r=%20 HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
    assert parse_responses(raw, ["GET"])[0].status == 200
    (record,) = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert '"GET /p?q=1&r=%20 HTTP/1.1" 200 8 ' in record.getMessage()


@pytest.mark.parametrize(("target", "shown"), EVIL_TARGETS)
async def test_request_fields_cannot_split_or_fake_a_line(
    start_server: StartServer, caplog: pytest.LogCaptureFixture, target: bytes, shown: str | None
) -> None:
    running = await start_server(hello, access_log=True)
    with caplog.at_level(logging.INFO, ACCESS_LOGGER):
        raw = await running.exchange(b"GET " + target + b" HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
    status = parse_responses(raw, ["GET"])[0].status
    messages = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]
    if shown is None:
        assert status == 400 and messages == []
        return
    (message,) = messages
    assert f'"GET {shown} HTTP/1.1" 200 ' in message
    assert len(message.splitlines()) == 1  # str.splitlines splits on U+0085, U+2028, ...
    assert message.count('"') == 2
    assert message.isprintable() and message.isascii()


def test_text_and_json_lines_stay_one_line_each(worker_logging: Callable[..., Path]) -> None:
    scope = {
        "client": ("10.0.0.1", 5),
        "method": "GET",
        "path": '/a"\u0085\u2028\u2029\x1b[31m',  # as an app could see it after decoding
        "query_string": b'x="1"\\',
        "http_version": "1.1",
    }
    for log_format in ("text", "json"):
        log_file = worker_logging(log_format=log_format)
        access = AccessLog(DEFAULT_FORMAT, 1)
        assert access._write is not None  # the worker's fast path
        access.log(scope, 200, 0, 0.001)
        access.log(scope, 200, 0, 0.001)
        logs.flush_buffered()
        lines = log_file.read_text(encoding="utf-8").splitlines()
        assert len(lines) == 2, lines
        message = json.loads(lines[0])["message"] if log_format == "json" else lines[0]
        assert '"GET /a%22%C2%85%E2%80%A8%E2%80%A9%1B%5B31m?x=%221%22%5C HTTP/1.1" 200 0 ' in message
        log_file.unlink()


def test_quoting_keeps_ordinary_paths_and_queries_as_they_are() -> None:
    for path in ("/", "/api/v1/items/42", "/a-b_c.d~e/@x:y/!$&'()*+,;="):
        assert quoted_path(path) == path
    assert quoted_path("/a b") == "/a%20b"
    assert quoted_query(b"a=1&b=%20&c=/?x") == "a=1&b=%20&c=/?x"
    assert quoted_query(b"a=<script>") == "a=%3Cscript%3E"
