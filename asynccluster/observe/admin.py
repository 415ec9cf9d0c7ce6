"""The master's admin endpoint (``--admin HOST:PORT``): /metrics, /livez, /readyz, /status.

Off by default, 127.0.0.1 unless a host is given (issue 5). The master must not import
``asynccluster/http/`` (DESIGN.md §2), and this is not a hot path, so it is a tiny
HTTP/1.0-style responder on asyncio streams: read the request line and the header section
(bounded in size and time), answer once with Content-Length and ``Connection: close``.

- ``/livez``: 200 while the master's loop runs.
- ``/readyz``: 200 while at least one worker is ready and the cluster is not stopping; 503 as
  soon as a SIGTERM arrives (the supervisor's state turns "stopping" before the drain), so
  a load balancer stops sending traffic while in-flight requests finish.
- ``/metrics``: the cluster-wide Prometheus exposition (observe/prometheus.py).
- ``/status``: the same JSON as ``asynccluster status --json``.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asynccluster.observe.aggregate import Monitor, acquire_monitor, release_monitor
from asynccluster.observe.dashboard import Dashboard, claims, start_dashboard
from asynccluster.observe.guard import host_allowed
from asynccluster.observe.prometheus import CONTENT_TYPE, is_ready, render
from asynccluster.observe.streams import ACCEPT_BACKLOG, Connections, connection_cap
from asynccluster.settingtypes import split_host_port

log = logging.getLogger("asynccluster.admin")

CloseFn = Callable[[], Awaitable[None]]
READ_TIMEOUT = 10.0
MAX_LINE = 8192
MAX_HEADER_LINES = 100
# Open admin connections at most (issue 9: 1,100 idle ones exhausted the master's fds); at
# the limit the oldest idle one is closed, so a /livez probe still gets in (streams.py).
MAX_CONNECTIONS = 64
REFUSAL = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


class AdminAddressError(ValueError):
    pass


def parse_admin_address(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT``, ``PORT`` or ``[IPv6]:PORT`` (the parsing lives with the setting)."""
    try:
        return split_host_port(text, default_host)
    except ValueError as exc:
        raise AdminAddressError(f"--admin: {exc}") from None


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class AdminHandler:
    dashboard: Dashboard | None = None  # serves /, /dashboard, /static/, /api/ (issue 12)

    def __init__(self, monitor: Monitor, connections: Connections | None = None, bound_host: str = "") -> None:
        self.monitor = monitor
        self.connections = connections
        self.bound_host = bound_host  # the --admin host ("" in unit tests: no Host check)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            headers: dict[str, str] = {}
            request = await asyncio.wait_for(read_request_head(reader, headers), READ_TIMEOUT)
            if self.connections is not None:
                self.connections.busy(writer)  # a request to answer: no longer evictable
            if request is None:
                status, content_type, body = 400, TEXT, b"bad request\n"
                method = "GET"
            else:
                method, target = request
                if self.dashboard is not None and claims(target.split("?", 1)[0]):
                    await self.dashboard.serve(method, target, headers, reader, writer)
                    return
                if self.bound_host and not host_allowed(headers, self.bound_host):
                    # Bound to loopback: a DNS-rebinding page (evil.example -> 127.0.0.1) must
                    # not read /status or /metrics either (attack run on issue 12).
                    status, content_type, body = 403, TEXT, b"Host not allowed on a loopback admin endpoint\n"
                else:
                    status, content_type, body = self.route(method, target)
            await respond(writer, status, content_type, b"" if method == "HEAD" else body, len(body))
        except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("admin: request failed")
        finally:
            writer.close()

    def route(self, method: str, target: str) -> tuple[int, str, bytes]:
        path = target.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, TEXT, b"only GET and HEAD\n"
        if path == "/livez":
            return 200, TEXT, b"ok\n"
        if path == "/readyz":
            ready = is_ready(self.monitor.sample())
            return (200, TEXT, b"ready\n") if ready else (503, TEXT, b"not ready\n")
        if path == "/metrics":
            return 200, CONTENT_TYPE, render(self.monitor.view()).encode()
        if path == "/status":
            return 200, JSON, json.dumps(self.monitor.view(), default=str).encode()
        return 404, TEXT, b"not found; try / (dashboard) /metrics /livez /readyz /status\n"


async def read_request_head(
    reader: asyncio.StreamReader, headers: dict[str, str] | None = None
) -> tuple[str, str] | None:
    """The method and target of the request line; the header fields go into ``headers`` (names
    lowercased, the last of repeated ones wins) if given, else they are read and ignored.

    None for anything malformed or over the limits (answered with 400).
    """
    try:
        line = await reader.readline()
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return None
        for _ in range(MAX_HEADER_LINES):
            header = await reader.readline()
            if header in (b"\r\n", b"\n", b""):
                return parts[0], parts[1]
            if headers is not None:
                name, _, value = header.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
    except (ValueError, asyncio.LimitOverrunError):  # a line longer than MAX_LINE
        return None
    return None


async def respond(writer: asyncio.StreamWriter, status: int, content_type: str, body: bytes, length: int) -> None:
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(head.encode("latin-1") + body)
    await writer.drain()


def warn_if_exposed(host: str) -> None:
    """--admin on a non-loopback address serves /status (pids, app path, config) to anyone who
    can reach it, with no authentication (issue 9): say so once at start."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        log.warning(
            "--admin %s is reachable from other hosts: /status and /metrics are served without "
            "authentication; bind it to 127.0.0.1 or put it behind a firewall",
            host,
        )


async def start_admin(supervisor: Any, config: Any) -> CloseFn:
    """Serve the admin endpoint on ``config.admin``; returns the coroutine function closing it."""
    try:
        host, port = parse_admin_address(config.admin)
    except AdminAddressError as exc:
        # An OSError like a bind failure: the master reports it and exits (exitcodes.BIND).
        raise OSError(errno.EINVAL, str(exc)) from None
    warn_if_exposed(host)
    monitor = acquire_monitor(supervisor)
    connections = Connections(connection_cap(MAX_CONNECTIONS), "admin", REFUSAL)
    handler = AdminHandler(monitor, connections, host)
    try:
        server = await asyncio.start_server(
            connections.track(handler.handle), host, port, limit=MAX_LINE, backlog=ACCEPT_BACKLOG
        )
    except OSError as exc:
        await release_monitor(supervisor)
        raise OSError(exc.errno, f"cannot serve --admin on {format_address(host, port)}: {exc.strerror}") from None
    bound_port = server.sockets[0].getsockname()[1]
    address = format_address(host, bound_port)
    # With --admin HOST:0 the port is only known now: log it and put it in the status.
    monitor.extra["admin"] = address
    log.info("admin endpoint on http://%s/ (/metrics /livez /readyz /status)", address)
    dashboard = handler.dashboard = start_dashboard(supervisor, monitor, config.admin_token, host)
    # The fragment never reaches a server: the page reads the token from it and forgets the URL.
    shown = "" if config.admin_token else f"#token={dashboard.token}"
    log.info("dashboard on http://%s/%s (actions need the %s)", address, shown,
             "--admin-token" if config.admin_token else "token in this link, generated at start")  # fmt: skip

    async def close() -> None:
        server.close()
        await dashboard.close()
        await connections.close()
        monitor.extra.pop("admin", None)
        await release_monitor(supervisor)

    return close


__all__ = ["AdminAddressError", "format_address", "parse_admin_address", "start_admin"]
