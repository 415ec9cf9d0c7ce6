"""One request/response: the ASGI ``receive``/``send`` pair and the app's run (issue 2).

The app coroutine is run EAGERLY: :meth:`Cycle.run` steps it with ``coro.send(None)`` inside
the protocol callback, in a fresh ``contextvars.Context``. An app that answers without
waiting on anything (the common case: body already read, response built from memory)
finishes in that one step, with no Task, no scheduling and no extra loop iteration. Only if
it suspends on a future do we wrap the already-started coroutine in a Task (see
:func:`_drive`), running its later steps in the same context.

Message order and content are checked here (ASGI HTTP spec); framing and header validation
are delegated to :mod:`asynccluster.http.response`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import types
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any

from asynccluster.http.errors import ResponseError
from asynccluster.worker.compat import create_task_in
from asynccluster.worker.flow import BODY, BODY_HIGH_WATER, FLUSH_THRESHOLD

if TYPE_CHECKING:
    from asynccluster.worker.protocol import HttpProtocol

logger = logging.getLogger("asynccluster.worker")

CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}  # copied per use: apps may mutate messages


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
        "body_size",
        "coro",
        "disconnected",
        "error",
        "expect_continue",
        "keep_alive",
        "pending_head",
        "protocol",
        "response_complete",
        "response_started",
        "scope",
        "sent_bytes",
        "started_at",
        "status",
        "waiter",
    )

    def __init__(self, protocol: HttpProtocol, scope: dict[str, Any], keep_alive: bool, expect_continue: bool) -> None:
        self.protocol = protocol
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.body: list[bytes] = []
        self.body_size = 0
        self.body_complete = False
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.waiter: asyncio.Future[None] | None = None
        self.pending_head = b""
        self.status = 0
        self.sent_bytes = 0
        self.error: BaseException | None = None  # an invalid message we raised into the app
        self.coro: Coroutine[Any, Any, Any] | None = None
        self.started_at = _now()

    # ------------------------------------------------------------ request body (from the parser)

    def feed_body(self, data: bytes) -> None:
        if self.response_complete or self.disconnected:
            return  # the app is done with this request: the rest of its body is read and dropped
        self.body.append(data)
        self.body_size += len(data)
        if self.body_size > BODY_HIGH_WATER:
            # The app is not keeping up (or has not asked yet): stop reading until it does.
            self.protocol.flow.pause_reading(BODY)
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
        """Start the app eagerly; make a Task only if it suspends."""
        state = self.protocol.state
        ctx = state.context.copy()
        try:
            # Both the call (which may run code, e.g. a class-based app's __init__) and the
            # first step run in the request's own context.
            self.coro = coro = ctx.run(state.app, self.scope, self.receive, self.send)
            pending = ctx.run(coro.send, None)
        except StopIteration as stop:
            if stop.value is None and self.response_complete and self.error is None:
                self.coro = None  # the common case: answered in one step, nothing to report
            else:
                self._app_returned(stop.value)
            return
        except BaseException as exc:
            error = exc
            if self.coro is not None and not hasattr(self.coro, "send"):
                error = TypeError(f"the ASGI app returned {type(self.coro).__name__}, not a coroutine (is it async?)")
            self._app_failed(error)
            return
        task = create_task_in(state.loop, self._resume(coro, pending), ctx)
        tasks = state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _resume(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        """The rest of an app run that suspended during its eager first step."""
        try:
            result = await _drive(coro, pending)
        except BaseException as exc:
            self._app_failed(exc)
        else:
            self._app_returned(result)

    def _app_returned(self, result: Any) -> None:
        self.coro = None
        if result is not None:
            logger.error("ASGI app returned %r for %s; it must return None", result, self._what())
        if self.error is not None:
            logger.error("ASGI app caught our error and went on; %s: %s", self._what(), self.error)
        if self.disconnected:
            return
        if not self.response_started:
            logger.error("ASGI app returned without starting a response for %s", self._what())
            self._send_500()
        elif not self.response_complete:
            logger.error("ASGI app returned without completing the response for %s", self._what())
            self._fail_response()

    def _app_failed(self, exc: BaseException) -> None:
        self.coro = None
        if self.disconnected and isinstance(exc, (ClientDisconnected, asyncio.CancelledError)):
            logger.debug("client went away during %s", self._what())
            return
        if isinstance(exc, asyncio.CancelledError):
            logger.warning("request cancelled: %s", self._what())
        else:
            logger.error("Exception in ASGI app for %s", self._what(), exc_info=exc)
        if self.disconnected:
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
            self.protocol.abort_response(self)

    def _send_500(self) -> None:
        """The canned 500 (with Connection: close) in place of the app's response."""
        self.status = 500
        self.response_started = True
        self.protocol.write(self.protocol.error_bytes(500))
        self._complete(False)

    def _what(self) -> str:
        scope = self.scope
        return f'"{scope["method"]} {scope["path"]}"'

    # ------------------------------------------------------------ ASGI receive()

    async def receive(self) -> dict[str, Any]:
        if self.expect_continue:
            self._send_continue()
        if not self.body and not self.body_complete and not self.disconnected and not self.response_complete:
            self.waiter = waiter = self.protocol.state.loop.create_future()
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
            self.protocol.flow.resume_reading(BODY)
        self.body_size = 0
        return {"type": "http.request", "body": data, "more_body": not self.body_complete}

    def _send_continue(self) -> None:
        # RFC 9110 §10.1.1: 100 only while the client may still be waiting to send the body,
        # and never after a final response started.
        self.expect_continue = False
        if not self.body and not self.body_complete and not self.response_started and not self.disconnected:
            self.protocol.write(CONTINUE_100)

    # ------------------------------------------------------------ ASGI send()

    async def send(self, message: dict[str, Any]) -> None:
        if self.disconnected:
            raise ClientDisconnected("the client closed the connection")
        try:
            kind = message["type"]
        except (TypeError, KeyError):
            raise self._invalid(f"ASGI message must be a dict with a 'type', got {message!r:.100}") from None
        protocol = self.protocol
        if kind == "http.response.body" and self.response_started and not self.response_complete:
            # The body path is inline: it runs for every body message of every response.
            body: bytes = message.get("body", b"")  # (bytearray and memoryview work too)
            more_body = message.get("more_body", False)
            if body.__class__ is not bytes and not isinstance(body, (bytearray, memoryview)):
                raise self._invalid(f"'body' must be bytes, got {type(body).__name__}")
            writer = protocol.writer
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
                out = protocol.out
                if out is not None and len(data) < FLUSH_THRESHOLD:
                    out.append(data)  # coalesced: written once at the end of this read
                    protocol.out_size += len(data)
                else:
                    protocol.write(data)
            if not more_body:
                # Complete (inline: once per response). Stats, access log, then the protocol.
                self.response_complete = True
                state = protocol.state
                seconds = _now() - self.started_at
                state.stats.record_response(self.status, seconds)
                if state.access_log is not None:
                    state.access_log.log(self.scope, self.status, self.sent_bytes, seconds)
                if self.waiter is not None:
                    self.wake()
                protocol.response_complete(self, writer.keep_alive and self.keep_alive)
        elif kind == "http.response.start" and not self.response_started:
            self._start(message)
        else:
            raise self._out_of_order(kind)
        flow = protocol.flow
        if flow.write_paused:
            await flow.drain()

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
        protocol = self.protocol
        scope = self.scope
        keep_alive = self.keep_alive
        if self.expect_continue and not self.body_complete and not self.body_size:
            # The client is waiting for 100 Continue that will not come now: it may send the
            # body anyway or not at all (RFC 9110 §10.1.1), so the connection cannot be reused.
            self.keep_alive = keep_alive = False
        state = protocol.state
        try:
            self.pending_head = state.head_cache.start(
                protocol.writer,
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
        self.response_complete = True
        protocol = self.protocol
        state = protocol.state
        seconds = _now() - self.started_at
        state.stats.record_response(self.status, seconds)
        access_log = state.access_log
        if access_log is not None:
            access_log.log(self.scope, self.status, self.sent_bytes, seconds)
        if self.waiter is not None:
            self.wake()
        protocol.response_complete(self, keep_alive and self.keep_alive)


@types.coroutine
def _drive(coro: Coroutine[Any, Any, Any], pending: Any) -> Generator[Any, Any, Any]:
    """Continue an already-started coroutine under a Task.

    A Task cannot adopt a coroutine that has already run (its first ``send(None)`` would
    resume the coroutine before the future it waits on is done), so this generator hands
    the Task the future the coroutine is waiting on, then forwards whatever the Task sends
    or throws (results, cancellation) into the coroutine: ``yield from`` with its first
    step already taken.
    """
    send = coro.send
    throw = coro.throw
    while True:
        try:
            value = yield pending
        except BaseException as exc:
            try:
                pending = throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                pending = send(value)
            except StopIteration as stop:
                return stop.value
