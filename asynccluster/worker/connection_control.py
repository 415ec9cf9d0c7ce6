"""The cold paths of :class:`~asynccluster.worker.protocol.HttpProtocol` (issues 2 and 4).

Split from protocol.py so that module holds only what every request runs (reading, the
pipeline, write coalescing). What is here runs once per connection event, never per request:

- timer kinds and the once-a-tick sweep (:meth:`ConnectionControl.check_timeout`);
- error responses and the lingering close (RFC 9112 §9.6);
- graceful drain (:meth:`ConnectionControl.shutdown`) and its idle grace;
- the WebSocket handoff (RFC 6455 §4.2).

It is a mixin so the protocol calls these as its own methods (no wrapper on any path).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from asynccluster.http.response import error_response
from asynccluster.worker.flow import BODY, PIPELINE, FlowControl
from asynccluster.worker.websocket import WebSocketSession, handshake_key, websocket_scope
from asynccluster.worker.wsframes import valid_key

if TYPE_CHECKING:
    from asynccluster.http.parser import RequestParser
    from asynccluster.worker.cycle import Cycle
    from asynccluster.worker.state import ServerState

logger = logging.getLogger("asynccluster.worker")

# Timer kinds (what ``deadline`` means)
NONE = 0  # a request is being answered: the app takes the time it needs
IDLE = 1  # between requests (keep-alive), or a fresh connection: close silently
HEADER = 2  # part of a request head received: 408 then close
LINGER = 3  # error response sent, write side shut: close for good
DRAIN_IDLE = 4  # draining, keep-alive idle: a request that comes now is answered (Connection: close)
BODY_TIMER = 5  # a request body is arriving: the next piece is due within --body-timeout (408)

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


class ConnectionControl:
    """Errors, timeouts, drain and WebSocket handoff for :class:`HttpProtocol`."""

    # The protocol's slots hold the state; the mixin adds none, so HttpProtocol stays slotted
    # (no per-connection __dict__). Hidden from mypy, which would otherwise reject assigning
    # the attributes declared below from the mixin's methods.
    if not TYPE_CHECKING:
        __slots__ = ()

    if TYPE_CHECKING:  # provided by HttpProtocol
        state: ServerState
        parser: RequestParser
        transport: asyncio.Transport
        flow: FlowControl
        pipeline: deque[Cycle]
        active: Cycle | None
        reading: Cycle | None
        accepting: bool
        closing: bool
        closed: bool
        fresh: bool
        error_status: int
        timer: int
        deadline: float
        client: tuple[str, int] | None
        ws_pending: dict[str, Any] | None
        ws_session: WebSocketSession | None

        def write(self, data: bytes) -> None: ...
        def _close_now(self) -> None: ...
        def _close_after_flush(self) -> None: ...
        def close_unread_body(self) -> None: ...

    # ------------------------------------------------------------ errors

    def abort_response(self, cycle: Cycle) -> None:
        """A response that cannot be completed: send what is buffered, then close."""
        cycle.disconnect()
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
            self.abort_response(cycle)  # its body broke mid-response: nothing sensible to add
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
        self.closing = True
        self.timer = LINGER
        self.deadline = self.state.now + LINGER_SECONDS + self.state.tick
        self._close_now()

    def error_bytes(self, status: int) -> bytes:
        state = self.state
        return error_response(status, server_header=state.server_header, date=state.date)

    def _linger(self) -> None:
        """Half-close after an error response and read until the client closes (or LINGER)."""
        transport = self.transport
        self.flow.resume_reading(PIPELINE | BODY)
        if transport.can_write_eof():
            try:
                transport.write_eof()
                return
            except (OSError, RuntimeError):
                pass
        transport.close()

    # ------------------------------------------------------------ timeouts and drain

    def check_timeout(self, now: float) -> None:
        """Called by the server's sweep once a tick."""
        timer = self.timer
        if timer == NONE or now < self.deadline or self.closed:
            return
        self.timer = NONE
        if timer == HEADER:
            logger.debug("request head from %s not complete in time: 408", self.client)
            self.error_status = 408
            self._send_request_error()
        elif timer == DRAIN_IDLE:
            self._close_idle_for_drain()
        elif timer == BODY_TIMER:
            self._body_timed_out(now)
        else:
            self.transport.close()

    def _body_timed_out(self, now: float) -> None:
        """No body piece within --body-timeout: 408 (or close, if the response has started)."""
        if self.flow.read_paused_for:
            # We stopped reading (back-pressure), not the client: the time does not count.
            self.timer = BODY_TIMER
            self.deadline = now + self.state.body_grace
            return
        logger.debug("request body from %s stalled past --body-timeout: 408", self.client)
        self._request_error(408, "request body not received in time")
        if self.error_status and not self.pipeline:
            self._send_request_error()
        elif self.closing:
            self._close_now()

    def shutdown(self) -> None:
        """Graceful drain: in-flight requests finish with Connection: close; idle connections
        get a short grace (``state.drain_idle_deadline``) in which a request is still answered."""
        if self.closed:
            return
        if self.ws_session is not None or self.ws_pending is not None:
            return  # a WebSocket handshake in progress: once accepted, the session closes with 1001
        if not self.pipeline and not self.fresh and self.timer in (IDLE, NONE, BODY_TIMER):
            # Idle keep-alive (or only the unread rest of an answered body still arriving): the
            # next request is answered with Connection: close if it comes before the deadline.
            drain_deadline = self.state.drain_idle_deadline
            # Never later than the connection's own keep-alive deadline.
            self.deadline = min(self.deadline, drain_deadline) if self.timer == IDLE else drain_deadline
            self.timer = DRAIN_IDLE
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
        self.closing = True
        self.accepting = False
        self.timer = LINGER
        self.deadline = self.state.now + self.state.drain_linger
        self._linger()

    def force_close(self) -> None:
        if not self.closed:
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
        self.closed = True  # as far as HTTP is concerned; the connection lives on as a WebSocket
        self.state.connections.discard(self)
        session.take_over(self.parser.detach())
