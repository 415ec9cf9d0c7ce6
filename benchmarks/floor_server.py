"""The floor: uvloop + httptools answering every request with a canned response, no ASGI.

This is not a server anyone should run. It is the cost of the event loop, the socket calls
and the HTTP parser alone, so the benchmark can show how much of each server's CPU time per
request is spent above that floor (ASGI scope, app call, response framing).

    python benchmarks/floor_server.py --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from email.utils import formatdate
from typing import cast

import httptools
import uvloop

BODY = b"Hello, world!"


def canned_response() -> bytes:
    """The same bytes the hello app gets from a real server, with a current date header."""
    return (
        b"HTTP/1.1 200 OK\r\n"
        b"date: " + formatdate(usegmt=True).encode() + b"\r\n"
        b"server: floor\r\n"
        b"content-type: text/plain\r\n"
        b"content-length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
    )


class DateCache:
    """The response bytes, rebuilt once a second by a timer rather than per request."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.response = canned_response()
        self._loop = loop
        self._loop.call_later(1.0, self._refresh)

    def _refresh(self) -> None:
        self.response = canned_response()
        self._loop.call_later(1.0, self._refresh)


class FloorProtocol(asyncio.Protocol):
    """One connection: parse requests, queue one canned response each, write once per read."""

    __slots__ = ("_cache", "_parser", "_pending", "_transport")

    def __init__(self, cache: DateCache) -> None:
        self._cache = cache
        self._parser = httptools.HttpRequestParser(self)
        self._pending = 0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, so cast rather than check.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            assert self._transport is not None
            self._transport.close()
            return
        # Pipelined requests in one read get their responses coalesced into one write.
        if self._pending and self._transport is not None:
            self._transport.write(self._cache.response * self._pending)
            self._pending = 0

    def on_message_complete(self) -> None:
        self._pending += 1


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    cache = DateCache(loop)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(lambda: FloorProtocol(cache), host, port, backlog=2048)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
