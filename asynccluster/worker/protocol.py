"""One client connection: transport <-> sans-IO parser <-> ASGI cycles (issue 2).

Life of a read (``data_received``):

1. the parser is fed the bytes and calls back ``on_request`` / ``on_body`` /
   ``on_request_complete``; each request head becomes a :class:`Cycle` queued in
   ``pipeline`` (responses must go out in request order, RFC 9112 §9.3.2);
2. :meth:`_run_pipeline` runs the queued cycles' apps eagerly, one at a time, in order;
3. everything the responses wrote meanwhile leaves in ONE ``transport.write``.

An app that suspends becomes a Task; the pipeline waits for its response to complete and
then continues (from a loop callback, never nested inside the app's own frame).

Timeouts are not one timer per request: each connection keeps a state and a ``deadline``
(connstate.py says what the deadline means in each state) and the server's once-a-tick sweep
(:meth:`check_timeout`) acts on the ones that ran out: ``IDLE`` (keep-alive idle, closed
silently), ``HEAD`` (a request head is being received: 408, RFC 9110 §15.5.9) and, while the
worker drains, ``DRAIN_IDLE`` (see :meth:`shutdown`).

This module is the per-request path only. The connection's state, output and cold paths
(error responses, timeouts, drain, the WebSocket handoff) are its base class,
:class:`~asynccluster.worker.connection.Http1Connection`.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from asynccluster.http.errors import ProtocolError
from asynccluster.http.parser import RequestHead
from asynccluster.worker.compat import EAGER_TASKS
from asynccluster.worker.connection import Http1Connection
from asynccluster.worker.connstate import (
    BODY,
    CLOSED,
    CLOSING,
    DRAIN_IDLE,
    FRESH,
    IDLE,
    LINGER,
    ON_BODY_DONE,
    ON_BODY_OWED,
    ON_HEAD_STARTS,
    ON_KEEP_ALIVE,
    ON_LOST,
    ON_REQUEST,
    ON_UPGRADE,
    ON_WHOLE_REQUEST,
)
from asynccluster.worker.cycle import Cycle
from asynccluster.worker.flow import BODY as BODY_PAUSE
from asynccluster.worker.flow import PIPELINE, FlowControl
from asynccluster.worker.scope import connection_template, peer_address, request_scope

# States in which the first bytes of a request head may arrive (with nothing queued or read).
_HEAD_MAY_START = frozenset((FRESH, IDLE, DRAIN_IDLE))
# States in which a batch's end closes (or half-closes) the connection once the output is out.
_CLOSE_NOW = frozenset((CLOSING, LINGER))


class HttpProtocol(Http1Connection):
    """asyncio's callbacks and the parser's, and the pipeline of cycles (the per-request path)."""

    __slots__ = ()

    # ------------------------------------------------------------ connection events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: cast, don't check.
        self.transport = transport = cast(asyncio.Transport, transport)
        self.flow = FlowControl(transport)
        state = self.state
        state.connections.add(self)
        state.stats.connections += 1
        self.client = client = peer_address(transport.get_extra_info("peername"))
        server: Any = peer_address(transport.get_extra_info("sockname"))
        if server is None:  # a unix socket: ASGI wants (path, None)
            server = (str(transport.get_extra_info("sockname") or ""), None)
        proxies = state.proxies
        self.trusted = proxies is not None and proxies.trusts(client[0] if client else None)
        self.scope_template = connection_template(state, "1.1", "http", server, client)
        # A fresh connection gets header_timeout to start talking, then is closed silently.
        self.deadline = state.now + state.header_grace
        if state.limit_concurrency and len(state.connections) > state.limit_concurrency:
            # Over the limit: answer the first request with 503 (reading it first, so the
            # client sees the response rather than a reset) and close.
            self.error_status = 503
            state.over_limit += 1  # logged once per interval by the server's tick
        # Accepted while draining (uvloop accepted it before the listener closed): it is
        # served like any fresh connection, its one response saying Connection: close.

    def connection_lost(self, exc: Exception | None) -> None:
        self.to(ON_LOST)
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
        if self.ws_session is not None:
            self.ws_session.connection_lost(exc)  # the handshake was pending: the app sees 1006
        self.flow.resume_writing()  # wake any send() waiting for drain: it will see the disconnect
        if state.draining and not state.connections:
            state.all_closed.set()

    def eof_received(self) -> bool | None:
        # The client shut its sending side; a half-close and a full close look the same here.
        # With one request (or none) in hand we close: an app waiting in receive() (the
        # is_disconnected() loop of an event stream) must learn that the client is gone, and
        # connection_lost delivers http.disconnect. With pipelined requests queued behind it,
        # the client sent them and then half-closed: they are answered, in order, and the
        # connection closes after the last (RFC 9112 §9.6 lets a server close after any
        # response). We ran the queued apps but answered only the first (found by the attack
        # on issue 10); uvicorn answers as many as are written before its close flushes.
        # Over TLS, asyncio closes on EOF whatever we return.
        pipeline = self.pipeline
        if len(pipeline) > 1 and self.reading is None and self.conn_state < CLOSING and self.tls is None:
            pipeline[-1].keep_alive = False  # its response says Connection: close, then we close
            return True
        return None

    # ------------------------------------------------------------ reading

    def data_received(self, data: bytes) -> None:
        conn_state = self.conn_state
        if conn_state >= CLOSING:
            return  # after an error response (lingering) or Connection: close: discard
        head_starts = conn_state in _HEAD_MAY_START and not self.pipeline and self.reading is None
        if head_starts:
            # The first bytes of a request head: it must be complete within header_timeout.
            self.deadline = self.state.now + self.state.header_grace
        self.out = []
        self.out_size = 0
        try:
            self.parser.feed(data)
        except ProtocolError as exc:
            self._request_error(exc.status, exc.reason)
        if head_starts and self.conn_state is conn_state:
            # The head is not complete after this read: HEAD until it is (the sweep's 408).
            # A head that completed in the read went from here to BODY/BUSY in one entry:
            # nothing between the two could see HEAD (connstate.TRANSITIONS).
            self.to(ON_HEAD_STARTS)
        pipeline = self.pipeline
        if pipeline and self.active is None:
            self._run_pipeline()
        elif self.error_status and not pipeline:
            self._send_request_error()
        if self.ws_pending is not None and not pipeline:
            self._start_websocket()
        # End of the batch: everything the responses of this read wrote leaves in one write
        # (_end_batch's body, inline: once per read).
        out = self.out
        self.out = None
        if out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self.conn_state in _CLOSE_NOW:
            self._close_now()

    def on_request(self, head: RequestHead) -> None:
        """A request head arrived: queue a cycle for it."""
        if not self.accepting or self.error_status:
            # After Connection: close nothing more is answered (RFC 9112 §9.6); stop reading.
            self.flow.pause_reading(PIPELINE)
            return
        state = self.state
        keep_alive = head.keep_alive and not state.draining
        # Most requests carry no proxy header (the parser notes one): only then resolve.
        # --pathsend offers the ASGI Path Send extension (cycle.py; issue 16).
        scope = request_scope(self.scope_template, state, head, self.tls, head.proxied and self.trusted, state.pathsend)
        if head.http_version != "1.1":
            scope["http_version"] = head.http_version
        if head.upgrade is not None:
            # A WebSocket handshake: the parser holds what follows it. It is answered by the
            # app's websocket scope once earlier pipelined responses are out.
            self.ws_pending = scope
            self.accepting = False
            self.to(ON_UPGRADE)
            return
        cycle = Cycle(self, state, scope, keep_alive, head.expect_continue)
        if not keep_alive:
            self.accepting = False
        self.reading = cycle
        pipeline = self.pipeline
        pipeline.append(cycle)
        state.stats.in_flight += 1
        if head.content_length or head.chunked:
            # Until the request is complete the client owes us its body (--body-timeout).
            self.to(ON_REQUEST)
            self.deadline = state.now + state.body_grace
        else:
            self.to(ON_WHOLE_REQUEST)  # no body: nothing owed, the app's time from here
        if len(pipeline) > state.limit_pipeline:
            self.flow.pause_reading(PIPELINE)

    def on_body(self, data: bytes) -> None:
        cycle = self.reading
        if cycle is not None:
            if self.conn_state is BODY:
                self.deadline = self.state.now + self.state.body_grace
            cycle.feed_body(data)

    def on_request_complete(self) -> None:
        cycle = self.reading
        if cycle is not None:
            self.reading = None
            cycle.body_complete = True
            if cycle.waiter is not None:
                cycle.wake()
            if self.conn_state is BODY:
                self.to(ON_BODY_DONE)
                if cycle.response_complete and not self.pipeline:
                    # The app answered before the body ended; the rest is in: idle from now.
                    self._idle_after_response()

    # ------------------------------------------------------------ running the pipeline

    def _run_pipeline(self) -> None:
        """Start queued apps in order while the previous response is complete."""
        pipeline = self.pipeline
        while pipeline and self.active is None and self.conn_state < CLOSING:
            self.active = cycle = pipeline[0]
            cycle.run()
        if self.flow.read_paused_for & PIPELINE and len(pipeline) <= self.state.limit_pipeline:
            self.flow.resume_reading(PIPELINE)
        if self.error_status and not pipeline:
            self._send_request_error()

    def _run_pipeline_later(self) -> None:
        """The pipeline continued from a loop callback (after a Task completed a response)."""
        if self.conn_state is CLOSED:
            return
        self.out = []
        self.out_size = 0
        self._run_pipeline()
        self._end_batch()

    def response_complete(self, cycle: object, keep_alive: bool) -> None:
        """Called by the cycle when its last body byte was written (ResponseSink)."""
        pipeline = self.pipeline
        if not pipeline or pipeline[0] is not cycle:
            return  # the connection was lost meanwhile
        done = pipeline.popleft()
        self.active = None
        state = self.state
        state.stats.in_flight -= 1
        # What the app left unread is dropped (issue 8 item 3): free its buffer and, unless a
        # later pipelined request's body holds the pause, resume the reading its body paused
        # (a body sent in one write with the head paused reading before the app even ran).
        if done.body:
            done.body.clear()
        done.body_size = 0
        reading = self.reading
        if (reading is done or reading is None) and self.flow.read_paused_for & BODY_PAUSE:
            self.flow.resume_reading(BODY_PAUSE)
        if reading is done and not done.body_complete and done.expect_continue:
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
            if reading is not None:
                # The rest of the unread body is still arriving (and dropped): the client
                # still owes it within --body-timeout.
                self.to(ON_BODY_OWED)
                self.deadline = state.now + state.body_grace
            elif state.draining:
                self._idle_after_response()
            else:  # _idle_after_response's common case, inline (once per response)
                self.to(ON_KEEP_ALIVE)
                self.deadline = state.now + state.keep_alive_grace
        if self.out is None:
            if pipeline and EAGER_TASKS:
                # Called from inside the finished app's Task: start the next one from a loop
                # callback, so an eagerly started app never runs nested in another's frame.
                state.loop.call_soon(self._run_pipeline_later)
            elif pipeline:
                self._run_pipeline()  # before 3.12 this only schedules the next app's Task
            elif self.error_status:
                self._run_pipeline_later()
