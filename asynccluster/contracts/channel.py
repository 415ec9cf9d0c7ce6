"""The master<->worker channel: framed messages over a socketpair (both ends use this).

A frame is a 4-byte big-endian length and a body of at most :data:`MAX_FRAME` bytes; the body
is one message (contracts/messages.py: JSON with a ``type``). A frame that breaks these rules
cannot be resynchronised, so the channel closes, saying why; a well-framed body that is not a
valid message is dropped and logged (throttled), and the channel goes on.

:class:`Channel` runs on an event loop with ``add_reader``/``add_writer``: reading never blocks
the loop, and a worker that stops reading (blocked loop) only makes the master buffer a few
bytes. :func:`send_blocking` is for a worker that has no loop yet (no uvloop, import errors).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import Generic, TypeVar, cast

from asynccluster.contracts.messages import Message, MessageError, decode, encode

HEADER = struct.Struct(">I")
MAX_FRAME = 16 << 20  # a heartbeat is a few KiB; anything near this is a bug
READ_SIZE = 256 << 10
REPORT_INTERVAL = 10.0  # seconds between two log lines about refused or invalid messages

logger = logging.getLogger("asynccluster.channel")

In = TypeVar("In", bound=Message)  # what one end receives: messages.WorkerMessage or MasterMessage


class ChannelError(ValueError):
    """The peer sent something that is not a frame of ours (or we were about to)."""


def frame(message: Message) -> bytes:
    """One frame; ChannelError if it would exceed MAX_FRAME (the peer would drop the channel)."""
    body = encode(message)
    if len(body) > MAX_FRAME:
        raise ChannelError(f"a {message.kind!r} message of {len(body)} bytes exceeds the {MAX_FRAME}-byte frame limit")
    return HEADER.pack(len(body)) + body


class FrameDecoder:
    """Bytes in (any split) -> complete frame bodies out; ChannelError for an oversized frame."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        bodies: list[bytes] = []
        while len(self._buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buffer)
            if length > MAX_FRAME:
                raise ChannelError(f"frame of {length} bytes exceeds the limit")
            end = HEADER.size + length
            if len(self._buffer) < end:
                break
            bodies.append(bytes(self._buffer[HEADER.size : end]))
            del self._buffer[:end]
        return bodies


def send_blocking(sock: socket.socket, message: Message, timeout: float = 2.0) -> bool:
    """Send one message without an event loop; False if the peer is gone."""
    try:
        sock.settimeout(timeout)
        sock.sendall(frame(message))
        return True
    except OSError:
        return False


class Throttle:
    """One log line per ``interval`` seconds for a recurring problem, with the count since the
    last line (issue 9: nothing anyone can send floods the log). A stdlib twin of
    observe/streams.py ``Throttled``: this package imports nothing of ours."""

    def __init__(self, interval: float = REPORT_INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.count = 0  # events since the last line
        self._last: float | None = None

    def event(self, level: int, message: str) -> bool:
        """Count one event; log ``message`` if the interval has passed. True if logged."""
        self.count += 1
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            return False
        since = "" if self._last is None else f" ({self.count} times in the last {now - self._last:.0f} s)"
        logger.log(level, "%s%s", message, since)
        self._last, self.count = now, 0
        return True


class Channel(Generic[In]):
    """One end of a channel, driven by ``loop``'s reader/writer callbacks.

    ``accept``: the message types this end receives (messages.FROM_WORKER on the master's end,
    messages.FROM_MASTER on a worker's); a message of another type is dropped like an invalid one.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        on_message: Callable[[In], None],
        on_close: Callable[[], None],
        accept: frozenset[type[In]],
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._on_message = on_message
        self._on_close = on_close
        self._accept = accept
        self._decoder = FrameDecoder()
        self._outgoing = bytearray()
        self._closed = False
        self._refused = Throttle()  # oversized messages we were about to send
        self._invalid = Throttle()  # well-framed bodies the peer sent that are not messages
        self._fd = sock.fileno()
        sock.setblocking(False)
        loop.add_reader(self._fd, self._readable)

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, message: Message) -> bool:
        """Queue ``message``; False if the channel is already closed or it is too large."""
        if self._closed:
            return False
        try:
            data = frame(message)
        except ChannelError as exc:
            # Never silently (issue 9): the message is dropped, the channel stays up; a
            # heartbeat that is too big every second makes one line per interval, with a count.
            self._refused.event(logging.ERROR, f"not sent: {exc}")
            return False
        was_empty = not self._outgoing
        self._outgoing += data
        if was_empty:
            self._flush()
        return not self._closed

    def flush_blocking(self, timeout: float = 2.0) -> None:
        """Send what is still queued, waiting up to ``timeout`` seconds (a worker about to exit)."""
        if self._closed or not self._outgoing:
            return
        self._loop.remove_writer(self._fd)
        try:
            self._sock.settimeout(timeout)
            self._sock.sendall(self._outgoing)
            self._outgoing.clear()
        except OSError:
            pass
        finally:
            if self._sock.fileno() >= 0:
                self._sock.setblocking(False)

    def close(self) -> None:
        """Close without calling ``on_close`` (we are the ones closing)."""
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._sock.close()

    def drain(self) -> None:
        """Read everything already buffered (a peer that just exited sent its last words)."""
        for _ in range(1024):  # bounded: a dead peer sends nothing new
            if self._closed or not self._read_once():
                return

    def _readable(self) -> None:
        self._read_once()

    def _read_once(self) -> bool:
        """Read and dispatch one chunk; False when nothing was there (or the channel ended)."""
        try:
            data = self._sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:
            self._lost()
            return False
        try:
            bodies = self._decoder.feed(data)
        except ChannelError as exc:
            # The stream cannot be resynchronised: close it, but say why (issue 9).
            logger.error("channel closed: the peer sent a bad frame: %s", exc)
            self._lost()
            return False
        for body in bodies:
            try:
                message = decode(body, self._accept)
            except MessageError as exc:
                self._invalid.event(logging.ERROR, f"dropped an invalid message from the peer: {exc}")
                continue
            self._on_message(cast("In", message))  # decode() checked it is one of ``accept``
            if self._closed:
                return False
        return True

    def _flush(self) -> None:
        try:
            sent = self._sock.send(self._outgoing)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._lost()
            return
        del self._outgoing[:sent]
        if self._outgoing:
            self._loop.add_writer(self._fd, self._flush)
        else:
            self._loop.remove_writer(self._fd)

    def _lost(self) -> None:
        if self._closed:
            return
        self.close()
        self._on_close()
