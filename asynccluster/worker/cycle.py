"""One request/response: the ASGI ``receive``/``send`` pair and the app's run (issue 2).

Every app call runs inside a real :class:`asyncio.Task` from its first line (issue 8;
DESIGN.md §4), in a fresh ``contextvars.Context`` per request: frameworks rely on
``asyncio.current_task()`` (anyio, sniffio, ``asyncio.timeout``, ``TaskGroup``). On Python
>= 3.12 the Task starts eagerly (:func:`asynccluster.worker.compat.start_task`): an app that
answers without suspending finishes inside the protocol callback, and its response joins that
read's coalesced write. Before 3.12 the Task's first step runs on the next loop pass.

``receive()`` follows the ASGI HTTP spec: once the last body chunk (``more_body: False``) has
been returned, a further call waits until the response is complete or the client has gone,
then returns ``http.disconnect`` (it never busy-loops on empty ``http.request`` messages).

Message order and content are checked here (ASGI HTTP spec); framing and header validation
are delegated to :mod:`asynccluster.http.response`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from asynccluster.http.errors import ResponseError
from asynccluster.worker.compat import start_task
from asynccluster.worker.diagnose import record_error
from asynccluster.worker.flow import BODY, BODY_HIGH_WATER

if TYPE_CHECKING:
    from asynccluster.worker.interfaces import ResponseSink
    from asynccluster.worker.state import ServerState

logger = logging.getLogger("asynccluster.worker")

CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}  # copied per use: apps may mutate messages

# Bytes of a file read per piece for http.response.pathsend: few loop turns per file, and a
# bounded read (tens of microseconds from the page cache) per turn.
PATHSEND_CHUNK = 256 * 1024

# Bytes of a request body the app did not read that are read and dropped after its response,
# so the connection can serve the next request (issue 8 item 3). Past this the connection is
# closed instead: the response is out, and reading a huge unwanted upload costs more than a
# new connection (RFC 9112 §9.6 lets a server close after any response).
DISCARD_LIMIT = 1 << 20


class ClientDisconnected(OSError):
    """``send()`` on a connection the client has closed (ASGI HTTP spec 2.4: an OSError)."""


class InvalidASGIMessage(RuntimeError):
    """The app sent a message the ASGI HTTP spec does not allow at this point."""


_now = time.perf_counter


class Cycle:
    """The state of one request and its response, and the app's view of it."""

    __slots__ = (
        "body",
        "body_complete",
        "body_returned",
        "body_size",
        "disconnected",
        "error",
        "expect_continue",
        "keep_alive",
        "pending_head",
        "response_complete",
        "response_started",
        "scope",
        "sent_bytes",
        "sink",
        "started_at",
        "state",
        "status",
        "unfinished_recorded",
        "waiter",
    )

    def __init__(
        self, sink: ResponseSink, state: ServerState, scope: dict[str, Any], keep_alive: bool, expect_continue: bool
    ) -> None:
        self.sink = sink  # the connection, seen only through its ResponseSink interface
        self.state = state  # the worker's shared state: the app, the loop, stats, the access log
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.body: list[bytes] = []
        self.body_size = 0
        self.body_complete = False
        self.body_returned = False  # receive() has returned the last chunk (more_body: False)
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.waiter: asyncio.Future[None] | None = None
        self.pending_head = b""
        self.status = 0
        self.sent_bytes = 0
        self.unfinished_recorded = False
        self.error: BaseException | None = None  # an invalid message we raised into the app
        self.started_at = _now()

    # ------------------------------------------------------------ request body (from the parser)

    def feed_body(self, data: bytes) -> None:
        if self.response_complete or self.disconnected:
            # The app is done with this request: the rest of its body is read and dropped, up
            # to DISCARD_LIMIT; past it the connection closes (the response is already out).
            self.body_size += len(data)
            if self.body_size > DISCARD_LIMIT and not self.disconnected:
                self.disconnected = True
                self.sink.close_unread_body()
            return
        self.body.append(data)
        self.body_size += len(data)
        if self.body_size > BODY_HIGH_WATER:
            # The app is not keeping up (or has not asked yet): stop reading until it does.
            self.sink.flow.pause_reading(BODY)
        self.wake()

    def disconnect(self) -> None:
        """The client went away (or the request can no longer be answered)."""
        self.disconnected = True
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------ running the app

    def run(self) -> None:
        """Start the app in its own Task, in a fresh context (eagerly on Python >= 3.12)."""
        state = self.state
        task = start_task(state.loop, self._main(), state.context.copy())
        if not task.done():
            # Suspended (or, before 3.12, not started): referenced until it ends (the loop holds
            # tasks weakly) and awaited by a drain. _main removes it itself: a done callback
            # would cost one more loop callback per request.
            state.tasks.add(task)

    async def _main(self) -> None:
        """The app's run, inside the request's Task: every outcome is handled here."""
        try:
            call: Any = self.state.app(self.scope, self.receive, self.send)
            try:
                result = await call
            except TypeError:
                if not hasattr(call, "__await__"):
                    raise TypeError(
                        f"the ASGI app returned {type(call).__name__}, not a coroutine (is it async?)"
                    ) from None
                raise
        except BaseException as exc:  # the app's own failure (or cancellation) ends here
            self._app_failed(exc)
        else:
            if result is not None or not self.response_complete or self.error is not None:
                self._app_returned(result)  # the common case (answered, nothing to report) skips it
        finally:
            self.state.tasks.discard(asyncio.current_task())

    def _app_returned(self, result: Any) -> None:
        if result is not None:
            logger.error("ASGI app returned %r for %s; it must return None", result, self._what())
        if self.error is not None:
            logger.error("ASGI app caught our error and went on; %s: %s", self._what(), self.error)
        if self.disconnected:
            self._record_unfinished()
            return
        if not self.response_started:
            logger.error("ASGI app returned without starting a response for %s", self._what())
            self._send_500()
        elif not self.response_complete:
            logger.error("ASGI app returned without completing the response for %s", self._what())
            self._fail_response()

    def _app_failed(self, exc: BaseException) -> None:
        if self.disconnected and isinstance(exc, (ClientDisconnected, asyncio.CancelledError)):
            logger.debug("client went away during %s", self._what())
            self._record_unfinished()
            return
        if isinstance(exc, asyncio.CancelledError):
            logger.warning("request cancelled: %s", self._what())
        else:
            logger.error("Exception in ASGI app for %s", self._what(), exc_info=exc)
            record_error(exc, self.scope)  # grouped for `asynccluster errors` (issue 15)
        if self.disconnected:
            self._record_unfinished()
            return
        if not self.response_started:
            self._send_500()
        elif not self.response_complete:
            self._fail_response()
        # After a complete response (e.g. a background task failed) the connection is fine.

    def _fail_response(self) -> None:
        """A started response cannot be completed: 500 if no byte of it left yet, else abort."""
        if self.pending_head:
            self.pending_head = b""  # the head is still ours: replace the response
            self._send_500()
        else:
            self._record_unfinished()
            self.disconnect()
            self.sink.abort_response()

    def _record_unfinished(self) -> None:
        """A response that started but never completed (the client left mid-stream, or it was
        aborted) still gets its access-log line and its count, with the bytes sent so far:
        SSE streams and cut downloads were invisible (newcomer trial; uvicorn logs them too)."""
        if not self.response_started or self.response_complete or self.unfinished_recorded:
            return
        self.unfinished_recorded = True
        state = self.state
        seconds = _now() - self.started_at
        state.stats.record_response(self.status, seconds)
        if state.access_log is not None:
            state.access_log.log(self.scope, self.status, self.sent_bytes, seconds)

    def _send_500(self) -> None:
        """The canned 500 (with Connection: close) in place of the app's response."""
        self.status = 500
        self.response_started = True
        self.sink.write(self.sink.error_bytes(500))
        self._complete(False)

    def _what(self) -> str:
        scope = self.scope
        return f'"{scope["method"]} {scope["path"]}"'

    # ------------------------------------------------------------ ASGI receive()

    async def receive(self) -> dict[str, Any]:
        """The next ``http.request`` chunk, or ``http.disconnect`` (ASGI HTTP spec).

        Waits while no body is buffered. After the last chunk has been returned, waits until
        the response is complete or the client has gone (never returns another
        ``http.request``). Cancelling a waiting call (anyio cancel scopes) loses nothing.
        """
        if self.expect_continue:
            self._send_continue()
        while not (
            self.body or self.disconnected or self.response_complete or (self.body_complete and not self.body_returned)
        ):
            self.waiter = waiter = self.state.loop.create_future()
            await waiter
        if self.disconnected or self.response_complete:
            return dict(DISCONNECT)
        body = self.body
        if not body:
            data = b""
        elif len(body) == 1:
            data = body[0]
            body.clear()
        else:
            data = b"".join(body)
            body.clear()
        if self.body_size > BODY_HIGH_WATER:
            self.sink.flow.resume_reading(BODY)
        self.body_size = 0
        more_body = not self.body_complete
        if not more_body:
            self.body_returned = True
        return {"type": "http.request", "body": data, "more_body": more_body}

    def _send_continue(self) -> None:
        # RFC 9110 §10.1.1: 100 only while the client may still be waiting to send the body,
        # and never after a final response started.
        self.expect_continue = False
        if not self.body and not self.body_complete and not self.response_started and not self.disconnected:
            self.sink.write(CONTINUE_100)

    # ------------------------------------------------------------ ASGI send()

    async def send(self, message: dict[str, Any]) -> None:
        if self.disconnected:
            raise ClientDisconnected("the client closed the connection")
        try:
            kind = message["type"]
        except (TypeError, KeyError):
            raise self._invalid(f"ASGI message must be a dict with a 'type', got {message!r:.100}") from None
        sink = self.sink
        if kind == "http.response.body" and self.response_started and not self.response_complete:
            # The body path is inline: it runs for every body message of every response.
            body: bytes = message.get("body", b"")  # (bytearray and memoryview work too)
            more_body = message.get("more_body", False)
            if body.__class__ is not bytes and not isinstance(body, (bytearray, memoryview)):
                raise self._invalid(f"'body' must be bytes, got {type(body).__name__}")
            if more_body and sink.is_closing():
                # The client is gone (a write failed) but the loop has not delivered
                # connection_lost yet: an app streaming without suspending learns it here
                # instead of "completing" its body into a closed connection (issue 9 item 6).
                self.disconnected = True
                raise ClientDisconnected("the client closed the connection")
            writer = sink.writer
            try:
                data = writer.body(body) if more_body else writer.last(body)
            except (ResponseError, TypeError) as exc:
                raise self._body_error(exc, body) from None
            if body:
                self.sent_bytes += len(body)
            head = self.pending_head
            if head:
                data = head + data
                self.pending_head = b""
            if data:
                sink.write(data)  # coalesced by the connection: one transport write per read
            if not more_body:
                self._complete(writer.keep_alive)
        elif kind == "http.response.start" and not self.response_started:
            self._start(message)
        elif kind == "http.response.pathsend" and self.response_started and not self.response_complete:
            await self._send_path(message)
            return
        else:
            raise self._out_of_order(kind)
        flow = sink.flow
        if flow.write_paused:
            await flow.drain()

    async def _send_path(self, message: dict[str, Any]) -> None:
        """ASGI ``http.response.pathsend`` (the Path Send extension, issue 16): the file at
        ``path`` is the rest of the body. Read in PATHSEND_CHUNK pieces from this loop (a
        regular file, usually in the page cache), each written through the body path above,
        which awaits the client between pieces when its buffer is full. Starlette's
        FileResponse uses it when offered, instead of a thread-pool read per 64 KiB chunk."""
        path = message.get("path")
        if not isinstance(path, str) or not os.path.isabs(path):
            raise self._invalid(f"'path' must be an absolute path string, got {path!r:.100}")
        with open(path, "rb") as file:  # OSError goes to the app, as a failed read would
            chunk = file.read(PATHSEND_CHUNK)
            while True:
                following = file.read(PATHSEND_CHUNK) if len(chunk) == PATHSEND_CHUNK else b""
                await self.send({"type": "http.response.body", "body": chunk, "more_body": bool(following)})
                if not following:
                    return
                chunk = following

    def _out_of_order(self, kind: Any) -> InvalidASGIMessage:
        if not self.response_started:
            return self._invalid(f"expected 'http.response.start', got {kind!r}")
        if not self.response_complete:
            return self._invalid(f"expected 'http.response.body', got {kind!r}")
        return self._invalid(f"{kind!r} sent after the response was complete")

    def _invalid(self, text: str) -> InvalidASGIMessage:
        self.error = exc = InvalidASGIMessage(f"invalid ASGI message for {self._what()}: {text}")
        return exc

    def _start(self, message: dict[str, Any]) -> None:
        status = message.get("status")
        if type(status) is not int:
            raise self._invalid(f"'status' must be an int, got {status!r:.50}")
        scope = self.scope
        keep_alive = self.keep_alive
        if self.expect_continue and not self.body_complete and not self.body_size:
            # The client is waiting for 100 Continue that will not come now: it may send the
            # body anyway or not at all (RFC 9110 §10.1.1), so the connection cannot be reused.
            self.keep_alive = keep_alive = False
        state = self.state
        try:
            self.pending_head = state.head_cache.start(
                self.sink.writer,
                status,
                message.get("headers", ()),
                scope["method"] == "HEAD",
                scope["http_version"],
                keep_alive,
                state.date,
            )
        except ResponseError as exc:
            raise self._invalid(str(exc)) from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise self._invalid(f"'headers' must be an iterable of (bytes, bytes) pairs ({exc})") from None
        self.status = status
        # (expect_continue stays set: the protocol must know that 100 never went out.)
        self.response_started = True

    def _body_error(self, exc: Exception, body: Any) -> InvalidASGIMessage:
        if isinstance(exc, TypeError):
            return self._invalid(f"'body' must be bytes, got {type(body).__name__}")
        # A Content-Length mismatch: this response cannot be completed as the app wrote it.
        error = self._invalid(str(exc))
        self._fail_response()
        return error

    def _complete(self, keep_alive: bool) -> None:
        """The response is complete (its last byte written): stats, access log, then the
        connection (``keep_alive``: the writer allows reuse; the request's own say is added)."""
        self.response_complete = True
        state = self.state
        seconds = _now() - self.started_at
        state.stats.record_response(self.status, seconds)
        access_log = state.access_log
        if access_log is not None:
            access_log.log(self.scope, self.status, self.sent_bytes, seconds)
        if self.waiter is not None:
            self.wake()
        self.sink.response_complete(self, keep_alive and self.keep_alive)
