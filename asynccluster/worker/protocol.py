"""One client connection: transport <-> sans-IO parser <-> ASGI cycles (issue 2).

Life of a read (``data_received``):

1. the parser is fed the bytes and calls back ``on_request`` / ``on_body`` /
   ``on_request_complete``; each request head becomes a :class:`Cycle` queued in
   ``pipeline`` (responses must go out in request order, RFC 9112 §9.3.2);
2. :meth:`_run_pipeline` runs the queued cycles' apps eagerly, one at a time, in order;
3. everything the responses wrote meanwhile leaves in ONE ``transport.write``.

An app that suspends becomes a Task; the pipeline waits for its response to complete and
then continues (from a loop callback, never nested inside the app's own frame).

Timeouts are not one timer per request: each connection keeps ``deadline``/``timer`` and
the server's once-a-tick sweep (:meth:`check_timeout`) closes the ones that ran out:
``IDLE`` (keep-alive idle, closed silently), ``HEADER`` (a request head is being
received: 408, RFC 9110 §15.5.9) and, while the worker drains, ``DRAIN_IDLE`` (see
:meth:`HttpProtocol.shutdown`).

This module is the per-request path only. The cold paths (error responses, timeouts, drain,
the WebSocket handoff) are the :class:`ConnectionControl` mixin in connection_control.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, cast

from asynccluster.http.errors import ProtocolError
from asynccluster.http.parser import RequestHead, RequestParser
from asynccluster.http.response import ResponseWriter
from asynccluster.worker.compat import EAGER_TASKS
from asynccluster.worker.connection_control import (
    BODY_TIMER,
    DRAIN_IDLE,
    DRAIN_IDLE_SECONDS,
    DRAIN_LINGER_SECONDS,
    HEADER,
    IDLE,
    LINGER,
    LINGER_SECONDS,
    NONE,
    ConnectionControl,
)
from asynccluster.worker.cycle import Cycle
from asynccluster.worker.flow import BODY, FLUSH_THRESHOLD, PIPELINE, FlowControl, WriteFlowProtocol
from asynccluster.worker.state import ServerState
from asynccluster.worker.websocket import WebSocketSession

# The timer kinds and drain constants live with the code that uses them (connection_control);
# they stay importable from here, where server.py and the tests have always found them.
__all__ = [
    "BODY_TIMER",
    "DRAIN_IDLE",
    "DRAIN_IDLE_SECONDS",
    "DRAIN_LINGER_SECONDS",
    "HEADER",
    "IDLE",
    "LINGER",
    "LINGER_SECONDS",
    "NONE",
    "HttpProtocol",
]

logger = logging.getLogger("asynccluster.worker")

# A response completed while the worker drains leaves its connection idle this long at least
# before the staged close (see ConnectionControl.shutdown): about ten drain ticks.
DRAIN_REPLY_GRACE = 0.5

PATHSEND = "http.response.pathsend"  # the ASGI Path Send extension's key


class HttpProtocol(ConnectionControl, WriteFlowProtocol):
    __slots__ = (
        "accepting",
        "active",
        "client",
        "closed",
        "closing",
        "deadline",
        "error_status",
        "flow",
        "fresh",
        "out",
        "out_size",
        "parser",
        "pipeline",
        "reading",
        "scope_template",
        "state",
        "timer",
        "tls",
        "transport",
        "trusted",
        "writer",
        "ws_pending",
        "ws_session",
    )

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.parser = RequestParser(self, state.limits, state.request_caches)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.flow: FlowControl = None  # type: ignore[assignment]
        self.pipeline: deque[Cycle] = deque()
        self.active: Cycle | None = None  # pipeline[0] once its app has been started
        self.reading: Cycle | None = None  # the cycle whose body the parser is delivering
        self.out: list[bytes] | None = None  # non-None while coalescing writes
        self.out_size = 0
        self.accepting = True  # False once a request said Connection: close (later ones are ignored)
        self.closing = False  # close once the output is flushed
        self.closed = False
        # No request received yet. Drain answers a fresh connection's first request (with
        # Connection: close) instead of closing it: the client was accepted and is about to
        # talk, and it may not retry on a new connection (uvicorn #2757; issue 4).
        self.fresh = True
        self.error_status = 0  # a request error to answer once earlier responses are out
        self.timer = IDLE
        self.deadline = 0.0
        self.client: tuple[str, int] | None = None
        self.trusted = False
        self.scope_template: dict[str, Any] = {}
        # One response at a time per connection (pipeline order), so one writer is reused.
        self.writer = ResponseWriter(state.server_header, state.header_names)
        self.ws_pending: dict[str, Any] | None = None  # a WebSocket handshake's scope, waiting its turn
        self.ws_session: WebSocketSession | None = None  # the handshake being answered by the app
        self.tls: dict[str, Any] | None = None  # the ASGI tls extension on a TLS connection (tls.py)

    # ------------------------------------------------------------ connection events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: cast, don't check.
        self.transport = transport = cast(asyncio.Transport, transport)
        self.flow = FlowControl(transport)
        state = self.state
        state.connections.add(self)
        state.stats.connections += 1
        self.client = client = _address(transport.get_extra_info("peername"))
        server = _address(transport.get_extra_info("sockname"))
        if server is None:  # a unix socket: ASGI wants (path, None)
            server = (str(transport.get_extra_info("sockname") or ""), None)  # type: ignore[assignment]
        proxies = state.proxies
        self.trusted = proxies is not None and proxies.trusts(client[0] if client else None)
        self.scope_template = {
            "type": "http",
            "asgi": state.asgi,
            "http_version": "1.1",
            "scheme": "http",
            "server": server,
            "client": client,
            "root_path": state.root_path,
            "extensions": {},
            # Per-request keys, set by on_request. Present here so that the copy is already
            # full size: adding them to an 8-key copy would resize it on every request.
            "method": "",
            "path": "",
            "raw_path": b"",
            "query_string": b"",
            "headers": (),
            "state": None,
        }
        # A fresh connection gets header_timeout to start talking, then is closed silently.
        self.timer = IDLE
        self.deadline = state.now + state.header_grace
        if state.limit_concurrency and len(state.connections) > state.limit_concurrency:
            # Over the limit: answer the first request with 503 (reading it first, so the
            # client sees the response rather than a reset) and close.
            self.error_status = 503
            state.over_limit += 1  # logged once per interval by the server's tick
        # Accepted while draining (uvloop accepted it before the listener closed): it is
        # served like any fresh connection, its one response saying Connection: close.

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        state = self.state
        state.connections.discard(self)
        state.stats.connections -= 1
        pending = self.pipeline
        state.stats.in_flight -= len(pending)
        for cycle in pending:
            cycle.disconnect()
        pending.clear()
        if self.reading is not None:
            self.reading.disconnect()
            self.reading = None
        self.active = None
        self.timer = NONE
        if self.ws_session is not None:
            self.ws_session.connection_lost(exc)  # the handshake was pending: the app sees 1006
        self.flow.resume_writing()  # wake any send() waiting for drain: it will see the disconnect
        if state.draining and not state.connections:
            state.all_closed.set()

    def eof_received(self) -> bool | None:
        # The client shut its sending side. From here a half-close and a full close look the
        # same, and an app waiting in receive() must learn that the client is gone, so we close
        # (connection_lost then delivers http.disconnect), as uvicorn and gunicorn do.
        return None

    # ------------------------------------------------------------ reading

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # after an error response (lingering) or Connection: close: discard
        if self.timer != HEADER and not self.pipeline and self.reading is None:
            # The first bytes of a request head: it must be complete within header_timeout.
            self.timer = HEADER
            self.deadline = self.state.now + self.state.header_grace
        self.out = []
        self.out_size = 0
        try:
            self.parser.feed(data)
        except ProtocolError as exc:
            self._request_error(exc.status, exc.reason)
        pipeline = self.pipeline
        if pipeline and self.active is None:
            self._run_pipeline()
        elif self.error_status and not pipeline:
            self._send_request_error()
        if self.ws_pending is not None and not pipeline:
            self._start_websocket()
        # End of the batch: everything the responses of this read wrote leaves in one write.
        self._end_batch()

    def on_request(self, head: RequestHead) -> None:
        """A request head arrived: queue a cycle for it."""
        if not self.accepting or self.error_status:
            # After Connection: close nothing more is answered (RFC 9112 §9.6); stop reading.
            self.flow.pause_reading(PIPELINE)
            return
        state = self.state
        keep_alive = head.keep_alive and not state.draining
        scope = self.scope_template.copy()
        scope["method"] = head.method
        if state.root_path:
            scope["path"] = state.root_path + head.path
            scope["raw_path"] = state.root_path.encode() + head.raw_path
        else:
            scope["path"] = head.path
            scope["raw_path"] = head.raw_path
        scope["query_string"] = head.query_string
        scope["headers"] = head.headers
        # Apps and middleware may write into extensions: one request's must not leak into the
        # next on this connection (the template's dict would be shared by every copy).
        scope["extensions"] = {} if self.tls is None else {"tls": self.tls.copy()}
        if state.pathsend:  # --pathsend: the ASGI Path Send extension (cycle.py; issue 16)
            scope["extensions"][PATHSEND] = {}
        if head.http_version != "1.1":
            scope["http_version"] = head.http_version
        lifespan_state = state.lifespan_state
        # A shallow copy per request (ASGI lifespan "state"); most apps keep none: a new dict is cheaper.
        scope["state"] = lifespan_state.copy() if lifespan_state else {}
        if head.proxied and self.trusted:
            # Most requests carry no proxy header (the parser notes one): only then resolve.
            proxies = state.proxies
            assert proxies is not None
            scope["client"], scope["scheme"] = proxies.resolve(head.headers, scope["client"], scope["scheme"])
        self.fresh = False
        if head.upgrade is not None:
            # A WebSocket handshake: the parser holds what follows it. It is answered by the
            # app's websocket scope once earlier pipelined responses are out.
            self.ws_pending = scope
            self.accepting = False
            self.timer = NONE
            return
        cycle = Cycle(self, scope, keep_alive, head.expect_continue)
        if not keep_alive:
            self.accepting = False
        self.reading = cycle
        pipeline = self.pipeline
        pipeline.append(cycle)
        state.stats.in_flight += 1
        # Until the request is complete the client owes us its body (--body-timeout); a
        # request without one completes in this same feed and clears the timer.
        self.timer = BODY_TIMER
        self.deadline = state.now + state.body_grace
        if len(pipeline) > state.limit_pipeline:
            self.flow.pause_reading(PIPELINE)

    def on_body(self, data: bytes) -> None:
        cycle = self.reading
        if cycle is not None:
            if self.timer == BODY_TIMER:
                self.deadline = self.state.now + self.state.body_grace
            cycle.feed_body(data)

    def on_request_complete(self) -> None:
        cycle = self.reading
        if cycle is not None:
            self.reading = None
            cycle.body_complete = True
            if cycle.waiter is not None:
                cycle.wake()
            if self.timer == BODY_TIMER:
                self.timer = NONE
            if cycle.response_complete and not self.pipeline and self.timer == NONE:
                # The app answered before the body ended; the rest is in: idle from now.
                self.timer = IDLE
                self.deadline = self.state.now + self.state.keep_alive_grace

    # ------------------------------------------------------------ running the pipeline

    def _run_pipeline(self) -> None:
        """Start queued apps in order while the previous response is complete."""
        pipeline = self.pipeline
        while pipeline and self.active is None and not self.closing:
            self.active = cycle = pipeline[0]
            cycle.run()
        if self.flow.read_paused_for & PIPELINE and len(pipeline) <= self.state.limit_pipeline:
            self.flow.resume_reading(PIPELINE)
        if self.error_status and not pipeline:
            self._send_request_error()

    def _run_pipeline_later(self) -> None:
        """The pipeline continued from a loop callback (after a Task completed a response)."""
        if self.closed:
            return
        self.out = []
        self.out_size = 0
        self._run_pipeline()
        self._end_batch()

    def response_complete(self, cycle: Cycle, keep_alive: bool) -> None:
        """Called by the cycle when its last body byte was written."""
        pipeline = self.pipeline
        if not pipeline or pipeline[0] is not cycle:
            return  # the connection was lost meanwhile
        pipeline.popleft()
        self.active = None
        self.state.stats.in_flight -= 1
        # What the app left unread is dropped (issue 8 item 3): free its buffer and, unless a
        # later pipelined request's body holds the pause, resume the reading its body paused
        # (a body sent in one write with the head paused reading before the app even ran).
        if cycle.body:
            cycle.body.clear()
        cycle.body_size = 0
        reading = self.reading
        if reading is cycle or reading is None:
            self.flow.resume_reading(BODY)
        if reading is cycle and not cycle.body_complete and cycle.expect_continue:
            # The client is waiting for 100 Continue and may never send the body: the
            # connection cannot be reused.
            keep_alive = False
        if not keep_alive:
            self._close_after_flush()
            return
        if self.ws_pending is not None and not pipeline:
            self._start_websocket()
            return
        if not pipeline:
            if self.reading is None:
                self._idle_after_response()
            else:
                # The rest of the unread body is still arriving (and dropped): the client
                # still owes it within --body-timeout.
                self.timer = BODY_TIMER
                self.deadline = self.state.now + self.state.body_grace
        if self.out is None:
            if pipeline and EAGER_TASKS:
                # Called from inside the finished app's Task: start the next one from a loop
                # callback, so an eagerly started app never runs nested in another's frame.
                self.state.loop.call_soon(self._run_pipeline_later)
            elif pipeline:
                self._run_pipeline()  # before 3.12 this only schedules the next app's Task
            elif self.error_status:
                self._run_pipeline_later()

    def _idle_after_response(self) -> None:
        """Keep-alive idle from now: the keep-alive timer, or while the worker drains, the
        drain's staged close (a request that comes first is answered with Connection: close)."""
        state = self.state
        if state.draining:
            self.timer = DRAIN_IDLE
            # At least a few drain ticks: a busy client's next request is already on its way.
            self.deadline = max(state.drain_idle_deadline, state.now + DRAIN_REPLY_GRACE)
            return
        self.timer = IDLE
        self.deadline = state.now + state.keep_alive_grace

    # ------------------------------------------------------------ writing

    def write(self, data: bytes) -> None:
        out = self.out
        if out is None:
            self.transport.write(data)
            return
        out.append(data)
        self.out_size += len(data)
        if self.out_size > FLUSH_THRESHOLD:
            self.out = []
            self.out_size = 0
            self.transport.write(b"".join(out))

    def _end_batch(self) -> None:
        """Write what the batch coalesced (one transport.write) and leave batching mode."""
        out = self.out
        self.out = None
        if out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self.closing:
            self._close_now()

    def _close_now(self) -> None:
        """Closing was asked for and the output is flushed: close (or half-close and linger)."""
        if self.closed or self.out is not None:
            return
        if self.timer == LINGER:
            self._linger()
        else:
            self.transport.close()

    def close_unread_body(self) -> None:
        """An answered request's unread body went past DISCARD_LIMIT: close instead of reading it."""
        self.reading = None
        self._close_after_flush()

    def _close_after_flush(self) -> None:
        self.closing = True
        self.accepting = False
        self._close_now()


def _address(value: Any) -> tuple[str, int] | None:
    """An ASGI (host, port) from a socket address; None for unix sockets and unknowns."""
    if isinstance(value, (tuple, list)) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None
