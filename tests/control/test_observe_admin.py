"""The master's admin endpoint against a fake supervisor: routes, readiness, bad requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from asynccluster.config import Config
from asynccluster.observe.admin import AdminAddressError, parse_admin_address, start_admin
from asynccluster.observe.aggregate import acquire_monitor, release_monitor
from tests.control.fakes import FakeSupervisor


async def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)  # the server closes after one response
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split()[1]), headers, body


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


@pytest.fixture
async def admin() -> AsyncIterator[tuple[FakeSupervisor, int]]:
    supervisor = FakeSupervisor()
    close = await start_admin(supervisor, Config(app="x:app", admin="127.0.0.1:0"))
    # status is where the chosen port is published (--admin HOST:0)
    monitor = acquire_monitor(supervisor)
    port = int(monitor.view()["admin"].rsplit(":", 1)[1])
    await release_monitor(supervisor)
    yield supervisor, port
    await close()


async def test_metrics(admin: tuple[FakeSupervisor, int]) -> None:
    _, port = admin
    status, headers, body = await exchange(port, get("/metrics"))
    assert status == 200 and headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert int(headers["content-length"]) == len(body) and headers["connection"] == "close"
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert {"asynccluster_requests", "asynccluster_request_duration_seconds", "asynccluster_ready"} <= names


async def test_readyz_follows_the_cluster_state(admin: tuple[FakeSupervisor, int]) -> None:
    supervisor, port = admin
    assert (await exchange(port, get("/readyz")))[::2] == (200, b"ready\n")
    supervisor.state = "stopping"  # what SIGTERM does first
    assert (await exchange(port, get("/readyz")))[::2] == (503, b"not ready\n")
    assert (await exchange(port, get("/livez")))[::2] == (200, b"ok\n")


async def test_status_and_errors(admin: tuple[FakeSupervisor, int]) -> None:
    _, port = admin
    status, headers, body = await exchange(port, get("/status?pretty=0"))
    assert status == 200 and headers["content-type"] == "application/json" and b'"workers"' in body
    assert (await exchange(port, get("/nope")))[0] == 404
    assert (await exchange(port, get("/metrics", "POST")))[0] == 405
    status, headers, body = await exchange(port, get("/livez", "HEAD"))
    assert status == 200 and body == b"" and headers["content-length"] == "3"
    assert (await exchange(port, b"garbage\r\n\r\n"))[0] == 400
    assert (await exchange(port, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n"))[0] == 400


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9100", ("127.0.0.1", 9100)),
        (":9100", ("127.0.0.1", 9100)),
        ("9100", ("127.0.0.1", 9100)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:9100", ("::1", 9100)),
    ],
)
def test_admin_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_admin_address(text) == expected


@pytest.mark.parametrize("text", ["host:port", "127.0.0.1:70000", ""])
def test_bad_admin_addresses(text: str) -> None:
    with pytest.raises(AdminAddressError):
        parse_admin_address(text)


async def test_bind_failure_is_one_clear_oserror() -> None:
    supervisor: Any = FakeSupervisor()
    first = await start_admin(supervisor, Config(app="x:app", admin="127.0.0.1:0"))
    taken = acquire_monitor(supervisor).view()["admin"]
    await release_monitor(supervisor)
    try:
        with pytest.raises(OSError, match=f"cannot serve --admin on {taken}"):
            await start_admin(FakeSupervisor(), Config(app="x:app", admin=taken))
    finally:
        await first()


async def test_a_malformed_address_is_an_oserror_for_the_master() -> None:
    with pytest.raises(OSError, match="expected HOST:PORT, got 'nope'"):
        await start_admin(FakeSupervisor(), Config(app="x:app", admin="nope"))
