"""Fixtures for the worker tests: a real in-process server on 127.0.0.1 with an OS-given port."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from asynccluster import logs
from asynccluster.config import Config
from asynccluster.worker.server import Server

# Test defaults: no access log noise, no proxy trust, no lifespan unless a test asks for it.
BASE = {"access_log": False, "proxy_headers": False, "graceful_timeout": 5.0, "lifespan": "off"}


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@dataclass
class Running:
    server: Server
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def exchange(self, data: bytes, timeout: float = 5.0) -> bytes:
        """Send raw bytes, read until the server closes."""
        from tests.worker.h11check import read_until_closed

        reader, writer = await self.connect()
        writer.write(data)
        try:
            return await read_until_closed(reader, timeout)
        finally:
            writer.close()


StartServer = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """``await start_server(app, **config)`` -> Running; drained and shut down afterwards."""
    started: list[Server] = []

    async def start(app: Any, **settings: Any) -> Running:
        config = Config(**{**BASE, **settings})
        server = Server(config, app)
        await server.startup()
        sock = listening_socket()
        port = sock.getsockname()[1]
        await server.start_serving([sock])
        started.append(server)
        return Running(server, port)

    yield start
    for server in started:
        if not server.state.draining:
            await server.drain(1.0)
            await server.shutdown()


@pytest.fixture
def worker_logging(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``worker_logging(**config)`` sets up logging as in worker slot 3 with a log file; the
    process's logging is restored afterwards."""
    root = logging.getLogger()
    package = logging.getLogger("asynccluster")
    saved = (list(root.handlers), root.level, package.level)
    log_file = tmp_path / "cluster.log"

    def setup(**settings: Any) -> Path:
        logs.setup_logging(Config(log_file=str(log_file), **settings), slot=3)
        return log_file

    yield setup
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    package.setLevel(saved[2])
