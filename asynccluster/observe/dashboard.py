"""The live dashboard on the admin endpoint (issue 12): one page, fed by server-sent events.

Routes (observe/admin.py hands them over after reading the request head):

- ``GET /`` and ``GET /dashboard``: the page (static/index.html, dashboard.js, dashboard.css,
  shipped in the package: no build step, no CDN, works offline; charts are canvas drawn by
  our own script).
- ``GET /api/stream``: ``text/event-stream``; first a ``snapshot`` (the last 10 minutes of
  points, the timeline, the recent log lines, the worker table), then a ``frame`` a second
  with the new point, the table and whatever timeline events and log lines are new.
- ``GET /api/state``: the snapshot as JSON; ``GET /api/clusters``: this user's clusters.
- ``GET /api/errors``: the grouped app exceptions with one traceback each (issue 15).
- ``POST /api/reload``, ``POST /api/scale`` (``{"count": "N" | "+N" | "-N"}``),
  ``POST /api/restart`` (``{"slot": N}``): the supervisor's own verbs, the ones the control
  socket and the signals call; guarded by observe/guard.py (token + same origin).

The ticker runs once a second while the endpoint is up, whether or not a page is open, so
the history is there when one opens; frames are encoded only while a stream is connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from importlib import resources
from typing import Any

from asynccluster.contracts.results import OperationResult
from asynccluster.observe.events import EventRing, install_log_ring
from asynccluster.observe.guard import host_allowed, new_token, refuse_action
from asynccluster.observe.history import Recorder
from asynccluster.observe.peers import Peers
from asynccluster.observe.sse import Hub, encode

log = logging.getLogger("asynccluster.admin")

TICK = 1.0  # seconds between frames
# Log lines sent: a snapshot carries the newest SNAPSHOT_LOGS, a frame at most FRAME_LOGS (the
# rest of a burst, e.g. access-log lines the master relays, is counted in "logs_skipped").
SNAPSHOT_LOGS = 1000
FRAME_LOGS = 200
MAX_BODY = 4096  # bytes of an action's JSON body
BODY_TIMEOUT = 10.0
STATIC = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
PAGES = ("/", "/dashboard", "/dashboard/")
SECURITY_HEADERS = (
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "X-Frame-Options: DENY\r\n"
)
REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           409: "Conflict", 413: "Content Too Large", 503: "Service Unavailable"}  # fmt: skip
Response = tuple[int, str, bytes]


def claims(path: str) -> bool:
    """Whether a path is the dashboard's (the admin endpoint answers the rest)."""
    return path in PAGES or path.startswith(("/static/", "/api/"))


def static_file(name: str) -> bytes:
    return resources.files("asynccluster.observe").joinpath("static").joinpath(name).read_bytes()


async def send(writer: asyncio.StreamWriter, response: Response, *, head_only: bool = False) -> None:
    status, content_type, body = response
    headers = (
        f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n{SECURITY_HEADERS}Connection: close\r\n\r\n"
    )
    writer.write(headers.encode("latin-1") + (b"" if head_only else body))
    await writer.drain()


def json_response(status: int, data: Any) -> Response:
    return status, "application/json", json.dumps(data, default=str).encode()


def error(status: int, message: str) -> Response:
    return json_response(status, {"ok": False, "error": message})


