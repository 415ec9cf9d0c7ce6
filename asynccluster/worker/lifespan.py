"""The ASGI ``lifespan`` scope: startup before serving, shutdown after draining (issue 2).

Modes (``--lifespan``):

- ``off``: never called;
- ``on``: the app must support it; any failure is a :class:`LifespanFailure`;
- ``auto``: lifespan is run if the app speaks it. An app that raises (or returns) before it
  ever called ``receive()`` does not: that is logged at info and the app is served without
  lifespan, like uvicorn; so is an app that answers the startup event with an HTTP or
  WebSocket message (an http-only app that reads its "request" first). But an app that took
  ``lifespan.startup`` and then raised before ``lifespan.startup.complete`` speaks lifespan
  and failed to start: :class:`LifespanFailure`, as with ``lifespan.startup.failed`` (which
  frameworks send for their own startup errors) and as with ``on``. Serving an app whose
  startup half ran would fail later and less clearly (no database pool, no config).

``state`` is the dict given to the app in the lifespan scope; request scopes get a shallow
copy of it (ASGI lifespan spec, "Lifespan State").
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any

from asynccluster.tracebacks import last_frames, summarise
from asynccluster.worker.asgi2 import ASGIApp
from asynccluster.worker.compat import create_task_in

logger = logging.getLogger("asynccluster.worker")

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}


class LifespanFailure(Exception):
    """Lifespan startup failed; ``str()`` says why. The worker exits with exitcodes.LIFESPAN."""


class NotALifespanMessage(RuntimeError):
    """The app sent a non-lifespan message (e.g. ``http.response.start``) in the lifespan scope."""


class Lifespan:
    """Runs the app's lifespan coroutine as one task and talks to it through two queues."""

    def __init__(self, app: ASGIApp, mode: str, *, shutdown_timeout: float = 30.0) -> None:
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}
        self.shutdown_timeout = shutdown_timeout
        self.supported = False  # startup completed: shutdown will be sent
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._asked_for_startup = False
        self._task: asyncio.Task[None] | None = None

    # -- the two halves the server calls

    async def startup(self) -> None:
        """Send ``lifespan.startup`` and wait for the answer; raise LifespanFailure on failure."""
        if self.mode == "off":
            return
        loop = asyncio.get_running_loop()
        # A context of its own: what the lifespan sets in contextvars stays in the lifespan task.
        self._task = create_task_in(loop, self._main(), contextvars.Context())
        self._task.add_done_callback(_retrieve_exception)
        await self._to_app.put({"type": "lifespan.startup"})
        reply = await self._reply("lifespan.startup")
        if reply["type"] == "lifespan.startup.complete":
            self.supported = True
            logger.debug("lifespan startup complete")
            return
        if reply["type"] == "lifespan.startup.failed":
            # The message first, then the last frames (a framework may send a whole traceback).
            said = summarise(str(reply.get("message") or "")) or "(no message)"
            raise LifespanFailure(f"lifespan startup failed: {said}")
        self._unsupported_or_failed(reply)

    async def shutdown(self) -> None:
        """Send ``lifespan.shutdown`` and wait (bounded) for the answer; failures are logged."""
        if not self.supported or self._task is None:
            return
        await self._to_app.put({"type": "lifespan.shutdown"})
        try:
            reply = await asyncio.wait_for(self._reply("lifespan.shutdown"), self.shutdown_timeout)
        except asyncio.TimeoutError:
            logger.error("lifespan shutdown did not complete within %.1fs; cancelling it", self.shutdown_timeout)
            self._task.cancel()
            return
        if reply["type"] == "lifespan.shutdown.failed":
            logger.error("lifespan shutdown failed: %s", reply.get("message") or "(no message)")
        elif reply["type"] != "lifespan.shutdown.complete":
            logger.error("lifespan shutdown: the app %s", _describe_end(reply))

    # -- internals

    def _unsupported_or_failed(self, reply: dict[str, Any]) -> None:
        """The app ended (raised or returned) or sent the wrong message instead of answering startup."""
        reason = _describe_end(reply)
        exc = reply.get("exception")
        if self.mode == "auto" and self._unsupported(reply):
            if self._asked_for_startup:
                # Took the startup event, then returned without a word or answered as if it were
                # an HTTP request: not a lifespan app, but say what it did.
                logger.warning("lifespan startup: the app %s; serving without lifespan", reason)
            else:
                logger.info("the app does not support the ASGI lifespan protocol (it %s); serving without it", reason)
            logger.debug("lifespan ended", exc_info=exc)
            return
        if exc is not None:
            logger.error("lifespan startup failed", exc_info=exc)
            if not isinstance(exc, asyncio.CancelledError):
                reason += "\n" + last_frames(exc)  # where, not only what (issue 11 item 7)
        raise LifespanFailure(f"lifespan startup failed: the app {reason}")

    def _unsupported(self, reply: dict[str, Any]) -> bool:
        """--lifespan auto: did the app show that it does not speak lifespan at all?"""
        if reply["type"] != "ended":
            return False  # it sent a lifespan message, just not the right one: a lifespan app's bug
        exc = reply.get("exception")
        # Raised before receive(), returned, or answered as if it were an HTTP request: unsupported.
        # Received lifespan.startup, then raised before answering: a startup failure.
        return not self._asked_for_startup or exc is None or isinstance(exc, NotALifespanMessage)

    async def _reply(self, phase: str) -> dict[str, Any]:
        """The app's next message, or a synthetic ``ended`` message if its task finished first."""
        assert self._task is not None
        getter = asyncio.ensure_future(self._from_app.get())
        await asyncio.wait({getter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            return getter.result()
        getter.cancel()
        if not self._from_app.empty():  # sent its answer, then returned, in the same step
            return self._from_app.get_nowait()
        exc = self._task.exception() if not self._task.cancelled() else asyncio.CancelledError()
        return {"type": "ended", "exception": exc, "phase": phase}

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": dict(ASGI_VERSION), "state": self.state}
        await self.app(scope, self._receive, self._send)

    async def _receive(self) -> dict[str, Any]:
        message = await self._to_app.get()
        if message["type"] == "lifespan.startup":
            self._asked_for_startup = True
        return message

    async def _send(self, message: dict[str, Any]) -> None:
        expected = {
            "lifespan.startup.complete",
            "lifespan.startup.failed",
            "lifespan.shutdown.complete",
            "lifespan.shutdown.failed",
        }
        kind = message.get("type") if isinstance(message, dict) else None
        if kind not in expected:
            error = RuntimeError if isinstance(kind, str) and kind.startswith("lifespan.") else NotALifespanMessage
            raise error(f"invalid ASGI lifespan message {kind!r}; expected one of {sorted(expected)}")
        await self._from_app.put(message)


def _retrieve_exception(task: asyncio.Task[None]) -> None:
    """Mark the lifespan task's exception as seen: it was reported through startup/shutdown."""
    if not task.cancelled():
        task.exception()


def _describe_end(reply: dict[str, Any]) -> str:
    """'raised ValueError: boom' / 'returned without answering' for the log and the failure."""
    if reply["type"] != "ended":
        return f"sent {reply['type']!r} out of order"
    exc = reply.get("exception")
    if exc is None:
        return f"returned without answering {reply['phase']}"
    if isinstance(exc, asyncio.CancelledError):
        return "was cancelled"
    return f"raised {type(exc).__name__}: {exc}"
