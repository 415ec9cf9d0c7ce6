"""TLS in a real cluster (issue 13): a renewed certificate is picked up by a reload under
HTTPS load with 0 failed requests; a broken certificate on reload is rolled back (the old
workers keep serving) with a clear message; at start it exits with its own code.

Certificates are made by trustme; the load is tests/loadgen.py over TLS.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme

from asynccluster import exitcodes
from tests.integration.conftest import ClusterProcess
from tests.loadgen import load_running

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="signals and process groups are POSIX")

APP = "tests.apps.basic:app"


def write_cert(ca: trustme.CA, directory: Path) -> trustme.LeafCert:
    """A new certificate for 127.0.0.1, written over cert.pem/key.pem (as a renewal does)."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    for name, blob in (("key.pem", cert.private_key_pem), ("cert.pem", cert.cert_chain_pems[0])):
        staged = directory / (name + ".new")
        blob.write_to_path(staged)
        staged.replace(directory / name)  # atomic, as certbot's symlink swap is
    return cert


def served_cert(port: int, context: ssl.SSLContext) -> bytes:
    """The DER certificate the server presents on a new connection."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def der(cert: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def wait_log(cluster: ClusterProcess, pattern: str, since: int) -> Any:
    return await asyncio.to_thread(cluster.wait_for, pattern, 60.0, start=since)


async def test_reload_picks_up_renewed_certificate_under_load(cluster_factory: Any, tmp_path: Path) -> None:
    ca = trustme.CA()
    first = write_cert(ca, tmp_path)
    cluster = cluster_factory(
        APP,
        "--workers",
        "2",
        "--ssl-certfile",
        str(tmp_path / "cert.pem"),
        "--ssl-keyfile",
        str(tmp_path / "key.pem"),
        "--no-access-log",
    )
    await asyncio.to_thread(cluster.wait_ready)
    context = client_context(ca)
    assert served_cert(cluster.port, context) == der(first)
    async with load_running("127.0.0.1", cluster.port, keepalive=4, fresh=2, duration=120.0, tls=context) as gen:
        assert await gen.wait_for_responses(200, 30.0)
        renewed = write_cert(ca, tmp_path)
        since = cluster.mark()
        cluster.signal(signal.SIGHUP)
        await wait_log(cluster, r"reloaded 2/2 workers", since)
        assert await gen.wait_for_responses(200, 30.0)
        assert await asyncio.to_thread(served_cert, cluster.port, context) == der(renewed)

        # A broken certificate: the reload is rolled back, the old workers (renewed cert) serve on.
        (tmp_path / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        since = cluster.mark()
        cluster.signal(signal.SIGHUP)
        await wait_log(cluster, r"reload aborted: .*TLS: --ssl-certfile .*cert\.pem", since)
        assert await gen.wait_for_responses(200, 30.0)
        assert await asyncio.to_thread(served_cert, cluster.port, context) == der(renewed)
    result = gen.result
    print(f"\nload over TLS: {result.summary()}")
    assert result.ok > 600
    assert result.failed == 0, f"{result.summary()}\n{result.examples}\n{cluster.output_tail()}"
    assert result.retried == 0, result.summary()
    assert cluster.stop() == 0


def test_broken_certificate_at_start_exits_with_tls_code(cluster_factory: Any, tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("junk\n")
    cluster = cluster_factory(APP, "--ssl-certfile", str(tmp_path / "cert.pem"))
    assert cluster.wait_exit(30.0) == exitcodes.TLS
    assert "not a valid PEM certificate or private key" in cluster.output
    assert cluster.count(r"Traceback") == 0


async def test_reloads_under_http2_load_lose_nothing(cluster_factory: Any, tmp_path: Path) -> None:
    """HTTP/2 over TLS (ALPN h2): two rolling reloads under load, 0 failed requests; streams a
    GOAWAY shows were never processed are re-sent by the client (RFC 9113 §6.8), counted apart."""
    from tests.h2loadgen import h2_load_running

    ca = trustme.CA()
    write_cert(ca, tmp_path)
    cluster = cluster_factory(
        "tests.apps.wsecho:app",
        "--workers",
        "2",
        "--ssl-certfile",
        str(tmp_path / "cert.pem"),
        "--ssl-keyfile",
        str(tmp_path / "key.pem"),
        "--http",
        "2",
        "--no-access-log",
    )
    old = await asyncio.to_thread(cluster.wait_ready)
    options = {"connections": 4, "streams": 4, "duration": 120.0, "tls": client_context(ca)}
    async with h2_load_running("127.0.0.1", cluster.port, **options) as gen:
        for _ in range(2):
            assert await gen.wait_for_responses(300, 30.0)
            since = cluster.mark()
            cluster.signal(signal.SIGHUP)
            await wait_log(cluster, r"reloaded 2/2 workers", since)
        assert await gen.wait_for_responses(300, 30.0)
    result = gen.result
    print(f"\nHTTP/2 load over TLS: {result.summary()}")
    assert result.failed == 0, f"{result.summary()}\n{result.examples}\n{cluster.output_tail()}"
    assert len(result.pids) >= 4 and not {str(pid) for pid in old.values()} >= set(result.pids)
    assert cluster.stop() == 0
