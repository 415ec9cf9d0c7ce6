"""Quart under asynccluster and under uvicorn: a route, JSON, a POST body (issue 8).

App: tests/compat/apps/quart_app.py.
"""

from __future__ import annotations

import json

import pytest

from tests.compat.harness import Pair, server_pair

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
