"""WebSocket in a real cluster over TLS (issue 13): wss with compression; a reload closes open
sockets with 1012 (service restart) after --ws-drain-grace, and a client that reconnects is
served by a new worker."""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.integration.test_tls_cluster import client_context, write_cert

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="signals and process groups are POSIX")
websockets = pytest.importorskip("websockets")


async def open_socket(port: int, context: ssl.SSLContext) -> tuple[Any, str]:
    from websockets.asyncio.client import connect

    ws = await connect(f"wss://127.0.0.1:{port}/", ssl=context, compression="deflate")
    return ws, str(await ws.recv())


async def test_reload_closes_websockets_with_1012(cluster_factory: Any, tmp_path: Path) -> None:
    from websockets.exceptions import ConnectionClosed

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
        "--ws-drain-grace",
        "0.2",
    )
    old = await asyncio.to_thread(cluster.wait_ready)
    context = client_context(ca)
    ws, pid = await open_socket(cluster.port, context)
    assert int(pid) in old.values()
    assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
    await ws.send("x" * 10000)
    assert await ws.recv() == "x" * 10000
    since = cluster.mark()
    cluster.signal(signal.SIGHUP)
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), 60)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1012
    await asyncio.to_thread(cluster.wait_for, r"reloaded 2/2 workers", 60.0, start=since)
    ws, pid = await open_socket(cluster.port, context)
    assert int(pid) not in old.values()
    await ws.close()
    assert cluster.stop() == 0
