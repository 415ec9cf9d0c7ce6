"""The worker's HTTP server: lifespan, listeners, the tick, graceful drain (issue 2).

The cluster's worker entry (worker/main.py) drives it in each worker process::

    server = Server(config, app, stats=stats, worker_id=slot)
    await server.startup()                  # lifespan; LifespanFailure -> exit code LIFESPAN
    await server.start_serving(socks)       # then report "ready"
    ...
    forced = await server.drain(config.graceful_timeout)
    await server.shutdown()                 # lifespan shutdown

:func:`serve` does the same for tests and single-process runs.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from typing import Any

from asynccluster.config import Config
from asynccluster.observe.stats import WorkerStats
from asynccluster.worker.accept import Acceptor
from asynccluster.worker.asgi2 import as_asgi3
from asynccluster.worker.connection import DRAIN_IDLE_SECONDS, DRAIN_LINGER_SECONDS
from asynccluster.worker.lifespan import Lifespan
from asynccluster.worker.protocol import HttpProtocol
from asynccluster.worker.state import ServerState
from asynccluster.worker.tls import (
    alpn_protocols,
    check_tls_settings,
    create_ssl_context,
    http2_enabled,
    server_cert_pem,
    tls_enabled,
    tls_factory,
)
from asynccluster.worker.tlswatch import HandshakeWatch

logger = logging.getLogger("asynccluster.worker")


# While draining, deadlines are short (the idle grace, the lingering close) and the sooner the
# last connection goes, the sooner the worker exits: check them this often.
DRAIN_TICK = 0.05

# Connections refused with 503 over --limit-concurrency are summarised in one warning per this
# many seconds (a flood of them must not flood the log: issue 9 item 6).
OVER_LIMIT_REPORT_SECONDS = 10.0


def tick_interval(config: Config) -> float:
    """How often timeouts are checked: 1 s, finer when a timeout is short (never below 20 ms)."""
    shortest = min(config.timeout_keep_alive, config.header_timeout, config.body_timeout)
    if tls_enabled(config):
        shortest = min(shortest, config.ssl_handshake_timeout)
    if config.ws_ping_interval > 0:  # WebSocket pings are sent (and their answers awaited) by the tick
        shortest = min(shortest, config.ws_ping_interval, config.ws_ping_timeout or config.ws_ping_interval)
    return max(0.02, min(1.0, shortest / 4))


def drain_idle_grace(keep_alive_timeout: float, drain_timeout: float) -> float:
    """How long a keep-alive connection idle at the start of a drain stays open for one more
    request (answered with Connection: close; protocol.py, DRAIN_IDLE_SECONDS says why).

    Bounded by the keep-alive timeout (the server never promised more) and by half the drain
    timeout, so idle connections are closed by the grace, not force-closed at the timeout.
    """
    return max(0.0, min(DRAIN_IDLE_SECONDS, keep_alive_timeout, drain_timeout / 2))


class Server:
    """One worker's ASGI server over any number of listening sockets."""

    def __init__(
        self, config: Config, app: Any, *, stats: WorkerStats | None = None, worker_id: int | None = None
    ) -> None:
        self.config = config
        self.app = as_asgi3(app)
        self.stats = stats if stats is not None else WorkerStats()
        self.worker_id = worker_id
        self.lifespan = Lifespan(self.app, config.lifespan, shutdown_timeout=config.graceful_timeout)
        self._servers: list[Acceptor] = []
        self._state: ServerState | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._tick_every = 0.0  # state.tick, or DRAIN_TICK once draining
        self._second = 0
        self._over_limit_report_at = 0.0  # loop time before which no 503 summary is logged
        self.ssl_context: ssl.SSLContext | None = None  # set by load_tls with --ssl-certfile

    @property
    def state(self) -> ServerState:
        if self._state is None:
            self._state = ServerState(
                self.config,
                self.app,
                self.stats,
                asyncio.get_running_loop(),
                worker_id=self.worker_id,
                tick=tick_interval(self.config),
            )
            access_log = self._state.access_log
            if access_log is not None:  # its drop count rides in the heartbeat (issue 16)
                self.stats.dropped_log_lines = lambda: access_log.dropped
        return self._state

    # ------------------------------------------------------------ lifecycle

    async def startup(self) -> None:
        """Lifespan startup (per --lifespan); raises LifespanFailure with the reason."""
        await self.lifespan.startup()
        self.state.lifespan_state = self.lifespan.state

    def load_tls(self) -> None:
        """Read the certificate files now (each worker start: a reload picks up renewed ones).

        Raises :class:`asynccluster.worker.tls.TLSConfigError` when they cannot be used.
        """
        http2_enabled(self.config)  # --http 2 without the h2 package: Http2Unavailable, now
        check_tls_settings(self.config)  # e.g. --ssl-keyfile alone must not serve plain HTTP
        if not tls_enabled(self.config) or self.ssl_context is not None:
            return
        self.ssl_context = create_ssl_context(self.config, alpn_protocols(self.config))
        state = self.state
        state.tls_watch = HandshakeWatch(self.config.ssl_handshake_timeout + state.tick, server_cert_pem(self.config))

    async def start_serving(self, socks: list[socket.socket]) -> None:
        """Serve every listening socket (TCP or unix) on this loop (over TLS with --ssl-certfile)."""
        self.load_tls()
        state = self.state
        loop = state.loop
        tls = self.ssl_context
        handshake_timeout = self.config.ssl_handshake_timeout if tls is not None else None

        def factory() -> HttpProtocol:
            return HttpProtocol(state)

        def secure_factory() -> HttpProtocol:
            return tls_factory(state)

        if tls is None and self.config.http == "2" and http2_enabled(self.config):
            # h2c with prior knowledge beside HTTP/1.1 (the client preface tells them apart).
            from asynccluster.worker.h2protocol import H2cSniffingProtocol

            def factory() -> HttpProtocol:
                return H2cSniffingProtocol(state)

        for sock in socks:
            chosen = secure_factory if tls is not None else factory
            # Our own accept loop, not loop.create_server: uvloop accepts one connection per
            # loop turn, which starves a burst of new connections while the worker is busy
            # (worker/accept.py; issue 16).
            sock.listen(self.config.backlog)
            acceptor = Acceptor(loop, sock, chosen, ssl=tls, ssl_handshake_timeout=handshake_timeout)
            acceptor.start()
            self._servers.append(acceptor)
        if self._ticker is None:
            self._schedule_tick()

    async def drain(self, timeout: float) -> int:
        """Stop accepting, finish in-flight requests (Connection: close), close idle connections.

        An idle keep-alive connection is closed after a short grace (:func:`drain_idle_grace`)
        unless a request comes first, which is then answered with Connection: close. Waits up
        to ``timeout`` seconds, then force-closes what is left and cancels app tasks still
        running. Returns how many connections had to be force-closed.
        """
        state = self.state
        state.draining = True
        adopting = [task for server in self._servers for task in server.adopting()]
        for server in self._servers:
            server.close()
        self._servers.clear()
        if adopting:
            # Connections accepted just before the listener closed are still being set up (a
            # Task each, before 3.12 run on a later loop pass): let them become connections,
            # so they are drained like the rest instead of being dropped when the worker exits
            # (a fresh connection closed without a response during a --reload under load).
            await asyncio.wait(adopting, timeout=max(0.0, timeout / 2))
        state.all_closed.clear()
        state.now = now = state.loop.time()
        state.drain_idle_deadline = now + drain_idle_grace(self.config.timeout_keep_alive, timeout)
        state.drain_linger = min(DRAIN_LINGER_SECONDS, timeout / 4)
        # Open WebSockets: closed with 1012 after --ws-drain-grace, leaving half the drain
        # timeout for the close handshake (websocket.py).
        state.ws_drain_deadline = now + min(self.config.ws_drain_grace, timeout / 2)
        for connection in list(state.connections):
            connection.shutdown()
        if self._ticker is not None:  # from now on, deadlines are checked every DRAIN_TICK
            self._ticker.cancel()
            self._schedule_tick(min(state.tick, DRAIN_TICK))
        deadline = now + timeout
        if state.connections:
            try:
                await asyncio.wait_for(state.all_closed.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        forced = len(state.connections)
        if forced:
            logger.warning("graceful timeout (%.1fs): force-closing %d connection(s)", timeout, forced)
            for connection in list(state.connections):
                connection.force_close()
        await self._finish_tasks(deadline - state.loop.time())
        return forced

    async def _finish_tasks(self, remaining: float) -> None:
        """App tasks still running (e.g. background work after a response): wait, then cancel."""
        tasks = set(self.state.tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, remaining))
        if pending:
            logger.warning("cancelling %d app task(s) still running after the graceful timeout", len(pending))
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=1.0)

    async def shutdown(self) -> None:
        """Lifespan shutdown; stops the tick."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        await self.lifespan.shutdown()

    def connection_count(self) -> int:
        return len(self._state.connections) if self._state is not None else 0

    # ------------------------------------------------------------ the tick

    def _schedule_tick(self, every: float | None = None) -> None:
        if every is not None:
            self._tick_every = every
        elif not self._tick_every:
            self._tick_every = self.state.tick
        self._ticker = self.state.loop.call_later(self._tick_every, self._tick)

    def _tick(self) -> None:
        """Refresh the clock and (once a second) the date header; expire timed-out connections."""
        state = self.state
        state.now = now = state.loop.time()
        second = int(time.time())
        if second != self._second:
            self._second = second
            state.refresh_date()
        for connection in tuple(state.connections):
            connection.check_timeout(now)
        if state.over_limit and now >= self._over_limit_report_at:
            self._report_over_limit(now)
        if state.tls_watch is not None:
            state.tls_watch.sweep(now)
        self._schedule_tick()

    def _report_over_limit(self, now: float) -> None:
        """One line per OVER_LIMIT_REPORT_SECONDS for connections refused with 503 (issue 9)."""
        state = self.state
        logger.warning(
            "connection limit (%d) reached: %d connection(s) answered 503 since the last report",
            state.limit_concurrency,
            state.over_limit,
        )
        state.over_limit = 0
        self._over_limit_report_at = now + OVER_LIMIT_REPORT_SECONDS


async def serve(config: Config, app: Any, socks: list[socket.socket], stop: asyncio.Event) -> None:
    """Start, serve until ``stop`` is set, drain (config.graceful_timeout), shut down."""
    server = Server(config, app)
    await server.startup()
    await server.start_serving(socks)
    try:
        await stop.wait()
    finally:
        await server.drain(config.graceful_timeout)
        await server.shutdown()
