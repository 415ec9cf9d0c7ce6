"""HTTP/2 (issue 13) with real clients: httpx[http2] and curl over TLS (ALPN) and h2c (prior
knowledge), raw h2 frames for resets, drain and flow control. Streams are concurrent ASGI
cycles in real Tasks."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import h2.errors
import h2.events
import httpx
import pytest
import trustme

from asynccluster.worker.h2protocol import H2Protocol
from tests.waiting import wait_for
from tests.worker.conftest import Running, StartServer
from tests.worker.h2client import RawH2

pytest.importorskip("h2")


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(ca: trustme.CA, tmp_path: Path) -> dict[str, str]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(tmp_path / "server.pem")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    return {"ssl_certfile": str(tmp_path / "server.pem")}


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


class Recorder:
    """An app whose behaviour each test steers by path; it records what it saw."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.release = asyncio.Event()
        self.tasks: set[int] = set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        self.tasks.add(id(asyncio.current_task()))
        self.events.append(("start", path))
        if path == "/wait":
            await self.release.wait()
        elif path == "/release":
            self.release.set()
        elif path == "/upload-later":
            await self.release.wait()
        elif path == "/until-disconnect":
            while (message := await receive())["type"] != "http.disconnect":
                pass
            self.events.append(("disconnect", path))
            return
        size = 0
        if path != "/until-disconnect":
            while True:
                message = await receive()
                size += len(message.get("body", b""))
                if not message.get("more_body"):
                    break
        body = b"x" * 5_000_000 if path == "/big" else f"{scope['http_version']} {scope['scheme']} {size}".encode()
        headers = [(b"content-length", str(len(body)).encode()), (b"connection", b"keep-alive")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.events.append(("done", path))


async def h2c(start_server: StartServer, app: Any, **settings: Any) -> Running:
    return await start_server(app, http="2", **settings)


# ---------------------------------------------------------------- real clients


async def test_httpx_over_tls_streams_are_concurrent_tasks(
    start_server: StartServer, ca: trustme.CA, tls_files: dict
) -> None:
    app = Recorder()
    running = await start_server(app, **tls_files)
    async with httpx.AsyncClient(verify=client_context(ca), http2=True) as client:
        url = f"https://127.0.0.1:{running.port}"
        # /wait only finishes once /release ran: on one connection, only concurrent streams can.
        waiting = asyncio.create_task(client.get(url + "/wait"))
        await wait_for(lambda: ("start", "/wait") in app.events, what="the first stream to start")
        released = await client.get(url + "/release")
        response = await asyncio.wait_for(waiting, 10)
    assert (response.status_code, response.http_version, response.text) == (200, "HTTP/2", "2 https 0")
    assert released.http_version == "HTTP/2"
    assert "connection" not in response.headers  # connection-specific fields are dropped (RFC 9113 §8.2.2)
    assert response.headers["server"] == "asynccluster" and "date" in response.headers
    assert len(app.tasks) == 2  # each stream in its own Task


async def test_http1_still_served_over_tls_by_alpn(start_server: StartServer, ca: trustme.CA, tls_files: dict) -> None:
    running = await start_server(Recorder(), **tls_files)
    async with httpx.AsyncClient(verify=client_context(ca)) as client:  # offers http/1.1 only
        response = await client.get(f"https://127.0.0.1:{running.port}/")
    assert (response.http_version, response.text) == ("HTTP/1.1", "1.1 https 0")


async def test_http_11_setting_offers_no_h2(start_server: StartServer, ca: trustme.CA, tls_files: dict) -> None:
    running = await start_server(Recorder(), **tls_files, http="1.1")
    async with httpx.AsyncClient(verify=client_context(ca), http2=True) as client:
        response = await client.get(f"https://127.0.0.1:{running.port}/")
    assert response.http_version == "HTTP/1.1"


async def test_h2c_prior_knowledge_and_http1_on_one_port(start_server: StartServer) -> None:
    running = await h2c(start_server, Recorder())
    async with httpx.AsyncClient(http1=False, http2=True) as client:
        response = await client.get(f"http://127.0.0.1:{running.port}/")
    assert (response.http_version, response.text) == ("HTTP/2", "2 http 0")
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{running.port}/")
    assert (response.http_version, response.text) == ("HTTP/1.1", "1.1 http 0")


async def test_large_bodies_both_ways(start_server: StartServer, ca: trustme.CA, tls_files: dict) -> None:
    running = await start_server(Recorder(), **tls_files)
    async with httpx.AsyncClient(verify=client_context(ca), http2=True, timeout=30) as client:
        url = f"https://127.0.0.1:{running.port}"
        uploads = [client.post(url + f"/up{i}", content=b"u" * 3_000_000) for i in range(3)]
        downloads = [client.get(url + "/big") for _ in range(3)]
        responses = await asyncio.gather(*uploads, *downloads)
    assert [r.text for r in responses[:3]] == ["2 https 3000000"] * 3
    assert all(r.content == b"x" * 5_000_000 for r in responses[3:])


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.integration  # real processes (tests/conftest.py: the tiers)
async def test_curl_http2(start_server: StartServer, ca: trustme.CA, tls_files: dict, tmp_path: Path) -> None:
    features = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout
    if "HTTP2" not in features:
        pytest.skip("this curl has no HTTP/2")
    running = await start_server(Recorder(), **tls_files)
    plain = await h2c(start_server, Recorder())
    for args in (
        ["--http2", "--cacert", str(tmp_path / "ca.pem"), f"https://127.0.0.1:{running.port}/c"],
        ["--http2-prior-knowledge", f"http://127.0.0.1:{plain.port}/c"],
    ):
        process = await asyncio.create_subprocess_exec(
            "curl", "-sS", "-w", " %{http_version}", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), 30)
        assert out.decode().endswith(" 2"), (out, err)
        assert out.decode().startswith("2 http"), out


