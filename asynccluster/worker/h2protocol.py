"""One HTTP/2 connection (issue 13): transport <-> sans-IO core (http/h2.py) <-> concurrent
ASGI streams (h2stream.py), each in its own real Task.

Reached by ALPN ``h2`` on a TLS listener (worker/tls.py hands the transport over after the
handshake) or, with ``--http 2``, by the client preface on a plaintext one (h2c with prior
knowledge, :class:`PrefaceSniffer`).

Timers use the server's once-a-tick sweep like HTTP/1.1 (:meth:`H2Protocol.check_timeout`):
the client preface must arrive within --header-timeout; a connection without open streams
for --timeout-keep-alive gets GOAWAY and is closed.

Drain (RFC 9113 §6.8, graceful shutdown): in-flight streams finish, and the connection's
GOAWAY (naming the last stream we serve) goes out at the first moment no stream is open, or
at the drain's idle deadline if that moment never comes. Why not the two-step GOAWAY + PING
that §6.8 suggests: clients built on python-hyper's h2 (httpx/httpcore among them) cannot
read any frame after a GOAWAY, so a GOAWAY sent while their streams are in flight fails those
requests; sent when nothing is open it fails none. A stream the client opened meanwhile has
a higher id than the GOAWAY names, so the client knows it was not processed and retries it on
a new connection (to another worker; httpcore does); we refuse it (REFUSED_STREAM). After
the GOAWAY the connection lingers (write side shut where the transport allows, reading and
discarding) until the client closes, for at most the drain linger: closing at once could
turn a late client frame into a TCP reset that destroys the GOAWAY in flight. An idle
connection past --timeout-keep-alive is closed the same way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from asynccluster.http.h2 import (
    PREFACE,
    BadRequest,
    ClientGoaway,
    Data,
    H2ConnectionError,
    H2Core,
    H2Limits,
    PingAcked,
    Request,
    Reset,
    WindowOpened,
)
from asynccluster.http.response import error_response
from asynccluster.worker.connstate import (
    ON_LOST,
)
from asynccluster.worker.flow import FlowControl, WriteFlowProtocol
from asynccluster.worker.h2stream import H2Stream
from asynccluster.worker.protocol import HttpProtocol
from asynccluster.worker.scope import connection_template, peer_address, request_scope
from asynccluster.worker.state import ServerState

logger = logging.getLogger("asynccluster.worker")

LINGER_SECONDS = 0.5  # after the GOAWAY, at most this long (the drain's linger while draining)


def limits_for(state: ServerState) -> H2Limits:
    """HTTP/2 limits from the worker's settings (--limit-request-header-size bounds the header list)."""
    return H2Limits(max_header_list_size=state.limits.header_size)


