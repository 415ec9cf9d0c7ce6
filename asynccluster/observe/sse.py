"""Server-sent events for the dashboard (issue 12; the format is WHATWG HTML §9.2).

One :class:`Hub` per admin endpoint. The master encodes each second's frame once and
:meth:`Hub.broadcast` writes the same bytes to every stream without awaiting anyone: a
client that does not read (a background tab, a stalled network) would make the master
buffer without bound, so a stream whose unsent bytes pass ``max_buffer`` is dropped
(aborted: its buffer is freed at once); its EventSource reconnects and gets a fresh
snapshot. The number of streams is capped (``max_clients``); one over the cap is answered
503 at once. The admin endpoint's own connection caps (observe/admin.py) still apply: a
stream is one admin connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

log = logging.getLogger("asynccluster.admin")

MAX_CLIENTS = 8
MAX_BUFFER = 256 * 1024  # unsent bytes a stream may have before it is dropped
RETRY_MS = 2000  # how soon a dropped EventSource reconnects
HEAD = (
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/event-stream; charset=utf-8\r\n"
    "Cache-Control: no-store\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "Connection: close\r\n\r\n"
    f"retry: {RETRY_MS}\n\n"
).encode("latin-1")


def encode(event: str, data: Any) -> bytes:
    """One SSE message: ``event: NAME`` and the JSON on one ``data:`` line (JSON has no newlines)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


class Hub:
    def __init__(self, max_clients: int = MAX_CLIENTS, max_buffer: int = MAX_BUFFER) -> None:
        self.max_clients = max_clients
        self.max_buffer = max_buffer
        self.clients: set[asyncio.StreamWriter] = set()
        self.dropped = 0  # slow streams dropped since start

    @property
    def full(self) -> bool:
        return len(self.clients) >= self.max_clients

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bytes) -> None:
        """Send the head and ``first`` (the snapshot), then keep the stream until either side ends it.

        The caller checked :attr:`full`. Returns when the client closed, or was dropped.
        """
        writer.write(HEAD + first)
        self.clients.add(writer)
        try:
            # A client sends nothing more on a stream; reading tells us when it goes away.
            while not writer.is_closing():
                if not await reader.read(1024):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.clients.discard(writer)

    def broadcast(self, data: bytes) -> None:
        """Queue ``data`` on every stream; drop the streams that are too far behind."""
        for writer in list(self.clients):
            transport = writer.transport
            if writer.is_closing():
                self.clients.discard(writer)
                continue
            behind = transport.get_write_buffer_size()
            if behind > self.max_buffer:
                self.clients.discard(writer)
                self.dropped += 1
                log.info("dashboard: dropped a stream that stopped reading (%d KiB unsent)", behind // 1024)
                transport.abort()
                continue
            writer.write(data)

    def close(self) -> None:
        for writer in list(self.clients):
            writer.close()
        self.clients.clear()


__all__ = ["MAX_BUFFER", "MAX_CLIENTS", "Hub", "encode"]
