"""Read and write back-pressure for one connection (issue 2).

Reading is paused for two independent reasons, and resumed only when neither holds:

- ``PIPELINE``: more pipelined requests are queued than ``--limit-pipeline`` allows, so the
  parser must not be fed more heads we would have to buffer;
- ``BODY``: a request body piece is buffered beyond :data:`BODY_HIGH_WATER` because the app is
  not calling ``receive()`` (or has not started yet);
- ``WRITE``: the transport's write buffer is above its high-water mark: a client that sends
  (pipelined requests, WebSocket messages) but does not read what we answer must not make us
  buffer responses without bound (issue 9 item 6). Reading resumes once it drains.

Writing: the transport calls ``pause_writing``/``resume_writing`` around its buffer's water
marks; ``send()`` awaits :meth:`FlowControl.drain` while paused, so an app streaming a large
response cannot outrun a slow client.
"""

from __future__ import annotations

import asyncio

# Bytes of request body buffered for one request before reading pauses (uvicorn uses 64 KiB too:
# large enough that a streaming upload rarely pauses, small enough to bound memory per connection).
BODY_HIGH_WATER = 65536

# Bytes of response coalesced during one read before they are written anyway: a large
# response written eagerly must reach the transport so its write back-pressure can engage.
FLUSH_THRESHOLD = 65536

PIPELINE = 1
BODY = 2
WRITE = 4


class FlowControl:
    """Pause reasons for reading, and the write-side drain waiters."""

    __slots__ = ("_drain_waiters", "_transport", "read_paused_for", "write_paused")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.read_paused_for = 0  # bit set of PIPELINE / BODY
        self.write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []

    @property
    def read_paused(self) -> bool:
        return self.read_paused_for != 0

    def pause_reading(self, reason: int) -> None:
        if not self.read_paused_for:
            try:
                self._transport.pause_reading()
            except RuntimeError:  # transport closing: nothing left to pause
                pass
        self.read_paused_for |= reason

    def resume_reading(self, reason: int) -> None:
        if not self.read_paused_for & reason:
            return
        self.read_paused_for &= ~reason
        if not self.read_paused_for:
            try:
                self._transport.resume_reading()
            except RuntimeError:
                pass

    # -- write side (called by the protocol from the transport's callbacks)

    def pause_writing(self) -> None:
        self.write_paused = True
        self.pause_reading(WRITE)

    def resume_writing(self) -> None:
        """Writable again (or the connection is gone): wake every ``send()`` waiting in drain."""
        self.write_paused = False
        self.resume_reading(WRITE)
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its low-water mark."""
        if not self.write_paused:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        await waiter


class WriteFlowProtocol(asyncio.Protocol):
    """A protocol whose transport's write water marks drive ``self.flow`` (HTTP and WebSocket
    connections alike: their ``send()`` awaits :meth:`FlowControl.drain`)."""

    __slots__ = ()

    flow: FlowControl  # set by the subclass once the transport is known

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()