class Dashboard:
    def __init__(self, supervisor: Any, monitor: Any, token: str, bound_host: str) -> None:
        self.supervisor = supervisor
        self.monitor = monitor
        self.token = token
        self.bound_host = bound_host
        self.events: EventRing = getattr(supervisor, "events", None) or EventRing()
        self.logs = install_log_ring()  # kept attached for the process's life (one per process)
        self.recorder = Recorder()
        self.hub = Hub()
        self.peers = Peers(lambda: dict(monitor.extra))
        self.frame: dict[str, Any] = {}
        self._event_seq = self.events.seq
        self._log_seq = self.logs.ring.seq
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ the ticker

    def start(self) -> None:
        self.tick()
        self._task = asyncio.get_running_loop().create_task(self._tick_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.hub.close()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                self.tick()
            except Exception:  # one bad status must not end the dashboard
                log.exception("dashboard: a tick failed")

    def tick(self) -> None:
        """Record this second's point; push it (and what is new) to the open streams."""
        self.frame = self.recorder.add(self.monitor.view())
        if not self.hub.clients:
            self._event_seq, self._log_seq = self.events.seq, self.logs.ring.seq
            return
        logs = self.logs.since(self._log_seq)
        frame = {**self.frame, "events": self.events.since(self._event_seq), "logs": logs[-FRAME_LOGS:],
                 "logs_skipped": max(0, len(logs) - FRAME_LOGS)}  # fmt: skip
        self._event_seq, self._log_seq = self.events.seq, self.logs.ring.seq
        self.hub.broadcast(encode("frame", frame))

    def snapshot(self) -> dict[str, Any]:
        return {**self.frame, "history": list(self.recorder.points), "events": self.events.items(),
                "logs": self.logs.ring.items()[-SNAPSHOT_LOGS:]}  # fmt: skip

    # ------------------------------------------------------------ requests

    async def serve(self, method: str, target: str, headers: dict[str, str], reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:  # fmt: skip
        """Answer one request for a path :func:`claims` is true of."""
        path = target.split("?", 1)[0]
        if not host_allowed(headers, self.bound_host):
            await send(writer, error(403, "unexpected Host header (DNS rebinding?); use http://127.0.0.1:PORT/"))
            return
        if path == "/api/stream" and method == "GET":
            if self.hub.full:
                await send(writer, error(503, f"at most {self.hub.max_clients} dashboard streams at once"))
                return
            await self.hub.serve(reader, writer, encode("snapshot", self.snapshot()))
            return
        if path.startswith("/api/") and path[5:] in ACTIONS:
            await send(writer, await self.action(path[5:], method, headers, reader))
            return
        if method not in ("GET", "HEAD"):
            await send(writer, error(405, "only GET and HEAD here"))
            return
        await send(writer, await self.read_only(path), head_only=method == "HEAD")

    async def read_only(self, path: str) -> Response:
        if path in PAGES:
            return 200, STATIC["index.html"], static_file("index.html")
        if path.startswith("/static/") and path[8:] in STATIC:
            return 200, STATIC[path[8:]], static_file(path[8:])
        if path == "/api/state":
            return json_response(200, self.snapshot())
        if path == "/api/clusters":
            return json_response(200, await self.peers.discover())
        if path == "/api/errors":  # grouped app exceptions (issue 15; master/diagnose.py)
            diagnostics = getattr(self.supervisor, "diagnostics", None)
            return json_response(200, diagnostics.error_report() if diagnostics is not None else {"groups": []})
        return error(404, "not found")

    async def action(self, name: str, method: str, headers: dict[str, str], reader: asyncio.StreamReader) -> Response:
        refused = refuse_action(method, headers, self.token)
        if refused is not None:
            return error(*refused)
        try:
            body = await asyncio.wait_for(read_body(reader, headers), BODY_TIMEOUT)
        except ValueError as exc:
            return error(400, str(exc))
        try:
            result = await ACTIONS[name](self.supervisor, body)
        except ValueError as exc:
            return error(400, str(exc))
        except RuntimeError as exc:  # e.g. "the cluster is not running"
            return error(409, str(exc))
        outcome = result.to_dict()  # the control socket's wire format (contracts/results.py)
        return json_response(200 if outcome["ok"] else 409, outcome)


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> dict[str, Any]:
    """The JSON object of an action (an empty body is ``{}``); ValueError says what is wrong."""
    length_text = headers.get("content-length", "0").strip() or "0"
    if not (length_text.isascii() and length_text.isdigit()):
        raise ValueError("bad Content-Length")
    length = int(length_text)
    if length > MAX_BODY:
        raise ValueError(f"body over {MAX_BODY} bytes")
    if length == 0:
        return {}
    raw = await reader.readexactly(length)
    try:
        body = json.loads(raw)
    except ValueError:
        raise ValueError("the body is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError('the body is a JSON object, like {"count": "+1"}')
    return body


# ---------------------------------------------------------------- the actions: the supervisor's verbs


async def do_reload(supervisor: Any, body: dict[str, Any]) -> OperationResult:
    return await supervisor.reload()


async def do_scale(supervisor: Any, body: dict[str, Any]) -> OperationResult:
    """``N``, ``+N`` or ``-N``, as ``asynccluster scale`` takes it."""
    text = str(body.get("count", "")).strip()
    if not re.fullmatch(r"[+-]?[0-9]{1,9}", text):  # ASCII digits only, as the control socket
        raise ValueError(f"scale: expected N, +N or -N (ASCII digits), got {text!r}")
    if text[0] in "+-":
        return await supervisor.scale_by(int(text))
    return await supervisor.scale(int(text))


async def do_restart(supervisor: Any, body: dict[str, Any]) -> OperationResult:
    slot = body.get("slot")
    if isinstance(slot, str) and re.fullmatch(r"[0-9]{1,9}", slot.strip()):
        slot = int(slot)
    if not isinstance(slot, int) or isinstance(slot, bool):
        raise ValueError(f"restart: expected a slot number, got {slot!r}")
    return await supervisor.restart(slot)


ACTIONS = {"reload": do_reload, "scale": do_scale, "restart": do_restart}


def start_dashboard(supervisor: Any, monitor: Any, token: str, bound_host: str) -> Dashboard:
    """Start the ticker; the token is ``--admin-token`` or a new one (the caller prints it)."""
    dashboard = Dashboard(supervisor, monitor, token or new_token(), bound_host)
    dashboard.start()
    return dashboard


__all__ = ["Dashboard", "claims", "start_dashboard"]
