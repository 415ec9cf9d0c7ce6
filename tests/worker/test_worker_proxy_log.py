"""Proxy headers (trusted peers only) and the access log."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from tests.worker.apps import echo_scope, hello
from tests.worker.conftest import StartServer


async def fetch_scope(url: str, headers: dict[str, str]) -> dict[str, object]:
    async with httpx.AsyncClient() as client:
        response = await client.get(url, headers=headers)
    return json.loads(response.content)


async def test_trusted_peer_sets_client_and_scheme(start_server: StartServer) -> None:
    running = await start_server(echo_scope, proxy_headers=True, forwarded_allow_ips=("127.0.0.1",))
    scope = await fetch_scope(running.url, {"x-forwarded-for": "203.0.113.7, 127.0.0.1", "x-forwarded-proto": "https"})
    assert scope["client"] == ["203.0.113.7", 0]
    assert scope["scheme"] == "https"
    scope = await fetch_scope(running.url, {"forwarded": 'for="[2001:db8::1]:4711";proto=https'})
    assert scope["client"] == ["2001:db8::1", 4711]
    assert scope["scheme"] == "https"


async def test_untrusted_peer_is_ignored(start_server: StartServer) -> None:
    running = await start_server(echo_scope, proxy_headers=True, forwarded_allow_ips=("10.0.0.0/8",))
    scope = await fetch_scope(running.url, {"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"})
    assert scope["client"][0] == "127.0.0.1"  # type: ignore[index]
    assert scope["scheme"] == "http"


async def test_proxy_headers_off_ignores_them(start_server: StartServer) -> None:
    running = await start_server(echo_scope, proxy_headers=False)
    scope = await fetch_scope(running.url, {"x-forwarded-for": "203.0.113.7"})
    assert scope["client"][0] == "127.0.0.1"  # type: ignore[index]


async def test_access_log_line(start_server: StartServer, caplog: pytest.LogCaptureFixture) -> None:
    running = await start_server(
        hello,
        access_log=True,
        access_log_format="%(client)s|%(method)s|%(path)s|%(query)s|%(http_version)s|%(status)d|%(bytes)d|%(worker)s",
    )
    with caplog.at_level(logging.INFO, "asynccluster.access"):
        async with httpx.AsyncClient() as http:
            await http.get(running.url + "/p?q=1")
    (record,) = [r for r in caplog.records if r.name == "asynccluster.access"]
    client, method, path, query, version, status, size, worker = record.getMessage().split("|")
    assert client.startswith("127.0.0.1:")
    assert (method, path, query, version, status, size, worker) == ("GET", "/p", "q=1", "1.1", "200", "8", "-")


async def test_access_log_off_logs_nothing(start_server: StartServer, caplog: pytest.LogCaptureFixture) -> None:
    running = await start_server(hello, access_log=False)
    assert running.server.state.access_log is None
    with caplog.at_level(logging.INFO, "asynccluster.access"):
        async with httpx.AsyncClient() as client:
            await client.get(running.url)
    assert not [r for r in caplog.records if r.name == "asynccluster.access"]
