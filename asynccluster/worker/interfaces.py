"""What the worker's pieces need of each other, as typing Protocols (issue 10).

Dependency direction inside worker/: server -> protocol/h2protocol/tls -> cycle/h2stream/
websocket -> interfaces -> flow (and http/). A request cycle talks to its connection only
through :class:`ResponseSink` (HTTP/1.1) or :class:`StreamSink` (HTTP/2), never through the
connection's fields; the server sweeps and drains every open connection (HTTP/1.1, HTTP/2,
WebSocket) through :class:`Connection`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from asynccluster.http.response import ResponseWriter
    from asynccluster.worker.flow import FlowControl


class Connection(Protocol):
    """An open connection as the server sees it (ServerState.connections)."""

    def check_timeout(self, now: float) -> None:
        """The server's once-a-tick sweep: act on a deadline that passed (``now``: loop time, s)."""

    def shutdown(self) -> None:
        """The worker drains: finish what is in flight, then close (each protocol's own way)."""

    def force_close(self) -> None:
        """The drain timed out: abort the transport."""


class ResponseSink(Protocol):
    """The HTTP/1.1 connection as one :class:`~asynccluster.worker.cycle.Cycle` sees it:
    where its response goes and how it ends. ``cycle`` arguments identify the caller (the
    connection answers its requests in order, RFC 9112 §9.3.2)."""

    @property
    def writer(self) -> ResponseWriter:
        """Frames the response (one at a time per connection)."""

    @property
    def flow(self) -> FlowControl:
        """Read pauses (BODY while the app does not read) and the write-side drain."""

    def write(self, data: bytes) -> None:
        """Response bytes, in order (coalesced into one transport write per read batch)."""

    def is_closing(self) -> bool:
        """The transport is closing (the client is gone, connection_lost not delivered yet)."""

    def error_bytes(self, status: int) -> bytes:
        """The canned error response for ``status`` (with Connection: close)."""

    def response_complete(self, cycle: object, keep_alive: bool) -> None:
        """``cycle``'s last body byte was written; ``keep_alive``: the connection may be reused."""

    def abort_response(self) -> None:
        """A started response cannot be completed: send what is buffered, then close."""

    def close_unread_body(self) -> None:
        """The answered request's unread body is too large to drop: close instead."""


class StreamSink(Protocol):
    """The HTTP/2 connection as one :class:`~asynccluster.worker.h2stream.H2Stream` sees it
    (streams are named by their id, RFC 9113 §5.1.1)."""

    @property
    def flow(self) -> FlowControl:
        """The transport's write-side drain (shared by the connection's streams)."""

    def send_window(self, stream_id: int) -> int:
        """Bytes the stream may send now (flow control); negative: the stream is closed."""

    def send_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        """A HEADERS frame; raises http.h2.StreamClosed if the stream was reset."""

    def send_data(self, stream_id: int, data: bytes, last: bool) -> None:
        """DATA frame(s); raises http.h2.StreamClosed if the stream was reset."""

    def reset_stream(self, stream_id: int, code: int) -> None:
        """RST_STREAM ``code`` (RFC 9113 §7) and forget the stream."""

    def consumed(self, stream_id: int, length: int) -> None:
        """The app read ``length`` flow-controlled bytes: reopen the windows."""

    def stream_finished(self, stream_id: int) -> None:
        """The stream's response is complete or it ended: forget it."""

    def flush(self) -> None:
        """Write what the frames produced so far."""