class H2Protocol(WriteFlowProtocol):
    def __init__(self, state: ServerState, scheme: str, tls: dict[str, Any] | None = None) -> None:
        self.state = state
        self.core = H2Core(limits_for(state), scheme)
        self.scheme = scheme
        self.tls = tls  # the ASGI tls extension of the connection (TLS only)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.flow: FlowControl = None  # type: ignore[assignment]
        self.streams: dict[int, H2Stream] = {}
        self.scope_template: dict[str, Any] = {}
        self.trusted = False
        self.closed = False
        self.received = 0  # bytes received (the preface is due within --header-timeout)
        self.deadline = 0.0
        self.flush_scheduled = False
        self.in_batch = False
        self.draining = False  # the worker drains, or the client sent GOAWAY: no new streams soon
        self.goaway_sent = False
        self.lingering = False  # GOAWAY sent and nothing open: waiting for the client to close
        self.write_closed = False  # write side shut while lingering: nothing more goes out

    # ------------------------------------------------------------ connection events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        self.flow = FlowControl(transport)
        state = self.state
        state.connections.add(self)
        state.stats.connections += 1
        client = peer_address(transport.get_extra_info("peername"))
        server = peer_address(transport.get_extra_info("sockname"))
        proxies = state.proxies
        self.trusted = proxies is not None and proxies.trusts(client[0] if client else None)
        self.scope_template = connection_template(state, "2", self.scheme, server, client)
        self.deadline = state.now + state.header_grace  # the client preface is due
        self.core.start()
        if state.draining:
            self.shutdown()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        state = self.state
        state.connections.discard(self)
        state.stats.connections -= 1
        for stream in self.streams.values():
            state.stats.in_flight -= 1
            stream.disconnect()
        self.streams.clear()
        self.flow.resume_writing()
        if state.draining and not state.connections:
            state.all_closed.set()

    def eof_received(self) -> bool | None:
        return None  # the client is gone: close (streams see http.disconnect)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.received += len(data)
        self.in_batch = True
        try:
            events = self.core.feed(data, self.state.now)
            for event in events:
                self._dispatch(event)
        except H2ConnectionError as exc:
            logger.debug("HTTP/2 connection from %s closed: %s", self.scope_template.get("client"), exc)
            self._close_after_flush()
        finally:
            self.in_batch = False
        self.flush()

    def _dispatch(self, event: object) -> None:
        if isinstance(event, Data):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.feed(event.data, event.flow_length, event.end_stream)
            else:  # its response is complete (or it was refused): drop the bytes, keep the window open
                self.core.consumed(event.stream_id, event.flow_length)
        elif isinstance(event, Request):
            self._start_stream(event)
        elif isinstance(event, Reset):
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                self.state.stats.in_flight -= 1
                stream.disconnect()  # the app's receive() gets http.disconnect
            self._maybe_close()
        elif isinstance(event, WindowOpened):
            if event.stream_id:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.window_opened()
            else:
                for stream in tuple(self.streams.values()):
                    stream.window_opened()
        elif isinstance(event, BadRequest):
            self._answer_error(event.stream_id, event.status)
        elif isinstance(event, PingAcked):
            pass
        elif isinstance(event, ClientGoaway):
            self.draining = True
            self._maybe_close()

    def _start_stream(self, request: Request) -> None:
        state = self.state
        # The connection's own scheme, not the client's :scheme (a plaintext client could claim
        # "https"); trusted proxies may still set it from their headers.
        scope = request_scope(
            self.scope_template,
            state,
            request,
            self.tls,
            self.trusted,
            False,  # no Path Send over HTTP/2 (h2stream.py does not implement it)
        )
        stream = H2Stream(self, state, request.stream_id, scope)
        self.streams[request.stream_id] = stream
        state.stats.in_flight += 1
        self.deadline = 0.0  # busy: no idle timer while a stream is open
        stream.run()

    def _answer_error(self, stream_id: int, status: int) -> None:
        """A bad request head: its status, with the canned body, on that stream only."""
        state = self.state
        state.stats.record_response(status, 0.0)
        body = error_response(status).split(b"\r\n\r\n", 1)[1]
        headers = [(b":status", str(status).encode()), (b"content-length", str(len(body)).encode())]
        self.core.send_headers(stream_id, headers, end_stream=False)
        self.core.send_data(stream_id, body, end_stream=True)

    # ------------------------------------------------------------ used by the streams

    def send_window(self, stream_id: int) -> int:
        return self.core.send_window(stream_id)

    def send_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        self.core.send_headers(stream_id, headers, end_stream)
        self._schedule_flush()

    def send_data(self, stream_id: int, data: bytes, last: bool) -> None:
        self.core.send_data(stream_id, data, last)
        self._schedule_flush()

    def reset_stream(self, stream_id: int, code: int) -> None:
        self.core.reset(stream_id, code)
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.disconnect()
        self.stream_finished(stream_id)

    def consumed(self, stream_id: int, length: int) -> None:
        self.core.consumed(stream_id, length)
        self._schedule_flush()

    def stream_finished(self, stream_id: int) -> None:
        if self.streams.pop(stream_id, None) is not None:
            self.state.stats.in_flight -= 1
        self.core.stream_done(stream_id)
        if not self.streams and not self.draining and not self.goaway_sent:
            self.deadline = self.state.now + self.state.keep_alive_grace
        self._maybe_close()

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.closed or self.write_closed:
            return
        data = self.core.data_to_send()
        if data:
            self.transport.write(data)

    def _schedule_flush(self) -> None:
        """From a stream's Task: write once per loop pass (frames of many streams coalesce)."""
        if not self.in_batch and not self.flush_scheduled:
            self.flush_scheduled = True
            self.state.loop.call_soon(self.flush)

    # ------------------------------------------------------------ timeouts, drain, closing

    def check_timeout(self, now: float) -> None:
        if self.closed:
            return
        if self.lingering:
            if now >= self.deadline:
                self.transport.close()
        elif self.received < len(PREFACE) and self.deadline and now >= self.deadline:
            logger.debug("HTTP/2 client %s sent no preface in time", self.scope_template.get("client"))
            self.transport.close()
        elif not self.streams and self.deadline and now >= self.deadline:
            self._goaway()  # idle past --timeout-keep-alive
        elif self.draining and not self.goaway_sent and now >= self.state.drain_idle_deadline:
            self._goaway()  # never idle during the drain's grace: announce the end anyway

    def shutdown(self) -> None:
        """The worker drains: GOAWAY as soon as no stream is open (see the module docstring)."""
        if self.closed or self.draining:
            return
        self.draining = True
        self._maybe_close()

    def _goaway(self) -> None:
        if not self.goaway_sent:
            self.goaway_sent = True
            self.core.goaway()
            self.flush()
        self._maybe_close()

    def _maybe_close(self) -> None:
        """Nothing open and the end announced (or asked for): GOAWAY, then linger."""
        if self.streams or self.closed or self.lingering:
            return
        if self.draining and not self.goaway_sent:
            self._goaway()
        elif self.goaway_sent:
            self._linger()

    def _linger(self) -> None:
        self.lingering = True
        state = self.state
        self.deadline = state.now + (state.drain_linger if state.draining else LINGER_SECONDS) + state.tick
        self.flush()
        # Nothing follows our GOAWAY: h2-based clients treat any frame after it as an error.
        self.write_closed = True
        transport = self.transport
        if transport.can_write_eof():
            try:
                transport.write_eof()
            except (OSError, RuntimeError):
                transport.close()

    def _close_after_flush(self) -> None:
        if not self.closed:
            self.flush()
            self.transport.close()

    def force_close(self) -> None:
        if not self.closed:
            self.transport.abort()


class H2cSniffingProtocol(HttpProtocol):
    """Plaintext with --http 2: HTTP/1.1, unless the first bytes are the HTTP/2 client preface
    (h2c with prior knowledge, RFC 9113 §3.3): then the connection is handed to
    :class:`H2Protocol`. Until then it is an ordinary HTTP/1.1 connection (timers, drain)."""

    __slots__ = ("sniffed",)

    def __init__(self, state: ServerState) -> None:
        super().__init__(state)
        self.sniffed: bytes | None = b""  # bytes seen so far; None once decided

    def data_received(self, data: bytes) -> None:
        sniffed = self.sniffed
        if sniffed is None:
            super().data_received(data)
            return
        data = sniffed + data
        if len(data) < len(PREFACE) and PREFACE.startswith(data):
            self.sniffed = data  # could still be the preface
            return
        self.sniffed = None
        if data.startswith(PREFACE):
            self._become_h2(data)
        else:
            super().data_received(data)

    def _become_h2(self, data: bytes) -> None:
        state = self.state
        state.connections.discard(self)
        state.stats.connections -= 1
        self.to(ON_LOST)  # as far as HTTP/1.1 is concerned
        protocol = H2Protocol(state, "http")
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        protocol.data_received(data)