# ---------------------------------------------------------------- streams, flow control, resets


async def test_request_body_back_pressure(start_server: StartServer) -> None:
    """The app does not read yet: the server buffers at most one stream window."""
    app = Recorder()
    running = await h2c(start_server, app)
    client = await RawH2.open(running.port)
    stream_id = client.request("/upload-later", "POST", end_stream=False)
    await client.flush()
    sent = 0
    chunk = b"b" * 16384
    while sent < 1_000_000:
        window = min(client.conn.local_flow_control_window(stream_id), len(chunk))
        if window <= 0:
            await client.read_events()  # a WINDOW_UPDATE, once the app reads
            break
        client.conn.send_data(stream_id, chunk[:window])
        sent += window
        await client.flush()
    (protocol,) = [c for c in running.server.state.connections if isinstance(c, H2Protocol)]
    stream = protocol.streams[stream_id]
    await wait_for(lambda: stream.flow_pending >= 65535, what="one window buffered")
    assert sent == 65535 and stream.flow_pending == 65535  # the client could send no more
    app.release.set()
    while sent < 1_000_000:  # the app reads: the window re-opens as it does
        window = min(client.conn.local_flow_control_window(stream_id), 1_000_000 - sent, 16384)
        if window > 0:
            client.conn.send_data(stream_id, b"b" * window)
            sent += window
            await client.flush()
        else:
            await client.read_events()
    client.conn.end_stream(stream_id)
    await client.flush()
    status, body = await client.response(stream_id)
    assert (status, body) == (200, b"2 http 1000000")
    client.close()


