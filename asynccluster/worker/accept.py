"""The worker's accept loop: every queued connection taken in one loop turn (issue 16).

Why not ``loop.create_server``: since libuv 1.45 (libuv PR #3696, bundled by uvloop >= 0.18)
a listening socket accepts ONE connection per loop iteration. While the worker is busy, an
iteration runs every ready connection's callbacks (a pipelined read answers 16 requests in
it), so it lasts milliseconds to tens of milliseconds, and a burst of new connections waits
in the kernel's accept queue one iteration each: with 256 wrk connections opened at once
against a busy worker the last ones were accepted seconds later (the "post-disconnect
stall" of issue 16: ~40 timeouts, latency up to 2 s, no listen overflow; `ss -lnt` showed
the accept queue at 236 draining by ~50/s). asyncio's own selector loop accepts up to the
backlog per wake-up, which is what this module restores on any loop.

Each readable event on a listening socket accepts up to :data:`ACCEPT_BATCH` connections
(bounded work per turn: a flood of connects cannot starve the connections being served) and
hands each to ``loop.connect_accepted_socket`` (the same transports as ``create_server``,
TCP_NODELAY included). Out of descriptors (EMFILE/ENFILE), accepting pauses for
:data:`ACCEPT_RETRY_SECONDS` instead of spinning on a socket that stays readable (asyncio
does the same), and one warning per :data:`FD_REPORT_SECONDS` says how often it happened.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import logging
import socket
from collections.abc import Callable
from ssl import SSLContext
from typing import Any

from asynccluster.worker.compat import start_task

logger = logging.getLogger("asynccluster.worker")

# Connections accepted per readable event. uvloop's old behaviour and asyncio's are "all of
# the backlog"; 128 keeps one turn's extra work bounded (a connection costs ~10 us to adopt)
# while a queue of thousands is still taken in a handful of turns.
ACCEPT_BATCH = 128

# Out of descriptors: stop accepting for this long (the queued clients wait in the backlog
# rather than being reset; a descriptor is usually freed by a closing connection meanwhile).
ACCEPT_RETRY_SECONDS = 0.1

# One warning per this many seconds while accept() fails for lack of descriptors.
FD_REPORT_SECONDS = 10.0

_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Acceptor:
    """Accepts on one listening socket and adopts each connection with ``factory``'s protocol.

    ``start()`` begins watching the socket; ``close()`` stops and closes it (drain: the kernel
    then sends new connections to the other workers' sockets).
    """

    __slots__ = (
        "_context",
        "_factory",
        "_failures",
        "_loop",
        "_reported_at",
        "_retry",
        "_sock",
        "_ssl",
        "_ssl_handshake_timeout",
        "_tasks",
        "closed",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        *,
        ssl: SSLContext | None = None,
        ssl_handshake_timeout: float | None = None,
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._factory = factory
        self._ssl = ssl  # TLS: the handshake runs inside the adoption (connection_made after it)
        self._ssl_handshake_timeout = ssl_handshake_timeout if ssl is not None else None
        self._context = contextvars.copy_context()
        self._tasks: set[asyncio.Task[Any]] = set()  # adoptions in progress (the loop holds tasks weakly)
        self._retry: asyncio.TimerHandle | None = None
        self._failures = 0  # accept() failures for lack of descriptors since the last warning
        self._reported_at = -FD_REPORT_SECONDS
        self.closed = False

    def start(self) -> None:
        self._sock.setblocking(False)
        self._loop.add_reader(self._sock.fileno(), self._on_readable)

    def adopting(self) -> list[asyncio.Task[Any]]:
        """Accepted connections still being set up (their protocol not made yet)."""
        return list(self._tasks)

    def close(self) -> None:
        """Stop accepting and close the listening socket (idempotent)."""
        if self.closed:
            return
        self.closed = True
        if self._retry is not None:
            self._retry.cancel()
        else:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    def _on_readable(self) -> None:
        sock = self._sock
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # the queue is empty
            except ConnectionAbortedError:
                continue  # reset while queued: nothing to serve
            except OSError as exc:
                if exc.errno in _OUT_OF_FDS:
                    self._out_of_descriptors()
                    return
                raise
            self._adopt(conn)

    def _adopt(self, conn: socket.socket) -> None:
        """Give the accepted socket a transport and a protocol (connection_made follows)."""
        task = start_task(self._loop, self._connect(conn), self._context)
        if not task.done():
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(
                self._factory, conn, ssl=self._ssl, ssl_handshake_timeout=self._ssl_handshake_timeout
            )
        except (OSError, asyncio.TimeoutError) as exc:
            # Reset before the transport was set up, or a TLS handshake that failed or timed
            # out (the loop closed the transport): nothing to serve, nothing worth a warning.
            logger.debug("accepted connection lost before it was set up: %s", exc)
            conn.close()

    def _out_of_descriptors(self) -> None:
        """Pause accepting for ACCEPT_RETRY_SECONDS; warn once per FD_REPORT_SECONDS."""
        loop = self._loop
        self._failures += 1
        now = loop.time()
        if now - self._reported_at >= FD_REPORT_SECONDS:
            logger.warning(
                "out of file descriptors: accepting paused %d time(s) in the last %.0f s "
                "(raise the open-files limit or lower --limit-concurrency)",
                self._failures,
                FD_REPORT_SECONDS,
            )
            self._failures = 0
            self._reported_at = now
        loop.remove_reader(self._sock.fileno())
        self._retry = loop.call_later(ACCEPT_RETRY_SECONDS, self._resume)

    def _resume(self) -> None:
        self._retry = None
        if not self.closed:
            self._loop.add_reader(self._sock.fileno(), self._on_readable)
