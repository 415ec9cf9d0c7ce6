"""HTTP/2 server connection, sans-IO (issue 13): bytes in, events out, bytes to send.

A thin layer over python-hyper's ``h2`` (RFC 9113 framing, HPACK, stream states, flow-control
accounting) that adds what a server exposed to the internet needs and ``h2`` leaves to it:

- request heads turned into our shape (:class:`Request`: method, split and decoded target,
  ``host`` from ``:authority``), checked with the HTTP/1.1 parser's rules (http/validate.py);
- receive flow control with back-pressure (:meth:`H2Core.consumed`): a stream's window is
  re-opened only as the app reads its body, the connection's as data arrives (one slow
  stream cannot stall the others), WINDOW_UPDATEs batched at half a window;
- graceful shutdown (RFC 9113 §6.8): :meth:`H2Core.goaway` writes GOAWAY itself, outside
  ``h2``'s state machine (which would refuse every frame after it), and streams the client
  opens past the announced last stream id are refused (REFUSED_STREAM: safe to retry);
- the 2023-2024 denial-of-service classes: "rapid reset" (CVE-2023-44487: streams opened and
  reset by the client are counted; past :attr:`H2Limits.max_resets` per
  :data:`RESET_WINDOW` seconds the connection gets GOAWAY ENHANCE_YOUR_CALM), CONTINUATION
  floods (``h2`` caps a header block at 64 CONTINUATION frames; the decoded list is bounded
  by SETTINGS_MAX_HEADER_LIST_SIZE), oversized frames (FRAME_SIZE_ERROR), bad prefaces.

Errors: :class:`H2ConnectionError` means the connection is over; GOAWAY with its code is
already in :meth:`H2Core.data_to_send`. Nothing here knows asyncio (dependencies point down).
"""

from __future__ import annotations

from dataclasses import dataclass

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from asynccluster.http.errors import ProtocolError
from asynccluster.http.validate import method_name, parse_target

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_STREAM_ID = 2**31 - 1
RESET_WINDOW = 10.0  # seconds over which client resets are counted (rapid reset)
NO_ERROR = h2.errors.ErrorCodes.NO_ERROR
REFUSED_STREAM = h2.errors.ErrorCodes.REFUSED_STREAM
CANCEL = h2.errors.ErrorCodes.CANCEL
INTERNAL_ERROR = h2.errors.ErrorCodes.INTERNAL_ERROR
ENHANCE_YOUR_CALM = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
# RFC 9113 §8.2.2: connection-specific fields must not appear in HTTP/2; an app's are dropped.
CONNECTION_FIELDS = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})


@dataclass(frozen=True)
class H2Limits:
    """What one connection may use (announced in our SETTINGS where the protocol has one)."""

    max_concurrent_streams: int = 100
    max_header_list_size: int = 65536  # bytes, decoded (SETTINGS_MAX_HEADER_LIST_SIZE)
    stream_window: int = 65535  # bytes of request body buffered per stream before the client waits
    connection_window: int = 1 << 20  # bytes in flight over all streams of the connection
    max_frame_size: int = 16384  # the largest frame the client may send (RFC 9113 minimum)
    max_resets: int = 200  # client resets per RESET_WINDOW before ENHANCE_YOUR_CALM


class StreamClosed(Exception):
    """The stream can no longer be written to (the client reset it, or the connection ended)."""