async def test_rst_stream_gives_http_disconnect(start_server: StartServer) -> None:
    app = Recorder()
    running = await h2c(start_server, app)
    client = await RawH2.open(running.port)
    stream_id = client.request("/until-disconnect", "POST", end_stream=False)
    await client.flush()
    await wait_for(lambda: ("start", "/until-disconnect") in app.events, what="the app to start")
    client.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
    await client.flush()
    await wait_for(lambda: ("disconnect", "/until-disconnect") in app.events, what="http.disconnect")
    # The connection goes on serving.
    other = client.request("/")
    await client.flush()
    assert (await client.response(other))[0] == 200
    assert running.server.state.stats.in_flight == 0
    client.close()


async def test_drain_sends_goaway_and_in_flight_streams_finish(start_server: StartServer) -> None:
    app = Recorder()
    running = await h2c(start_server, app)
    client = await RawH2.open(running.port)
    stream_id = client.request("/wait")
    await client.flush()
    await wait_for(lambda: ("start", "/wait") in app.events, what="the stream to start")
    drain = asyncio.create_task(running.server.drain(10.0))
    (protocol,) = [c for c in running.server.state.connections if isinstance(c, H2Protocol)]
    await wait_for(lambda: protocol.draining, what="the drain to reach the connection")
    assert not protocol.goaway_sent  # not while a stream is in flight (h2-based clients would fail it)
    app.release.set()
    assert await client.response(stream_id) == (200, b"2 http 0")
    goaway = await client.until(lambda e: isinstance(e, h2.events.ConnectionTerminated))
    assert (goaway.last_stream_id, goaway.error_code) == (stream_id, 0)
    assert await client.read_until_closed() == b""
    assert await drain == 0
    client.close()


def reuseport_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT")
async def test_drains_under_http2_load_lose_nothing() -> None:
    """Two servers share a port (as two workers do); three times, the one serving is drained
    and replaced while HTTP/2 clients keep streams in flight: every request is answered (those
    the GOAWAY shows were never processed are re-sent, RFC 9113 §6.8, and counted apart)."""
    from asynccluster.config import Config
    from asynccluster.worker.server import Server
    from tests.h2loadgen import h2_load_running
    from tests.worker.conftest import BASE

    app = Recorder()
    first = reuseport_socket()
    port = first.getsockname()[1]
    servers: list[Server] = []

    async def start(sock: socket.socket) -> None:
        server = Server(Config(**{**BASE, "http": "2"}), app)
        await server.startup()
        await server.start_serving([sock])
        servers.append(server)

    await start(first)
    await start(reuseport_socket(port))
    async with h2_load_running("127.0.0.1", port, connections=4, streams=4, duration=60.0) as gen:
        for _ in range(3):
            assert await gen.wait_for_responses(300, 20.0)
            busy = max(servers, key=lambda s: len(s.state.connections))
            servers.remove(busy)
            assert await busy.drain(10.0) == 0
            await busy.shutdown()
            await start(reuseport_socket(port))
        assert await gen.wait_for_responses(300, 20.0)
    for server in servers:
        await server.drain(2.0)
        await server.shutdown()
    result = gen.result
    print(f"\nHTTP/2 load: {result.summary()}")
    assert result.failed == 0, f"{result.summary()} {result.examples}"
    assert result.ok >= 1200 and result.goaways >= 3


async def test_limits_are_announced(start_server: StartServer) -> None:
    running = await h2c(start_server, Recorder(), limit_request_header_size=8192)
    client = await RawH2.open(running.port)
    await client.until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
    settings = client.conn.remote_settings
    assert settings.max_concurrent_streams == 100
    assert settings.max_header_list_size == 8192
    assert settings.enable_push == 0
    client.close()


def test_http2_without_h2_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from asynccluster.config import Config
    from asynccluster.worker.tls import Http2Unavailable, alpn_protocols, http2_enabled

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "h2" else real(name, *a))
    assert not http2_enabled(Config(http="auto"))  # auto: HTTP/1.1 only, quietly
    assert alpn_protocols(Config(http="auto")) == ("http/1.1",)
    with pytest.raises(Http2Unavailable, match=r"pip install 'asynccluster\[http2\]'"):
        http2_enabled(Config(http="2"))
