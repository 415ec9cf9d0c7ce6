"""Framed messages between the master and a worker, over a socketpair (both ends use this).

A frame is a 4-byte big-endian length and a UTF-8 JSON object with a ``type``. JSON rather
than pickle: the master never unpickles what a (possibly compromised or confused) app
process sends it.

Worker -> master: ``online``, ``ready``, ``heartbeat`` (stats, loop lag, RSS, CPU), ``stopping``
(with a ``reason``; the last one of a drain also ``forced``: connections force-closed at the
graceful timeout). Master -> worker: ``stop`` (with ``timeout``), ``reopen-logs``. Stacks are
not asked for here but with SIGUSR2 (watchdog.py): the worker that must dump them is the one
whose loop is blocked, and a blocked loop cannot read the channel; faulthandler answers the
signal from C.

:class:`Channel` runs on an event loop with ``add_reader``/``add_writer``: reading never
blocks the loop, and a worker that stops reading (blocked loop) only makes the master buffer
a few bytes. :func:`send_blocking` is for a worker that has no loop yet (import errors).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any

from asynccluster.observe.streams import Throttled

Message = dict[str, Any]
HEADER = struct.Struct(">I")
MAX_FRAME = 16 << 20  # a heartbeat is a few KiB; anything near this is a bug
READ_SIZE = 256 << 10


logger = logging.getLogger("asynccluster.channel")


class ChannelError(Exception):
    """The peer sent something that is not a frame of ours (or we were about to)."""


def encode(message: Message) -> bytes:
    """One frame; ChannelError if it would exceed MAX_FRAME (the peer would drop the channel)."""
    body = json.dumps(message, separators=(",", ":"), default=str).encode()
    if len(body) > MAX_FRAME:
        raise ChannelError(
            f"a {message.get('type')!r} message of {len(body)} bytes exceeds the {MAX_FRAME}-byte frame limit"
        )
    return HEADER.pack(len(body)) + body


class FrameDecoder:
    """Bytes in (any split) -> complete messages out."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        messages: list[Message] = []
        while len(self._buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buffer)
            if length > MAX_FRAME:
                raise ChannelError(f"frame of {length} bytes exceeds the limit")
            end = HEADER.size + length
            if len(self._buffer) < end:
                break
            body = bytes(self._buffer[HEADER.size : end])
            del self._buffer[:end]
            try:
                message = json.loads(body)
            except ValueError as exc:
                raise ChannelError(f"frame is not JSON: {exc}") from None
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                raise ChannelError("frame is not a message object with a 'type'")
            messages.append(message)
        return messages


def send_blocking(sock: socket.socket, message: Message, timeout: float = 2.0) -> bool:
    """Send one message without an event loop; False if the peer is gone."""
    try:
        sock.settimeout(timeout)
        sock.sendall(encode(message))
        return True
    except OSError:
        return False


class Channel:
    """One end of a channel, driven by ``loop``'s reader/writer callbacks."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        on_message: Callable[[Message], None],
        on_close: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._on_message = on_message
        self._on_close = on_close
        self._decoder = FrameDecoder()
        self._outgoing = bytearray()
        self._closed = False
        self._refused = Throttled(logger)  # oversized messages: one error line per 10 s
        self._fd = sock.fileno()
        sock.setblocking(False)
        loop.add_reader(self._fd, self._readable)

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, message: Message) -> bool:
        """Queue ``message``; False if the channel is already closed."""
        if self._closed:
            return False
        try:
            frame = encode(message)
        except ChannelError as exc:
            # Never silently (issue 9): the message is dropped, the channel stays up; a
            # heartbeat that is too big every second makes one line per interval, with a count.
            self._refused.event(logging.ERROR, f"not sent: {exc}")
            return False
        was_empty = not self._outgoing
        self._outgoing += frame
        if was_empty:
            self._flush()
        return not self._closed

    def flush_blocking(self, timeout: float = 2.0) -> None:
        """Send what is still queued, waiting up to ``timeout`` (a worker about to exit)."""
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
            messages = self._decoder.feed(data)
        except ChannelError as exc:
            # The stream cannot be resynchronised: close it, but say why (issue 9).
            logger.error("channel closed: the peer sent a bad frame: %s", exc)
            self._lost()
            return False
        for message in messages:
            self._on_message(message)
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
