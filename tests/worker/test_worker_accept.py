"""A burst of new connections is accepted in a few loop turns while the worker is busy (issue 16).

uvloop (libuv >= 1.45) accepts one connection per loop iteration: with the worker busy, a
burst of connects waited in the accept queue one iteration each (seconds under pipelined
load). The check counts loop iterations, not time: a callback re-scheduling itself with
call_soon runs once per iteration and keeps the loop from sleeping, as a busy worker's
ready callbacks do.
"""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from asynccluster.config import Config
from asynccluster.worker.accept import ACCEPT_BATCH
from asynccluster.worker.server import Server
from tests.waiting import wait_for
from tests.worker.apps import echo_scope
from tests.worker.conftest import BASE, listening_socket

uvloop = pytest.importorskip("uvloop")

BURST = 64  # connections opened at once (fewer than ACCEPT_BATCH: one readable event takes them all)
MAX_TURNS = 8  # loop iterations allowed from the burst to the last connection_made


class TurnCounter:
    """Counts loop iterations: one call_soon callback per iteration, re-armed each time. It
    notes the turn at which ``done()`` first held (checked every turn, not by polling later)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, done: Callable[[], bool]) -> None:
        self.loop = loop
        self.done = done
        self.turns = 0
        self.done_at: int | None = None
        loop.call_soon(self._turn)

    def _turn(self) -> None:
        self.turns += 1
        if self.done_at is None and self.done():
            self.done_at = self.turns
        if self.done_at is None:
            self.loop.call_soon(self._turn)


def connect_burst(port: int, count: int) -> list[socket.socket]:
    """``count`` non-blocking connects, returned once the kernel has completed every handshake
    (each is then in the server's accept queue). Blocks the loop meanwhile, as a busy one is."""
    clients = []
    for _ in range(count):
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))
        clients.append(client)
    pending = {client.fileno() for client in clients}
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLOUT)
    deadline = time.monotonic() + 5
    while pending and time.monotonic() < deadline:  # writable = connected
        for fd, _ in poller.poll(100):
            pending.discard(fd)
            poller.unregister(fd)
    assert not pending, f"{len(pending)} connects did not complete"
    return clients


def run(loop_runner: Callable[[Awaitable[None]], Any], scenario: Callable[[Server, int], Awaitable[None]]) -> None:
    async def main() -> None:
        server = Server(Config(**BASE), echo_scope)
        await server.startup()
        sock = listening_socket()
        await server.start_serving([sock])
        try:
            await asyncio.wait_for(scenario(server, sock.getsockname()[1]), 20)
        finally:
            await server.drain(1.0)
            await server.shutdown()

    loop_runner(main())


async def burst_scenario(server: Server, port: int) -> None:
    assert BURST <= ACCEPT_BATCH
    counter = TurnCounter(asyncio.get_running_loop(), lambda: len(server.state.connections) == BURST)
    clients = connect_burst(port, BURST)
    try:
        start = counter.turns
        await wait_for(lambda: counter.done_at is not None, what=f"{BURST} connections")
    finally:
        for client in clients:
            client.close()
    assert counter.done_at is not None
    turns = counter.done_at - start
    assert turns <= MAX_TURNS, f"{BURST} queued connections took {turns} loop turns to accept"


def test_a_burst_of_connections_is_accepted_in_a_few_turns_on_uvloop() -> None:
    run(uvloop.run, burst_scenario)


def test_a_burst_of_connections_is_accepted_in_a_few_turns_on_asyncio() -> None:
    run(asyncio.run, burst_scenario)


async def serve_after_burst(server: Server, port: int) -> None:
    """Every connection of the burst is served, and the acceptor keeps accepting after it."""
    loop = asyncio.get_running_loop()
    clients = connect_burst(port, ACCEPT_BATCH + 8)  # more than one batch: the rest in a later turn
    try:
        await wait_for(lambda: len(server.state.connections) == len(clients), what="every connection")
        for client in clients[:: len(clients) // 4]:
            await loop.sock_sendall(client, b"GET /x HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
            reply = await asyncio.wait_for(loop.sock_recv(client, 65536), 5)
            assert reply.startswith(b"HTTP/1.1 200 ")
    finally:
        for client in clients:
            client.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /y HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
    assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 200 ")
    writer.close()


def test_more_than_one_batch_is_served_on_uvloop() -> None:
    run(uvloop.run, serve_after_burst)


async def test_a_connection_accepted_just_before_the_drain_is_answered() -> None:
    """A connection accepted, but not yet set up (its adoption Task pending), when the drain
    begins is drained like the others: its request gets a response with Connection: close,
    never a close without one (seen once under --reload load before the drain waited)."""
    server = Server(Config(**BASE), echo_scope)
    await server.startup()
    sock = listening_socket()
    port = sock.getsockname()[1]
    await server.start_serving([sock])
    loop = asyncio.get_running_loop()
    client = socket.socket()
    client.setblocking(False)
    await loop.sock_connect(client, ("127.0.0.1", port))
    await loop.sock_sendall(client, b"GET /late HTTP/1.1\r\nhost: t\r\n\r\n")
    acceptor = server._servers[0]
    acceptor._on_readable()  # accepted now; set up by a Task that has not run to its end yet
    forced = await server.drain(5.0)  # inline: no loop pass before the drain begins
    # The worker exits right after its drain: the response must already be out by now.
    client.setblocking(True)
    client.settimeout(0.5)
    try:
        data = client.recv(65536)
    except (TimeoutError, OSError):
        data = b""
    client.close()
    await server.shutdown()
    assert forced == 0
    assert data.startswith(b"HTTP/1.1 200"), data
    assert b"connection: close" in data.lower()