class H2ConnectionError(Exception):
    """The connection is over (GOAWAY queued); ``str()`` says why, ``code`` is the GOAWAY code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


# ---------------------------------------------------------------- events out


@dataclass
class Request:
    stream_id: int
    method: str
    scheme: str
    raw_path: bytes
    path: str
    query_string: bytes
    headers: list[tuple[bytes, bytes]]  # lowercase names, pseudo-headers removed, host first
    end_stream: bool  # no body follows (a Data with end_stream is still reported)


@dataclass
class BadRequest:
    """A request head we answer with ``status`` (a stream error, not a connection error)."""

    stream_id: int
    status: int
    reason: str


@dataclass
class Data:
    """Request body bytes; the end of the body is one Data with ``end_stream`` and no bytes."""

    stream_id: int
    data: bytes
    flow_length: int  # what it cost the window (padding included): pass to consumed()
    end_stream: bool


@dataclass
class Reset:
    """The client cancelled the stream (RST_STREAM) or it can no longer complete."""

    stream_id: int
    code: int


@dataclass
class WindowOpened:
    """Sending may continue: ``stream_id`` 0 means the connection window (every stream)."""

    stream_id: int


@dataclass
class PingAcked:
    data: bytes


@dataclass
class ClientGoaway:
    """The client will open no more streams; open ones may finish."""


Event = Request | BadRequest | Data | Reset | WindowOpened | PingAcked | ClientGoaway


# ---------------------------------------------------------------- the connection


class H2Core:
    """One server-side HTTP/2 connection."""

    def __init__(self, limits: H2Limits, scheme: str) -> None:
        self.limits = limits
        self.scheme = scheme  # "https" over TLS, "http" for h2c
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.last_stream_id = 0  # highest client stream id seen (for GOAWAY)
        self.goaway_last: int | None = None  # set once a GOAWAY was sent: streams above are refused
        self.resets: list[float] = []  # times of client resets within RESET_WINDOW
        self._stream_unacked: dict[int, int] = {}
        self._conn_unacked = 0
        self._pending = b""  # frames we wrote ourselves (GOAWAY), ahead of h2's next output
        self.closed = False

    def start(self) -> None:
        """Our SETTINGS (the server preface) and the larger connection window."""
        limits = self.limits
        conn = self.conn
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: limits.stream_window,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: limits.max_frame_size,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        conn.initiate_connection()
        extra = limits.connection_window - 65535
        if extra > 0:
            conn.increment_flow_control_window(extra)

    def data_to_send(self) -> bytes:
        pending = self._pending
        if pending:
            self._pending = b""
            return pending + self.conn.data_to_send()
        return self.conn.data_to_send()

    # ------------------------------------------------------------ receiving

    def feed(self, data: bytes, now: float) -> list[Event]:
        """Our events for ``data``; raises H2ConnectionError (GOAWAY queued) when it is over."""
        if self.closed:
            return []
        try:
            h2_events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            raise self._fail(_error_code(exc), f"HTTP/2 protocol error: {exc}") from None
        except Exception as exc:  # hostile input that h2/hpack/hyperframe did not map to an error
            raise self._fail(int(h2.errors.ErrorCodes.PROTOCOL_ERROR), f"malformed HTTP/2 input: {exc!r}") from None
        out: list[Event] = []
        for event in h2_events:
            self._translate(event, now, out)
        return out

    def _translate(self, event: h2.events.Event, now: float, out: list[Event]) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._request(event, out)
        elif isinstance(event, h2.events.DataReceived):
            stream_id = event.stream_id
            self._conn_unacked += event.flow_controlled_length
            if self._conn_unacked >= self.limits.connection_window // 2:
                self.conn.increment_flow_control_window(self._conn_unacked)
                self._conn_unacked = 0
            if self._refused(stream_id):
                return
            out.append(Data(stream_id, event.data, event.flow_controlled_length, False))
        elif isinstance(event, h2.events.StreamEnded):
            # (h2 also flags the DataReceived/RequestReceived before it: the end is reported once, here)
            if not self._refused(event.stream_id):
                out.append(Data(event.stream_id, b"", 0, True))
        elif isinstance(event, h2.events.StreamReset):
            self._stream_unacked.pop(event.stream_id, None)
            self._count_reset(now)
            out.append(Reset(event.stream_id, int(event.error_code or 0)))
        elif isinstance(event, h2.events.WindowUpdated):
            out.append(WindowOpened(event.stream_id))
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                out.append(WindowOpened(0))  # every stream's window may have grown
        elif isinstance(event, h2.events.PingAckReceived):
            out.append(PingAcked(event.ping_data))
        elif isinstance(event, h2.events.ConnectionTerminated):
            if event.error_code:
                raise self._fail(int(event.error_code), f"the client ended the connection ({event.error_code!r})")
            # A graceful GOAWAY from the client: streams it opened may still be answered
            # (RFC 9113 §6.8), but h2 moves to CLOSED and would refuse to send their responses.
            self.conn.state_machine.state = h2.connection.ConnectionState.SERVER_OPEN
            out.append(ClientGoaway())
        # SettingsAcknowledged, PingReceived (h2 answers), PriorityUpdated: nothing to do.

    def _request(self, event: h2.events.RequestReceived, out: list[Event]) -> None:
        stream_id = event.stream_id
        self.last_stream_id = max(self.last_stream_id, stream_id)
        if self._refused(stream_id):
            return
        ended = event.stream_ended is not None
        pseudo: dict[bytes, bytes] = {}
        headers: list[tuple[bytes, bytes]] = []
        for name, value in event.headers or ():
            if name[:1] == b":":
                pseudo[name] = value
            else:
                headers.append((name, value))
        try:
            method = method_name(pseudo.get(b":method", b""))
            raw_path, path, query = parse_target(pseudo.get(b":path", b""), method)
        except ProtocolError as exc:
            out.append(BadRequest(stream_id, exc.status, exc.reason))
            return
        authority = pseudo.get(b":authority")
        if authority is not None and not any(name == b"host" for name, _ in headers):
            headers.insert(0, (b"host", authority))  # RFC 9113 §8.3.1: apps look for Host
        scheme = pseudo.get(b":scheme", self.scheme.encode()).decode("ascii", "replace")
        out.append(Request(stream_id, method, scheme, raw_path, path, query, headers, ended))

    def _refused(self, stream_id: int) -> bool:
        """A stream opened after our GOAWAY: refused (the client may retry it elsewhere)."""
        if self.goaway_last is None or stream_id <= self.goaway_last:
            return False
        self.reset(stream_id, REFUSED_STREAM)
        return True

    def _count_reset(self, now: float) -> None:
        resets = self.resets
        resets.append(now)
        if len(resets) > self.limits.max_resets:
            while resets and resets[0] < now - RESET_WINDOW:
                resets.pop(0)
            if len(resets) > self.limits.max_resets:
                raise self._fail(ENHANCE_YOUR_CALM, "too many streams reset by the client (rapid reset)")

    def consumed(self, stream_id: int, length: int) -> None:
        """The app read ``length`` flow-controlled bytes of the stream: re-open its window."""
        if length <= 0 or self.closed:
            return
        unacked = self._stream_unacked.get(stream_id, 0) + length
        if unacked < self.limits.stream_window // 2:
            self._stream_unacked[stream_id] = unacked
            return
        self._stream_unacked[stream_id] = 0
        try:
            self.conn.increment_flow_control_window(unacked, stream_id=stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass  # the stream ended meanwhile: its window does not matter any more

    def stream_done(self, stream_id: int) -> None:
        self._stream_unacked.pop(stream_id, None)

    # ------------------------------------------------------------ sending

    def send_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        """Raises StreamClosed, or ValueError for headers HTTP/2 cannot carry."""
        try:
            self.conn.send_headers(stream_id, headers, end_stream=end_stream)
        except (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError):
            raise StreamClosed(stream_id) from None
        except h2.exceptions.ProtocolError as exc:
            if self.closed or self.conn.state_machine.state == h2.connection.ConnectionState.CLOSED:
                raise StreamClosed(stream_id) from None
            raise ValueError(f"invalid response headers: {exc}") from None

    def send_window(self, stream_id: int) -> int:
        """Bytes that may be sent on the stream now (its window, the connection's, one frame)."""
        try:
            window = self.conn.local_flow_control_window(stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError):
            return -1
        return min(window, self.conn.max_outbound_frame_size)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        """Raises StreamClosed when the stream (or the connection) can no longer be written."""
        try:
            self.conn.send_data(stream_id, data, end_stream=end_stream)
        except h2.exceptions.ProtocolError:
            raise StreamClosed(stream_id) from None

    def reset(self, stream_id: int, code: int = CANCEL) -> None:
        try:
            self.conn.reset_stream(stream_id, error_code=code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass  # already closed: nothing to reset

    def ping(self, data: bytes) -> None:
        self.conn.ping(data)

    def goaway(self, last_stream_id: int | None = None, code: int = NO_ERROR) -> None:
        """Announce shutdown (RFC 9113 §6.8): streams up to ``last_stream_id`` (default: the
        highest seen) are answered, later ones refused. Written by us, not through h2, which
        would close the connection to every frame after it."""
        last = self.last_stream_id if last_stream_id is None else last_stream_id
        self.goaway_last = last
        frame = GoAwayFrame(0, last_stream_id=last, error_code=code)
        # After everything h2 has queued, so the frames keep their order.
        self._pending += self.conn.data_to_send() + frame.serialize()

    def _fail(self, code: int, reason: str) -> H2ConnectionError:
        if not self.closed:
            self.closed = True
            try:
                self.conn.close_connection(error_code=code, last_stream_id=self.last_stream_id)
            except h2.exceptions.ProtocolError:
                pass
        return H2ConnectionError(code, reason)

    def fail(self, code: int, reason: str) -> H2ConnectionError:
        """End the connection from our side (e.g. no preface in time): GOAWAY queued."""
        return self._fail(code, reason)


def _error_code(exc: Exception) -> int:
    code = getattr(exc, "error_code", None)
    return int(code) if code is not None else int(h2.errors.ErrorCodes.PROTOCOL_ERROR)


def response_headers(
    status: int, headers: object, server: bytes | None, date: bytes | None
) -> list[tuple[bytes, bytes]]:
    """The HTTP/2 header list for an ASGI response start; raises TypeError/ValueError on bad input."""
    out: list[tuple[bytes, bytes]] = [(b":status", str(status).encode("ascii"))]
    seen_server = seen_date = False
    for name, value in headers:  # type: ignore[attr-defined]
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise TypeError("header names and values must be bytes")
        name = name.lower()
        if name in CONNECTION_FIELDS:
            continue
        if b"\r" in value or b"\n" in value or b"\0" in value or not name or b":" in name:
            raise ValueError(f"invalid response header {name!r}")
        seen_server = seen_server or name == b"server"
        seen_date = seen_date or name == b"date"
        out.append((name, value))
    if server is not None and not seen_server:
        out.append((b"server", server))
    if date is not None and not seen_date:
        out.append((b"date", date))
    return out
