"""Starlette under asynccluster and under uvicorn: BaseHTTPMiddleware, StaticFiles, FileResponse, GZip (issue 8).

App: tests/compat/apps/starlette_app.py. Bodies compared are httpx's decoded ones (gzip's own
header carries a timestamp, so the compressed bytes may differ by it; content-encoding is compared).
"""

from __future__ import annotations

import json

import pytest

from tests.compat.apps.starlette_app import BIG_TEXT, STATIC
from tests.compat.harness import Pair, server_pair

pytestmark = pytest.mark.compat
pair = server_pair("tests.compat.apps.starlette_app:app")
HELLO = (STATIC / "hello.txt").read_bytes()


def test_file_response(pair: Pair) -> None:
    reply = pair.same("GET", "/file")
    assert (reply.status, reply.body) == (200, HELLO)
    assert reply.header("content-disposition") == 'attachment; filename="greeting.txt"'
    assert reply.header("x-middleware") == "starlette"


def test_file_response_head_and_range(pair: Pair) -> None:
    head = pair.same("HEAD", "/file")
    assert (head.status, head.body, head.header("content-length")) == (200, b"", str(len(HELLO)))
    partial = pair.same("GET", "/file", headers={"range": "bytes=0-4"})
    assert (partial.status, partial.body) == (206, HELLO[:5])


def test_static_files(pair: Pair) -> None:
    assert pair.same("GET", "/static/hello.txt").body == HELLO
    index = pair.same("GET", "/static/")
    assert index.status == 200 and b"StaticFiles index page" in index.body
    assert pair.same("GET", "/static/missing.txt").status == 404
    redirect = pair.same("GET", "/static", follow_redirects=False)
    assert (redirect.status, redirect.header("location")) == (307, "http://SERVER/static/")


def test_static_files_conditional_get_is_304(pair: Pair) -> None:
    etag = pair.same("GET", "/static/hello.txt").header("etag")
    assert etag
    not_modified = pair.same("GET", "/static/hello.txt", headers={"if-none-match": etag})
    assert (not_modified.status, not_modified.body) == (304, b"")


def test_gzip_large_response(pair: Pair) -> None:
    reply = pair.same("GET", "/big", headers={"accept-encoding": "gzip"})
    assert (reply.body.decode(), reply.header("content-encoding")) == (BIG_TEXT, "gzip")
    assert pair.same("GET", "/big", headers={"accept-encoding": "identity"}).header("content-encoding") is None


def test_gzip_streaming_and_small(pair: Pair) -> None:
    streamed = pair.same("GET", "/big-stream", headers={"accept-encoding": "gzip"})
    assert (streamed.body.decode(), streamed.header("content-encoding")) == (BIG_TEXT, "gzip")
    # Compressed or not (BaseHTTPMiddleware streams it, so GZip cannot see its size): the same on both.
    assert pair.same("GET", "/small", headers={"accept-encoding": "gzip"}).body == b"tiny"


def test_request_body_through_base_http_middleware(pair: Pair) -> None:
    data = b"0123456789abcdef" * 5000
    reply = pair.same("POST", "/echo", content=data)
    assert json.loads(reply.body) == {"size": len(data), "head": "0123456789abcdef"}
    assert reply.header("x-seen-method") == "POST"
