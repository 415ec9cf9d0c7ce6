"""Every response the worker tests capture is parsed by h11 as an independent, strict client.

h11 must know what was requested (HEAD has no body; HTTP/1.0 changes framing), so the helper
"sends" the matching requests into its client state machine before reading each response.
A framing mistake (bad chunking, wrong Content-Length, a body on 204/304/HEAD, junk after a
response) raises ``h11.RemoteProtocolError`` and fails the test.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import h11


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    http_version: bytes = b"1.1"
    informational: list[int] = field(default_factory=list)  # e.g. [100] for 100 Continue

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_list(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]


class StrictClient:
    """Feeds received bytes to an h11 client; collects complete responses in order."""

    def __init__(self, methods: list[str], http_version: str = "1.1") -> None:
        self.methods = list(methods)
        self.http_version = http_version
        self.conn = h11.Connection(h11.CLIENT)
        self.responses: list[Response] = []
        self.closed_by_server = False
        self._current: Response | None = None
        self._informational: list[int] = []
        self._send_request(0)

    def _send_request(self, index: int) -> None:
        # h11 only speaks HTTP/1.1 as a client. For HTTP/1.0 exchanges that is still a strict
        # check of the response: its framing (Content-Length, or close-delimited) must parse.
        request = h11.Request(method=self.methods[index], target="/", headers=[("host", "test")])
        self.conn.send(request)
        self.conn.send(h11.EndOfMessage())

    @property
    def done(self) -> bool:
        return len(self.responses) == len(self.methods)

    def feed(self, data: bytes) -> None:
        """Feed bytes (b"" = EOF) and parse every complete event they allow."""
        self.conn.receive_data(data)
        if data == b"":
            self.closed_by_server = True
        self._pump()

    def _pump(self) -> None:
        while not self.done:
            event = self.conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.InformationalResponse):
                self._informational.append(event.status_code)
            elif isinstance(event, h11.Response):
                self._current = Response(
                    event.status_code,
                    list(event.headers),
                    http_version=event.http_version,
                    informational=self._informational,
                )
                self._informational = []
            elif isinstance(event, h11.Data):
                assert self._current is not None
                self._current.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert self._current is not None
                self.responses.append(self._current)
                self._current = None
                if not self.done:
                    if self.conn.our_state is h11.MUST_CLOSE or self.conn.their_state is h11.MUST_CLOSE:
                        return  # the server closes after this one: no more responses can follow
                    self.conn.start_next_cycle()
                    self._send_request(len(self.responses))
            elif isinstance(event, h11.ConnectionClosed):
                return


def parse_responses(data: bytes, methods: list[str], *, http_version: str = "1.1", eof: bool = True) -> list[Response]:
    """Parse a complete capture (e.g. everything read until the server closed)."""
    client = StrictClient(methods, http_version)
    client.feed(data)
    if eof:
        client.feed(b"")
    return client.responses


async def read_responses(
    reader: asyncio.StreamReader,
    methods: list[str],
    *,
    http_version: str = "1.1",
    timeout: float = 5.0,
) -> tuple[list[Response], bool]:
    """Read until ``len(methods)`` responses are complete or the server closes.

    Returns the responses and whether the server closed the connection (EOF seen).
    """
    client = StrictClient(methods, http_version)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not client.done:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError(f"got {len(client.responses)} of {len(methods)} responses in {timeout}s")
        chunk = await asyncio.wait_for(reader.read(65536), remaining)
        client.feed(chunk)
        if not chunk:
            break
    return client.responses, client.closed_by_server


async def read_until_closed(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection (bounded by ``timeout``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    chunks = []
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError("the server did not close the connection in time")
        try:
            chunk = await asyncio.wait_for(reader.read(65536), remaining)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
