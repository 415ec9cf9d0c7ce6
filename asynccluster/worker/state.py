"""What every connection of one worker shares: settings in hot-path form, counters, the clock.

Built once by :class:`asynccluster.worker.server.Server`; each :class:`HttpProtocol` holds a
reference, so per-connection setup is a handful of attribute reads.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import TYPE_CHECKING, Any

from asynccluster.config import Config
from asynccluster.http.cache import HotCache, RequestCaches
from asynccluster.http.limits import Limits
from asynccluster.http.proxy import TrustedProxies
from asynccluster.http.response import HEADER_NAMES_SIZE, HeaderNames, date_header
from asynccluster.observe.stats import WorkerStats
from asynccluster.worker.accesslog import AccessLog
from asynccluster.worker.asgi2 import ASGIApp
from asynccluster.worker.headcache import HeadCache
from asynccluster.worker.lifespan import ASGI_VERSION
from asynccluster.worker.wssettings import WsOptions

if TYPE_CHECKING:
    from asynccluster.worker.interfaces import Connection
    from asynccluster.worker.tlswatch import HandshakeWatch

SERVER_HEADER_VALUE = b"asynccluster"


def limits_from_config(config: Config) -> Limits:
    """The parser's limits from the worker's settings (http/ does not read Config itself)."""
    return Limits(
        request_line=config.limit_request_line,
        header_fields=config.limit_request_fields,
        header_size=config.limit_request_header_size,
        body=config.limit_request_body,
    )


class ServerState:
    """Per-worker state shared by all connections. Mutated only on the event loop."""

    __slots__ = (
        "access_log",
        "all_closed",
        "app",
        "asgi",
        "body_grace",
        "connections",
        "context",
        "date",
        "drain_idle_deadline",
        "drain_linger",
        "draining",
        "head_cache",
        "header_grace",
        "header_names",
        "header_timeout",
        "keep_alive_grace",
        "keep_alive_timeout",
        "lifespan_state",
        "limit_concurrency",
        "limit_pipeline",
        "limits",
        "loop",
        "now",
        "over_limit",
        "pathsend",
        "proxies",
        "request_caches",
        "root_path",
        "server_header",
        "stats",
        "tasks",
        "tick",
        "tls_watch",
        "ws",
        "ws_drain_deadline",
    )

    def __init__(
        self,
        config: Config,
        app: ASGIApp,
        stats: WorkerStats,
        loop: asyncio.AbstractEventLoop,
        *,
        worker_id: int | None = None,
        tick: float = 1.0,
    ) -> None:
        self.app = app
        self.loop = loop
        self.stats = stats
        self.limits = limits_from_config(config)
        self.root_path = config.root_path
        self.asgi = dict(ASGI_VERSION)
        self.lifespan_state: dict[str, Any] = {}
        self.connections: set[Connection] = set()  # every open one: HTTP/1.1, HTTP/2, WebSocket
        self.tasks: set[asyncio.Task[Any]] = set()
        self.access_log = AccessLog(config.access_log_format, worker_id) if config.access_log else None
        self.proxies = TrustedProxies(config.forwarded_allow_ips) if config.proxy_headers else None
        self.server_header: bytes | None = SERVER_HEADER_VALUE if config.server_header else None
        self.date: bytes | None = date_header(time.time()) if config.date_header else None
        self.keep_alive_timeout = config.timeout_keep_alive
        self.header_timeout = config.header_timeout
        self.limit_concurrency = config.limit_concurrency
        self.limit_pipeline = max(1, config.limit_pipeline)
        self.pathsend = config.pathsend  # offer http.response.pathsend (issue 16)
        self.draining = False
        # Set by Server.drain: idle keep-alive connections are half-closed at drain_idle_deadline
        # and fully closed at most drain_linger seconds later.
        self.drain_idle_deadline = 0.0
        self.drain_linger = 0.0
        # The worker's memo tables (issue 10): created once here, passed to every connection's
        # parser and response writer; bounded, keeping what is asked for again.
        self.head_cache = HeadCache()
        self.request_caches = RequestCaches()
        self.header_names: HeaderNames = HotCache(HEADER_NAMES_SIZE)
        self.all_closed = asyncio.Event()
        # Each request runs in a copy of this context (a fresh one per request, so nothing an
        # app sets in a contextvar leaks into the next request on the connection).
        self.context = contextvars.copy_context()
        # The coarse clock for timeouts: loop.time() as of the last tick. Deadlines add one
        # tick, so a timeout never fires early; it may fire up to one tick late.
        self.tick = tick
        self.now = loop.time()
        self.header_grace = self.header_timeout + tick  # deadline = now + grace
        self.keep_alive_grace = self.keep_alive_timeout + tick
        self.body_grace = config.body_timeout + tick
        # Connections answered 503 over --limit-concurrency since the server last logged them:
        # one summary line per interval, not a warning per connection (issue 9 item 6).
        self.over_limit = 0
        # TLS listeners only (worker/tls.py): handshakes not completed yet, failures counted.
        self.tls_watch: HandshakeWatch | None = None
        self.ws = WsOptions.from_config(config)  # the --ws-* settings (issue 13)
        # Set by Server.drain: open WebSockets are closed with 1012 at this loop time.
        self.ws_drain_deadline = 0.0

    def refresh_date(self) -> None:
        """Called by the server's timer once a second (not per request)."""
        if self.date is not None:
            self.date = date_header(time.time())
