"""TLS on the worker (issue 13): HTTPS with real clients, client certificates, the ASGI tls
extension, bad input (plaintext, silence, an expired client certificate) closed and counted
without a traceback, and certificate files that cannot be used refused with a clear message.

Certificates are made in the test by trustme (a throwaway CA).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from asynccluster.config import Config
from asynccluster.worker.tls import TLSConfigError, create_ssl_context
from tests.waiting import wait_for
from tests.worker.conftest import Running, StartServer

pytest.importorskip("websockets")


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_files(ca: trustme.CA, tmp_path: Path) -> dict[str, str]:
    """--ssl-certfile/--ssl-keyfile for 127.0.0.1 and localhost, and the CA to trust them."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    return {"ssl_certfile": str(tmp_path / "cert.pem"), "ssl_keyfile": str(tmp_path / "key.pem")}


def client_context(ca: trustme.CA, client_cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if client_cert is not None:
        client_cert.configure_cert(context)
    return context


async def scope_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with what the scope says about TLS."""
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        tls = scope["extensions"].get("tls", {})
        await send({"type": "websocket.send", "text": f"{scope['scheme']} {tls.get('tls_version')}"})
        await send({"type": "websocket.close"})
        return
    tls = scope["extensions"].get("tls")
    body = repr({"scheme": scope["scheme"], "tls": tls}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def get(running: Running, context: ssl.SSLContext) -> dict[str, Any]:
    async with httpx.AsyncClient(verify=context) as client:
        response = await client.get(f"https://127.0.0.1:{running.port}/")
    assert response.status_code == 200
    return eval(response.text)  # our own app's repr of plain data


async def test_https_scope_and_tls_extension(start_server: StartServer, ca: trustme.CA, server_files: dict) -> None:
    running = await start_server(scope_app, **server_files)
    seen = await get(running, client_context(ca))
    assert seen["scheme"] == "https"
    tls = seen["tls"]
    assert tls["tls_version"] in (0x0303, 0x0304)
    assert tls["server_cert"].startswith("-----BEGIN CERTIFICATE-----")
    assert tls["server_cert"] == Path(server_files["ssl_certfile"]).read_text().strip() + "\n"
    assert tls["client_cert_chain"] == []
    assert tls["client_cert_name"] is None
    assert tls["client_cert_error"] is None


async def test_client_certificate_required(start_server: StartServer, ca: trustme.CA, server_files: dict) -> None:
    ca_file = str(Path(server_files["ssl_certfile"]).parent / "ca.pem")
    running = await start_server(
        scope_app, **server_files, ssl_ca_certs=ca_file, ssl_cert_reqs="required", ssl_handshake_timeout=0.5
    )
    client_cert = ca.issue_cert("client@example.com", common_name="client one")
    tls = (await get(running, client_context(ca, client_cert)))["tls"]
    assert tls["client_cert_name"] is not None and "CN=client one" in tls["client_cert_name"]
    assert len(tls["client_cert_chain"]) >= 1
    assert tls["client_cert_chain"][0] == client_cert.cert_chain_pems[0].bytes().decode()
    # No certificate: the handshake fails for the client and is counted on the server.
    with pytest.raises(httpx.HTTPError):
        await get(running, client_context(ca))
    watch = running.server.state.tls_watch
    assert watch is not None
    await wait_for(lambda: watch.failed >= 1, "the failed handshake to be counted", 10.0)


async def test_expired_client_certificate_is_refused_and_counted(
    start_server: StartServer, ca: trustme.CA, server_files: dict, caplog: pytest.LogCaptureFixture
) -> None:
    ca_file = str(Path(server_files["ssl_certfile"]).parent / "ca.pem")
    running = await start_server(
        scope_app, **server_files, ssl_ca_certs=ca_file, ssl_cert_reqs="required", ssl_handshake_timeout=0.5
    )
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    expired = ca.issue_cert("client", not_before=past, not_after=past + datetime.timedelta(days=1))
    with caplog.at_level(logging.DEBUG, "asyncio"), pytest.raises(httpx.HTTPError):
        await get(running, client_context(ca, expired))
    watch = running.server.state.tls_watch
    assert watch is not None
    await wait_for(lambda: watch.failed == 1, "the refused handshake to be counted", 10.0)
    assert not [r for r in caplog.records if r.exc_info], "no traceback per connection"
    # The server goes on serving good clients.
    good = ca.issue_cert("client")
    assert (await get(running, client_context(ca, good)))["scheme"] == "https"


async def test_plaintext_and_silence_are_closed_and_counted_once(
    start_server: StartServer, ca: trustme.CA, server_files: dict, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start_server(scope_app, **server_files, ssl_handshake_timeout=0.3)
    plaintext = 20
    with caplog.at_level(logging.DEBUG):
        for _ in range(plaintext):
            reader, writer = await running.connect()
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await asyncio.wait_for(reader.read(), 5.0) == b""  # closed, no HTTP answer
            writer.close()
        silent_reader, silent_writer = await running.connect()  # never sends a ClientHello
        assert await asyncio.wait_for(silent_reader.read(), 10.0) == b""  # closed by the handshake timeout
        silent_writer.close()
        watch = running.server.state.tls_watch
        assert watch is not None
        await wait_for(lambda: watch.failed == plaintext + 1, "every bad connection to be counted", 10.0)
    summaries = [r for r in caplog.records if "without a completed handshake" in r.getMessage()]
    assert 1 <= len(summaries) <= 2  # one line per interval, not one per connection
    assert not [r for r in caplog.records if r.exc_info], "no traceback per connection"
    assert (await get(running, client_context(ca)))["scheme"] == "https"


async def test_websocket_over_tls_is_wss(start_server: StartServer, ca: trustme.CA, server_files: dict) -> None:
    from websockets.asyncio.client import connect

    running = await start_server(scope_app, **server_files)
    async with connect(f"wss://127.0.0.1:{running.port}/", ssl=client_context(ca)) as ws:
        text = await ws.recv()
    scheme, version = str(text).split()
    assert scheme == "wss"
    assert int(version) in (0x0303, 0x0304)


async def test_minimum_version_13_refuses_tls12(start_server: StartServer, ca: trustme.CA, server_files: dict) -> None:
    running = await start_server(scope_app, **server_files, ssl_min_version="1.3")
    old = client_context(ca)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(httpx.HTTPError):
        await get(running, old)
    assert (await get(running, client_context(ca)))["tls"]["tls_version"] == 0x0304


# ---------------------------------------------------------------- files that cannot be used


def context_error(**settings: Any) -> str:
    with pytest.raises(TLSConfigError) as info:
        create_ssl_context(Config(**settings))
    return str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    assert "no such file" in context_error(ssl_certfile=str(tmp_path / "nope.pem"))


def test_a_missing_file_is_named(server_files: dict, tmp_path: Path) -> None:
    """Newcomer trial: the message said 'cannot read None'."""
    missing = str(tmp_path / "nope.key")
    message = context_error(ssl_certfile=server_files["ssl_certfile"], ssl_keyfile=missing)
    assert message == f"TLS: --ssl-keyfile {missing}: no such file"


def test_tls_settings_without_a_certificate_are_refused(server_files: dict) -> None:
    """Newcomer trial: --ssl-keyfile alone served plain HTTP without a word."""
    from asynccluster.worker.tls import check_tls_settings

    with pytest.raises(TLSConfigError, match="--ssl-keyfile given without --ssl-certfile"):
        check_tls_settings(Config(ssl_keyfile=server_files["ssl_keyfile"]))
    check_tls_settings(Config())  # no TLS at all: fine


def test_not_pem(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("this is not a certificate\n")
    message = context_error(ssl_certfile=str(tmp_path / "junk.pem"))
    assert "junk.pem" in message and "not a valid PEM" in message


def test_key_does_not_match(ca: trustme.CA, server_files: dict, tmp_path: Path) -> None:
    ca.issue_cert("other").private_key_pem.write_to_path(tmp_path / "other-key.pem")
    message = context_error(ssl_certfile=server_files["ssl_certfile"], ssl_keyfile=str(tmp_path / "other-key.pem"))
    assert "does not match" in message


def test_encrypted_key_wrong_password(ca: trustme.CA, server_files: dict, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(Path(server_files["ssl_keyfile"]).read_bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"right"),
    )
    (tmp_path / "enc.pem").write_bytes(encrypted)
    files = {"ssl_certfile": server_files["ssl_certfile"], "ssl_keyfile": str(tmp_path / "enc.pem")}
    assert "password" in context_error(**files, ssl_keyfile_password="wrong")
    assert "password" in context_error(**files)
    assert create_ssl_context(Config(**files, ssl_keyfile_password="right")) is not None


def test_client_certificates_need_a_ca(server_files: dict) -> None:
    assert "--ssl-ca-certs" in context_error(**server_files, ssl_cert_reqs="required")


def test_bad_cipher_list(server_files: dict) -> None:
    assert "--ssl-ciphers" in context_error(**server_files, ssl_ciphers="NO-SUCH-CIPHER")
