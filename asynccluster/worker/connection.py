"""One HTTP/1.1 connection's state and its cold paths (issues 2, 4 and 10).

:class:`Http1Connection` owns everything a connection is: its state
(:class:`~asynccluster.worker.connstate.ConnState`, changed only by :meth:`~Http1Connection.to`
through the table in connstate.py) and deadline, its output (write coalescing, closing,
lingering), and what runs once per connection event rather than per request:

- the once-a-tick timeout sweep (:meth:`Http1Connection.check_timeout`);
- error responses and the lingering close (RFC 9112 §9.6);
- graceful drain (:meth:`Http1Connection.shutdown`) and its idle grace;
- the WebSocket handoff (RFC 6455 §4.2).

The per-request path (parser callbacks, the pipeline of cycles) is its subclass
:class:`~asynccluster.worker.protocol.HttpProtocol`, which calls these as its own methods.
Cycles see the connection only as a :class:`~asynccluster.worker.interfaces.ResponseSink`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from asynccluster.http.parser import RequestParser
from asynccluster.http.response import ResponseWriter, error_response
from asynccluster.worker.connstate import (
    BODY,
    BUSY,
    CLOSED,
    CLOSING,
    DRAIN_IDLE,
    FRESH,
    HEAD,
    IDLE,
    LINGER,
    ON_BODY_EXPIRED,
    ON_CLOSE,
    ON_DRAIN,
    ON_ERROR_SENT,
    ON_KEEP_ALIVE,
    ON_KEEP_ALIVE_DRAINING,
    ON_LOST,
    TIMED,
    TRANSITIONS,
    Event,
    IllegalTransition,
)
from asynccluster.worker.cycle import Cycle
from asynccluster.worker.flow import BODY as BODY_PAUSE
from asynccluster.worker.flow import FLUSH_THRESHOLD, PIPELINE, FlowControl, WriteFlowProtocol
from asynccluster.worker.state import ServerState
from asynccluster.worker.websocket import WebSocketSession, handshake_key, websocket_scope
from asynccluster.worker.wsframes import valid_key

logger = logging.getLogger("asynccluster.worker")


# After an error response we half-close and read (discarding) until the client closes, for at
# most this long, so it reads our response instead of a reset (RFC 9112 §9.6 "lingering close").
LINGER_SECONDS = 2.0

# Draining (issue 4). A keep-alive connection idle at the moment a worker starts to drain is
# not closed at once: a busy client has usually already sent its next request, and closing
# under it leaves it a connection closed (or, with the request unread in our buffer, reset)
# before any response byte, which it may only retry because the request is idempotent (RFC
# 9112 §9.3.1). Instead the connection stays open for DRAIN_IDLE_SECONDS (never past its own
# keep-alive deadline, nor past half the drain timeout: server.drain_idle_grace), and a request
# arriving meanwhile is answered with "Connection: close" and the connection closed after it
# (RFC 9112 §9.6). Measured with benchmarks/reload_under_load.py (2 workers, 5 reloads):
# closing at once cost 20 client retries (2 per retired worker); any grace of at least one
# drain tick (50 ms) gave 0, as a busy client's next request follows within milliseconds. 1 s
# also covers a client pausing briefly between requests and bounds how much longer a graceful
# stop takes with idle keep-alive clients: at most the grace plus the linger below (a 2-worker
# cluster with 8 idle clients that never read our FIN stopped in 1.7 s, 0.1 s without them).
#
# A connection still idle at the end of the grace is closed in stages (RFC 9112 §9.6): write
# side first (the client reads a clean EOF), then we read and discard until the client closes,
# for at most DRAIN_LINGER_SECONDS (about a round trip is enough to take in a request that
# raced our FIN, which a full close would answer with a reset; a quarter of the drain timeout
# at most), then close. Grace and linger together stay within 3/4 of the drain timeout, so an
# idle client is never counted as force-closed.
DRAIN_IDLE_SECONDS = 1.0
DRAIN_LINGER_SECONDS = 0.5


# A response completed while the worker drains leaves its connection idle this long at least
# before the staged close (see Http1Connection.shutdown): about ten drain ticks.
DRAIN_REPLY_GRACE = 0.5


class Http1Connection(WriteFlowProtocol):
    """The state of one HTTP/1.1 connection, its output, errors, timeouts, drain and handoff."""

    __slots__ = (
        "accepting",
        "active",
        "client",
        "conn_state",
        "deadline",
        "error_status",
        "flow",
        "out",
        "out_size",
        "parser",
        "pipeline",
        "reading",
        "scope_template",
        "state",
        "tls",
        "transport",
        "trusted",
        "writer",
        "ws_pending",
        "ws_session",
    )

    def __init__(self, state: ServerState) -> None:
        self.state = state  # the worker's shared state (settings, counters, clock)
        self.conn_state = FRESH
        # What conn_state's deadline means is the state's (connstate.py); loop time, s.
        self.deadline = 0.0
        # Request level, beside the state (as h11 keeps keep_alive): False once a request said
        # Connection: close, or drain or an error ended keep-alive: later requests are ignored.
        self.accepting = True
        self.error_status = 0  # a request error to answer once earlier responses are out
        self.parser = RequestParser(self, state.limits, state.request_caches)  # type: ignore[arg-type]
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.flow: FlowControl = None  # type: ignore[assignment]
        self.pipeline: deque[Cycle] = deque()
        self.active: Cycle | None = None  # pipeline[0] once its app has been started
        self.reading: Cycle | None = None  # the cycle whose body the parser is delivering
        self.out: list[bytes] | None = None  # non-None while coalescing writes
        self.out_size = 0
        self.client: tuple[str, int] | None = None
        self.trusted = False
        self.scope_template: dict[str, Any] = {}
        # One response at a time per connection (pipeline order), so one writer is reused.
        self.writer = ResponseWriter(state.server_header, state.header_names)
        self.ws_pending: dict[str, Any] | None = None  # a WebSocket handshake's scope, waiting its turn
        self.ws_session: WebSocketSession | None = None  # the handshake being answered by the app
        self.tls: dict[str, Any] | None = None  # the ASGI tls extension on a TLS connection (tls.py)

    # ------------------------------------------------------------ the state

    def to(self, event: Event) -> None:
        """Apply ``event`` (connstate.TRANSITIONS); :class:`IllegalTransition` if not allowed."""
        # The state's row of the table, then the event: two dict lookups by hash, cheaper
        # than computing a combined int key from two IntEnum members (PyNumber calls).
        try:
            self.conn_state = TRANSITIONS[self.conn_state][event]
        except KeyError:
            raise IllegalTransition(self.conn_state, event) from None

    @property
    def closed(self) -> bool:
        """Gone, or handed over to a WebSocket session: nothing more happens on it as HTTP."""
        return self.conn_state is CLOSED

    # ------------------------------------------------------------ writing (ResponseSink)

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

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def error_bytes(self, status: int) -> bytes:
        state = self.state
        return error_response(status, server_header=state.server_header, date=state.date)

    def _end_batch(self) -> None:
        """Write what the batch coalesced (one transport.write) and leave batching mode."""
        out = self.out
        self.out = None
        if out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self.conn_state is CLOSING or self.conn_state is LINGER:
            self._close_now()

    def _close_now(self) -> None:
        """Closing was asked for and the output is flushed: close (or half-close and linger)."""
        if self.conn_state is CLOSED or self.out is not None:
            return
        if self.conn_state is LINGER:
            self._linger()
        else:
            self.transport.close()

    def close_unread_body(self) -> None:
        """An answered request's unread body went past DISCARD_LIMIT: close instead of reading it."""
        self.reading = None
        self._close_after_flush()

    def _close_after_flush(self) -> None:
        self.accepting = False
        if self.conn_state < CLOSING:  # (already closing, lingering or closed: nothing to add)
            self.to(ON_CLOSE)
        self._close_now()

    # ------------------------------------------------------------ errors

    def abort_response(self) -> None:
        """A response that cannot be completed: send what is buffered, then close."""
        self._close_after_flush()

    def _request_error(self, status: int, reason: str) -> None:
        """The parser rejected the input: answer ``status`` after earlier responses, then close."""
        logger.debug("bad request from %s: %d %s", self.client, status, reason)
        cycle = self.reading
        if not self.accepting and cycle is None and not self.error_status:
            # Bytes after a request that said Connection: close (llhttp rejects them): they
            # are not a request we will answer, so nothing is written after that response
            # (RFC 9112 §9.6; issue 8 item 4).
            self.flow.pause_reading(PIPELINE)
            return
        self.accepting = False
        self.flow.pause_reading(PIPELINE)
        self.reading = None
        if cycle is None or cycle.response_complete:
            # A bad head (answered after earlier responses) or a bad body after the response.
            self.error_status = status if cycle is None else 0
            if cycle is not None:
                self._close_after_flush()
            return
        if cycle.response_started:
            cycle.disconnect()  # its body broke mid-response: nothing sensible to add
            self.abort_response()
            return
        # Its body is bad and nothing was sent: the error response replaces the app's.
        self.error_status = status
        cycle.disconnect()
        if cycle in self.pipeline:
            self.pipeline.remove(cycle)
            self.state.stats.in_flight -= 1
        if self.active is cycle:
            self.active = None

    def _send_request_error(self) -> None:
        status = self.error_status
        self.error_status = 0
        self.state.stats.record_response(status, 0.0)
        self.write(self.error_bytes(status))
        self.accepting = False
        self.to(ON_ERROR_SENT)
        self.deadline = self.state.now + LINGER_SECONDS + self.state.tick
        self._close_now()

    def _linger(self) -> None:
        """Half-close after an error response and read until the client closes (or LINGER)."""
        transport = self.transport
        self.flow.resume_reading(PIPELINE | BODY_PAUSE)
        if transport.can_write_eof():
            try:
                transport.write_eof()
                return
            except (OSError, RuntimeError):
                pass
        transport.close()

    # ------------------------------------------------------------ timeouts and drain

    def check_timeout(self, now: float) -> None:
        """Called by the server's sweep once a tick: act on a deadline that passed."""
        conn_state = self.conn_state
        if conn_state not in TIMED or now < self.deadline:
            return
        if conn_state is HEAD:
            logger.debug("request head from %s not complete in time: 408", self.client)
            self.error_status = 408
            self._send_request_error()
        elif conn_state is DRAIN_IDLE:
            self._close_idle_for_drain()
        elif conn_state is BODY:
            self._body_timed_out(now)
        else:  # FRESH or IDLE (silently), or LINGER (for good)
            self.accepting = False
            self.to(ON_CLOSE)
            self.transport.close()

    def _body_timed_out(self, now: float) -> None:
        """No body piece within --body-timeout: 408 (or close, if the response has started)."""
        if self.flow.read_paused_for:
            # We stopped reading (back-pressure), not the client: the time does not count.
            self.deadline = now + self.state.body_grace
            return
        logger.debug("request body from %s stalled past --body-timeout: 408", self.client)
        self.to(ON_BODY_EXPIRED)
        self._request_error(408, "request body not received in time")
        if self.error_status and not self.pipeline:
            self._send_request_error()
        elif self.conn_state is CLOSING:
            self._close_now()

    def shutdown(self) -> None:
        """Graceful drain: in-flight requests finish with Connection: close; idle connections
        get a short grace (``state.drain_idle_deadline``) in which a request is still answered."""
        conn_state = self.conn_state
        if conn_state is CLOSED:
            return
        if self.ws_session is not None or self.ws_pending is not None:
            return  # a WebSocket handshake in progress: once accepted, the session closes with 1001
        if not self.pipeline and (conn_state is IDLE or conn_state is BUSY or conn_state is BODY):
            # Idle keep-alive (or only the unread rest of an answered body still arriving): the
            # next request is answered with Connection: close if it comes before the deadline.
            # (A FRESH connection is not idle: its first request is on its way, see on_request.)
            drain_deadline = self.state.drain_idle_deadline
            # Never later than the connection's own keep-alive deadline.
            self.deadline = min(self.deadline, drain_deadline) if conn_state is IDLE else drain_deadline
            self.to(ON_DRAIN)
            return
        if self.pipeline:
            last = self.pipeline[-1]
            if last.response_started:
                # Its head is built (maybe sent) without Connection: close: closing after it
                # would meet the client's next request (read errors in wrk during reloads of a
                # FastAPI app). It ends as a keep-alive response; the connection then waits
                # as a draining idle one (protocol.response_complete), whose next request is
                # answered with Connection: close.
                return
            # Answer what was received; the last response says Connection: close. (With an
            # empty pipeline a head is being received: on_request gives it keep_alive=False.)
            self.accepting = False
            last.keep_alive = False

    def _close_idle_for_drain(self) -> None:
        """Still idle at the end of the drain grace: half-close, read until the client closes
        (bounded), then close: RFC 9112 §9.6's staged close, so a request that raced our FIN is
        read and dropped instead of being answered with a reset."""
        self.accepting = False
        self.to(ON_ERROR_SENT)
        self.deadline = self.state.now + self.state.drain_linger
        self._linger()

    def _idle_after_response(self) -> None:
        """Keep-alive idle from now: the keep-alive timer, or while the worker drains, the
        drain's staged close (a request that comes first is answered with Connection: close)."""
        state = self.state
        if state.draining:
            self.to(ON_KEEP_ALIVE_DRAINING)
            # At least a few drain ticks: a busy client's next request is already on its way.
            self.deadline = max(state.drain_idle_deadline, state.now + DRAIN_REPLY_GRACE)
            return
        self.to(ON_KEEP_ALIVE)
        self.deadline = state.now + state.keep_alive_grace

    def force_close(self) -> None:
        if self.conn_state is not CLOSED:
            self.transport.abort()

    # ------------------------------------------------------------ WebSocket handoff

    def _start_websocket(self) -> None:
        """Hand the pending handshake to a WebSocket session (its app runs as a Task)."""
        scope = self.ws_pending
        assert scope is not None
        self.ws_pending = None
        key = handshake_key(scope["headers"])
        if not valid_key(key):
            self.error_status = 400  # RFC 6455 §4.2.1: a handshake without a valid key
            self._send_request_error()
            return
        assert key is not None
        ws_scope = websocket_scope(scope)
        if "tls" in scope["extensions"]:  # over TLS (worker/tls.py): the extension goes along
            ws_scope["extensions"]["tls"] = scope["extensions"]["tls"]
        session = WebSocketSession(self.state, self.transport, ws_scope, key)
        session.on_accept = self._hand_over
        self.ws_session = session
        session.start()

    def _hand_over(self, session: WebSocketSession) -> None:
        """The app accepted: the session becomes the transport's protocol."""
        self.ws_session = None
        self.to(ON_LOST)  # as far as HTTP is concerned; the connection lives on as a WebSocket
        self.state.connections.discard(self)
        session.take_over(self.parser.detach())
