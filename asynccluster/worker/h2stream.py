"""One HTTP/2 stream as an ASGI ``http`` cycle (issue 13), in its own real Task.

The HTTP/2 counterpart of :class:`asynccluster.worker.cycle.Cycle`: streams of a connection
run concurrently (each app call a Task from its first line, in a fresh context), so there is
no pipeline; responses are interleaved by the connection's frames.

- ``receive()``: body chunks as they arrive; the stream's flow-control window is re-opened
  only as the app reads them (http/h2.py ``consumed``), so a client cannot make us buffer
  more than one window per stream (back-pressure). ``http.disconnect`` once the client reset
  the stream (RST_STREAM), the connection is gone, or the response is complete.
- ``send()``: the head goes out with the first body message (so an empty body is one HEADERS
  frame with END_STREAM); body bytes are cut to the peer's flow-control windows and the
  frame size, and ``send()`` waits for WINDOW_UPDATE and for the transport's write buffer.
- The app's failure before a response: 500; after the head was sent: RST_STREAM
  INTERNAL_ERROR (the client sees the response was cut, as HTTP/1.1 sees a closed connection).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from asynccluster.http.h2 import INTERNAL_ERROR, StreamClosed, response_headers
from asynccluster.worker.compat import start_task
from asynccluster.worker.cycle import ClientDisconnected, InvalidASGIMessage

if TYPE_CHECKING:
    from asynccluster.worker.interfaces import StreamSink
    from asynccluster.worker.state import ServerState

logger = logging.getLogger("asynccluster.worker")

ERROR_BODY = b"Internal Server Error"
_now = time.perf_counter


class H2Stream:
    __slots__ = (
        "body",
        "body_complete",
        "body_returned",
        "disconnected",
        "flow_pending",
        "head",
        "protocol",
        "response_complete",
        "response_started",
        "scope",
        "sent_bytes",
        "started_at",
        "state",
        "status",
        "stream_id",
        "waiter",
        "window_waiter",
    )

    def __init__(self, protocol: StreamSink, state: ServerState, stream_id: int, scope: dict[str, Any]) -> None:
        self.protocol = protocol  # the connection, seen through the interface only
        self.state = state
        self.stream_id = stream_id
        self.scope = scope
        self.body: list[bytes] = []
        self.flow_pending = 0  # flow-controlled bytes buffered, not yet given back to the window
        self.body_complete = False
        self.body_returned = False  # the last chunk (more_body False) was returned by receive()
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.head: list[tuple[bytes, bytes]] | None = None  # the response head, until the first body
        self.status = 0
        self.sent_bytes = 0
        self.waiter: asyncio.Future[None] | None = None  # receive() waiting for body
        self.window_waiter: asyncio.Future[None] | None = None  # send() waiting for flow control
        self.started_at = _now()

    # ------------------------------------------------------------ from the connection

    def feed(self, data: bytes, flow_length: int, end_stream: bool) -> None:
        if data:
            self.body.append(data)
        self.flow_pending += flow_length
        if end_stream:
            self.body_complete = True
        if self.response_complete:  # nobody will read it: give the window back at once
            self._give_back()
        self._wake_receiver()

    def disconnect(self) -> None:
        self.disconnected = True
        self._wake_receiver()
        self.window_opened()

    def window_opened(self) -> None:
        waiter, self.window_waiter = self.window_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_receiver(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _give_back(self) -> None:
        if self.flow_pending:
            self.protocol.consumed(self.stream_id, self.flow_pending)
            self.flow_pending = 0

    # ------------------------------------------------------------ running the app

    def run(self) -> None:
        state = self.state
        task = start_task(state.loop, self._main(), state.context.copy())
        if not task.done():
            state.tasks.add(task)
            task.add_done_callback(state.tasks.discard)

    async def _main(self) -> None:
        try:
            await self._run_app()
        finally:
            self.protocol.stream_finished(self.stream_id)  # (already done if the response completed)

    async def _run_app(self) -> None:
        try:
            await self.state.app(self.scope, self.receive, self.send)
        except BaseException as exc:
            if self.disconnected and isinstance(exc, (ClientDisconnected, asyncio.CancelledError)):
                return
            logger.error("Exception in ASGI app for %s", self._what(), exc_info=exc)
            self._fail()
            return
        if not self.response_complete and not self.disconnected:
            logger.error("ASGI app returned without completing the response for %s", self._what())
            self._fail()

    def _fail(self) -> None:
        if self.disconnected or self.response_complete:
            return
        if self.head is not None or not self.response_started:
            # Nothing sent yet: a 500 replaces whatever the app started.
            self.status = 500
            self.response_started = True
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")]
            self.head = self._headers(500, headers)
            try:
                self._send_body(ERROR_BODY, True)
            except (ClientDisconnected, InvalidASGIMessage):
                pass  # the client reset the stream meanwhile: nobody to tell
            return
        self.protocol.reset_stream(self.stream_id, INTERNAL_ERROR)

    def _what(self) -> str:
        return f'"{self.scope["method"]} {self.scope["path"]}" (HTTP/2 stream {self.stream_id})'

    # ------------------------------------------------------------ ASGI receive()

    async def receive(self) -> dict[str, Any]:
        """The next body chunk, or ``http.disconnect`` (after the last chunk: once the response
        is complete or the client is gone, as for HTTP/1.1)."""
        while not (
            self.body or self.disconnected or self.response_complete or (self.body_complete and not self.body_returned)
        ):
            self.waiter = waiter = self.state.loop.create_future()
            await waiter
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        body = self.body
        data = b"" if not body else body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        self._give_back()
        more = not self.body_complete
        self.body_returned = not more
        return {"type": "http.request", "body": data, "more_body": more}

    # ------------------------------------------------------------ ASGI send()

    async def send(self, message: dict[str, Any]) -> None:
        if self.disconnected:
            raise ClientDisconnected("the client reset the stream or closed the connection")
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "http.response.start" and not self.response_started:
            status = message.get("status")
            if type(status) is not int or not 100 <= status <= 999:
                raise InvalidASGIMessage(f"invalid ASGI message for {self._what()}: 'status' {status!r:.50}")
            try:
                self.head = self._headers(status, message.get("headers", ()))
            except (TypeError, ValueError) as exc:
                raise InvalidASGIMessage(f"invalid ASGI message for {self._what()}: {exc}") from None
            self.status = status
            self.response_started = True
        elif kind == "http.response.body" and self.response_started and not self.response_complete:
            body = message.get("body", b"")
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise InvalidASGIMessage(f"'body' must be bytes, got {type(body).__name__}")
            await self._send_body_flowing(bytes(body), not message.get("more_body", False))
        else:
            raise InvalidASGIMessage(f"invalid ASGI message for {self._what()}: {kind!r} here")

    def _headers(self, status: int, headers: Any) -> list[tuple[bytes, bytes]]:
        state = self.state
        date = state.date[6:-2] if state.date else None  # the value of the cached "date: ...\r\n" line
        return response_headers(status, headers, state.server_header, date)

    async def _send_body_flowing(self, data: bytes, last: bool) -> None:
        """Send ``data`` as the windows allow; wait for WINDOW_UPDATE and the write buffer."""
        if self.scope["method"] == "HEAD":
            data = b""
        protocol = self.protocol
        while True:
            if self.disconnected:
                raise ClientDisconnected("the client reset the stream or closed the connection")
            window = protocol.send_window(self.stream_id) if data else 0
            if window < 0:
                raise ClientDisconnected("the stream is closed")
            if not data or window >= len(data):
                self._send_body(data, last)
                break
            if window > 0:  # one frame's worth (the window may allow more: go round again)
                self._send_body(data[:window], False)
                data = data[window:]
                continue
            self.window_waiter = waiter = self.state.loop.create_future()
            protocol.flush()
            await waiter
        if protocol.flow.write_paused:
            await protocol.flow.drain()

    def _send_body(self, data: bytes, last: bool) -> None:
        """Raises ClientDisconnected if the client reset the stream meanwhile, InvalidASGIMessage
        for a head HTTP/2 cannot carry."""
        protocol = self.protocol
        head = self.head
        try:
            if head is not None:
                self.head = None
                protocol.send_headers(self.stream_id, head, end_stream=last and not data)
                if last and not data:
                    self._complete()
                    return
            if data or last:
                protocol.send_data(self.stream_id, data, last)
                self.sent_bytes += len(data)
        except StreamClosed:
            self.disconnect()
            raise ClientDisconnected("the client reset the stream or closed the connection") from None
        except ValueError as exc:
            raise InvalidASGIMessage(f"invalid ASGI message for {self._what()}: {exc}") from None
        if last:
            self._complete()

    def _complete(self) -> None:
        self.response_complete = True
        state = self.state
        seconds = _now() - self.started_at
        state.stats.record_response(self.status, seconds)
        if state.access_log is not None:
            state.access_log.log(self.scope, self.status, self.sent_bytes, seconds)
        self._give_back()
        self._wake_receiver()
        self.protocol.stream_finished(self.stream_id)
