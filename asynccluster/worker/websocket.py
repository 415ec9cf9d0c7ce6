"""The ASGI ``websocket`` scope over RFC 6455, for handshakes the HTTP protocol hands over.

Life of a session:

1. :class:`HttpProtocol` sees a GET WebSocket handshake (the parser holds the bytes after
   it) and, once earlier pipelined responses are out, calls :meth:`WebSocketSession.start`:
   the app runs as a Task and first receives ``websocket.connect``;
2. ``websocket.accept`` -> ``101 Switching Protocols`` (RFC 6455 §4.2.2); the session takes
   the transport over (``transport.set_protocol``) with the bytes the parser held;
   ``websocket.close`` before accepting -> ``403`` (ASGI websocket spec); an app that fails or
   returns before accepting -> ``500``;
3. frames in: unmasked frames, reserved bits or opcodes, oversized or fragmented control
   frames are protocol errors (1002), invalid UTF-8 text is 1007, messages over
   :data:`MAX_MESSAGE` are 1009 (RFC 6455 §5, §7.4.1); pings are answered with pongs;
4. closing (§7): a close frame from the client is answered and ``websocket.disconnect``
   delivered; ``websocket.close`` from the app sends one and waits (bounded) for the reply;
   the server closes TCP first (§7.1.1). A drain closes with 1012 (service restart) after
   --ws-drain-grace, and the app gets ``websocket.disconnect`` (issue 13);
5. options (issue 13, wssettings.py): --ws-max-size, --ws-max-queue (messages buffered before
   reading pauses), server pings every --ws-ping-interval (a client that does not answer within
   --ws-ping-timeout is closed), permessage-deflate (wsdeflate.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from asynccluster.http.response import error_response
from asynccluster.worker.compat import create_task_in
from asynccluster.worker.flow import FlowControl, WriteFlowProtocol
from asynccluster.worker.wsdeflate import PerMessageDeflate, negotiate
from asynccluster.worker.wsframes import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    VALID_CLOSE_CODES,
    FrameReader,
    WebSocketError,
    accept_key,
    close_payload,
    encode_frame,
    sendable_close_code,
)
from asynccluster.worker.wssettings import KeepAlive

if TYPE_CHECKING:
    from asynccluster.worker.state import ServerState

logger = logging.getLogger("asynccluster.worker")

CLOSE_TIMEOUT = 5.0  # seconds to wait for the client's close frame after ours


class WebSocketSession(WriteFlowProtocol):
    """One WebSocket connection: the app's receive/send, frames in and out, the close handshake."""

    def __init__(self, state: ServerState, transport: asyncio.Transport, scope: dict[str, Any], key: bytes) -> None:
        self.state = state
        self.transport = transport
        self.scope = scope
        self.key = key
        self.reader = FrameReader(state.ws.max_size)
        self.deflate: PerMessageDeflate | None = None  # permessage-deflate, once negotiated (wsdeflate.py)
        self.keepalive: KeepAlive | None = None  # server pings (--ws-ping-interval), once accepted
        self.drain_at = 0.0  # a drain closes this socket with 1012 at this loop time (0: not draining)
        self.accepted = False
        self.close_sent = False
        self.closed = False  # TCP connection gone
        self.finished = False  # disconnect delivered: nothing more for the app
        self.handshake_done = False  # 101 (or a refusal) written
        self.queue: deque[dict[str, Any]] = deque([{"type": "websocket.connect"}])
        self.waiter: asyncio.Future[None] | None = None
        self.deadline = 0.0  # close-handshake deadline (0: none)
        self.on_accept: Any = None  # set by the HTTP protocol: hands the transport over
        self.owns_connection = False  # True once this session is the transport's protocol
        # Write back-pressure: the same drain waiters as HTTP responses (flow.py).
        self.flow = FlowControl(transport)

    # ------------------------------------------------------------ running the app

    def start(self) -> None:
        loop = self.state.loop
        task = create_task_in(loop, self._run(), self.state.context.copy())
        self.state.tasks.add(task)
        task.add_done_callback(self.state.tasks.discard)

    async def _run(self) -> None:
        try:
            await self.state.app(self.scope, self.receive, self.send)
        except BaseException as exc:
            if self.finished and isinstance(exc, (OSError, asyncio.CancelledError)):
                return
            logger.error("Exception in ASGI app for WebSocket %s", self.scope["path"], exc_info=exc)
            if not self.handshake_done:
                self._refuse(500)
            else:
                self._close(1011, "")
            return
        if not self.handshake_done:
            logger.error("ASGI app returned without accepting or closing WebSocket %s", self.scope["path"])
            self._refuse(500)
        elif not self.close_sent and not self.closed:
            self._close(1000, "")

    async def receive(self) -> dict[str, Any]:
        while not self.queue:
            if self.finished:
                return {"type": "websocket.disconnect", "code": 1006, "reason": ""}
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        message = self.queue.popleft()
        if len(self.queue) == self.state.ws.max_queue and self.accepted and not self.closed:
            self.transport.resume_reading()
        return message

    async def send(self, message: dict[str, Any]) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if not self.handshake_done:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self._refuse(403)  # ASGI: close before accept is an HTTP 403
            else:
                raise RuntimeError(f"invalid ASGI message {kind!r}: expected 'websocket.accept' or 'websocket.close'")
            return
        if self.close_sent or self.closed:
            raise ConnectionResetError("the WebSocket is closed")
        if kind == "websocket.send":
            data, text = message.get("bytes"), message.get("text")
            if (data is None) == (text is None):
                raise RuntimeError("invalid ASGI message: websocket.send needs exactly one of 'bytes' and 'text'")
            if data is not None:
                self.transport.write(self._frame(BINARY, bytes(data)))
            else:
                self.transport.write(self._frame(TEXT, str(text).encode("utf-8")))
            if self.flow.write_paused:  # skip the coroutine when not paused: the common case
                await self.flow.drain()
        elif kind == "websocket.close":
            self._close(*self._app_close(message))
        else:
            raise RuntimeError(f"invalid ASGI message {kind!r} on an open WebSocket")

    def _app_close(self, message: dict[str, Any]) -> tuple[int, str]:
        """The (code, reason) to send for the app's ``websocket.close`` (issue 8 item 6).

        A code that must never be sent (RFC 6455 §7.4: 1005, 1006, 1015 are for reporting,
        1004 is reserved, 1016-2999 unassigned, below 1000 or above 4999 invalid) is refused
        with one error in the log and replaced by 1011: the server hit an unexpected condition
        (an app bug), which is 1011's meaning (§7.4.1); 1000 would tell the client all went
        well. The reason is cut to fit the frame in close_payload.
        """
        code = message.get("code")
        reason = message.get("reason") or ""
        if not isinstance(reason, str):
            raise RuntimeError(f"invalid ASGI message: websocket.close 'reason' must be a str, got {reason!r}")
        if code is None:
            return 1000, reason
        if not sendable_close_code(code):
            logger.error(
                "the app closed a WebSocket with code %r, which must never be sent (RFC 6455 §7.4: "
                "1000-1003, 1007-1014 or 3000-4999); closing with 1011 instead",
                code,
            )
            return 1011, reason
        return code, reason

    # ------------------------------------------------------------ handshake

    def _accept(self, message: dict[str, Any]) -> None:
        lines = [
            b"HTTP/1.1 101 Switching Protocols\r\n",
            b"upgrade: websocket\r\nconnection: Upgrade\r\n",
            b"sec-websocket-accept: " + accept_key(self.key) + b"\r\n",
        ]
        subprotocol = message.get("subprotocol")
        if subprotocol:
            lines.append(b"sec-websocket-protocol: " + subprotocol.encode("latin-1") + b"\r\n")
        options = self.state.ws
        params = negotiate(self.scope["headers"]) if options.per_message_deflate else None
        if params is not None:  # RFC 7692: compression, with the parameters we agreed to
            self.deflate = PerMessageDeflate(params, options.max_size)
            self.reader.inflate = self.deflate.decompress
            lines.append(b"sec-websocket-extensions: " + params.header() + b"\r\n")
        for name, value in message.get("headers") or ():
            if b"\r" in name + value or b"\n" in name + value:
                raise RuntimeError(f"invalid WebSocket accept header {name!r}")
            lines.append(name + b": " + value + b"\r\n")
        lines.append(b"\r\n")
        self.transport.write(b"".join(lines))
        self.handshake_done = True
        self.accepted = True
        self.state.stats.record_response(101, 0.0)
        self.keepalive = KeepAlive(options.ping_interval, options.ping_timeout, self.state.now)
        if self.on_accept is not None:
            self.on_accept(self)
        if self.state.draining:
            self.shutdown()

    def _refuse(self, status: int) -> None:
        self.handshake_done = True
        self.finished = True
        self._wake()
        self.state.stats.record_response(status, 0.0)
        if not self.closed:
            self.transport.write(error_response(status, server_header=self.state.server_header, date=self.state.date))
            self.transport.close()

    def take_over(self, held: bytes) -> None:
        """Become the transport's protocol, starting with the bytes the HTTP parser held."""
        self.owns_connection = True
        self.state.connections.add(self)
        self.transport.set_protocol(self)
        if held:
            self.data_received(held)

    # ------------------------------------------------------------ frames in

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            messages = self.reader.feed(data)
        except WebSocketError as exc:
            logger.debug("WebSocket protocol error from the client: %s", exc.reason)
            self._deliver_disconnect(exc.code, exc.reason)
            self._close(exc.code, exc.reason)
            self.transport.close()
            return
        for opcode, payload in messages:
            self._on_message(opcode, payload)

    def _on_message(self, opcode: int, payload: bytes) -> None:
        if self.finished and opcode != CLOSE:
            return
        if opcode == TEXT:
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                self.data_received_error(1007, "invalid UTF-8 in a text message")
                return
            self._deliver({"type": "websocket.receive", "text": text})
        elif opcode == BINARY:
            self._deliver({"type": "websocket.receive", "bytes": payload})
        elif opcode == PING:
            if not self.close_sent:
                self.transport.write(encode_frame(PONG, payload))
        elif opcode == PONG:
            if self.keepalive is not None:
                self.keepalive.pong(payload, self.state.now)
        elif opcode == CLOSE:
            self._on_close_frame(payload)

    def data_received_error(self, code: int, reason: str) -> None:
        self._deliver_disconnect(code, reason)
        self._close(code, reason)
        self.transport.close()

    def _on_close_frame(self, payload: bytes) -> None:
        code, reason = 1005, ""
        if len(payload) == 1:
            self.data_received_error(1002, "close frame with a one-byte payload")
            return
        if payload:
            code = int.from_bytes(payload[:2], "big")
            if code not in VALID_CLOSE_CODES and not 3000 <= code <= 4999:
                self.data_received_error(1002, f"invalid close code {code}")
                return
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                self.data_received_error(1007, "invalid UTF-8 in the close reason")
                return
        self._deliver_disconnect(code, reason)
        if not self.close_sent:
            self._close(code if code != 1005 else 1000, "")
        self.transport.close()  # the server closes the TCP connection first (RFC 6455 §7.1.1)

    def _deliver(self, message: dict[str, Any]) -> None:
        self.queue.append(message)
        if len(self.queue) > self.state.ws.max_queue and not self.closed:
            self.transport.pause_reading()
        self._wake()

    def _deliver_disconnect(self, code: int, reason: str) -> None:
        if not self.finished:
            self.finished = True
            self.queue.append({"type": "websocket.disconnect", "code": code, "reason": reason})
            self._wake()

    def _wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------ closing

    def _close(self, code: int, reason: str) -> None:
        """Send our close frame once; then wait (bounded) for the client's."""
        if self.close_sent or self.closed:
            return
        self.close_sent = True
        self.transport.write(encode_frame(CLOSE, close_payload(code, reason)))
        self.deadline = self.state.now + CLOSE_TIMEOUT + self.state.tick

    def connection_lost(self, exc: Exception | None) -> None:
        """The TCP connection is gone (reported by the transport, or by the HTTP protocol
        while the handshake was still pending)."""
        self.closed = True
        self._deliver_disconnect(1006 if not self.close_sent else 1000, "")
        self.resume_writing()
        if self.owns_connection:
            state = self.state
            state.connections.discard(self)
            state.stats.connections -= 1
            if state.draining and not state.connections:
                state.all_closed.set()

    def eof_received(self) -> bool | None:
        return None  # close the transport: the client is gone (connection_lost delivers 1006)

    # -- the interface the server's drain and tick use (same as HttpProtocol's)

    def shutdown(self) -> None:
        """The worker drains: after --ws-drain-grace, close with 1012 (service restart)."""
        if self.accepted and not self.closed and not self.drain_at:
            self.drain_at = max(self.state.ws_drain_deadline, self.state.now)
            if self.drain_at <= self.state.now:
                self._drain_close()

    def _drain_close(self) -> None:
        """RFC 6455 §7.4.1 / IANA: 1012, the server restarts; the client may reconnect (to
        another worker). The app hears it at once, as websocket.disconnect with 1012."""
        self._deliver_disconnect(1012, "service restart")
        self._close(1012, "service restart")

    def force_close(self) -> None:
        if not self.closed:
            self.transport.abort()

    def check_timeout(self, now: float) -> None:
        """The server's once-a-tick sweep: close handshake, drain, keepalive pings."""
        if self.closed:
            return
        if self.deadline and now >= self.deadline:
            self.transport.close()
            return
        if self.drain_at and now >= self.drain_at and not self.close_sent:
            self._drain_close()
        keepalive = self.keepalive
        if keepalive is None or self.close_sent:
            return
        if keepalive.timed_out(now):
            logger.debug("WebSocket client %s did not answer a ping in time: closing", self.scope.get("client"))
            self._deliver_disconnect(1006, "keepalive ping timeout")
            self._close(1011, "keepalive ping timeout")
            self.transport.close()
            return
        payload = keepalive.ping_due(now)
        if payload is not None:
            self.transport.write(encode_frame(PING, payload))

    def _frame(self, opcode: int, payload: bytes) -> bytes:
        """A data message as one frame, compressed when permessage-deflate is on (RFC 7692 §6)."""
        deflate = self.deflate
        if deflate is None:
            return encode_frame(opcode, payload)
        return encode_frame(opcode, deflate.compress(payload), rsv1=True)


def websocket_scope(http_scope: dict[str, Any]) -> dict[str, Any]:
    """The ASGI websocket scope from the handshake's HTTP scope."""
    scope = {
        key: http_scope[key]
        for key in (
            "asgi",
            "http_version",
            "path",
            "raw_path",
            "query_string",
            "root_path",
            "headers",
            "client",
            "server",
            "state",
        )
    }
    scope["type"] = "websocket"
    scope["scheme"] = "wss" if http_scope["scheme"] in ("https", "wss") else "ws"
    scope["extensions"] = {}
    protocols: list[str] = []
    for name, value in http_scope["headers"]:
        if name == b"sec-websocket-protocol":
            protocols += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
    scope["subprotocols"] = protocols
    return scope


def handshake_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"sec-websocket-key":
            return value
    return None
