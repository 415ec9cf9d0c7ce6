"""A raw HTTP/2 client for the worker tests: python-hyper's ``h2`` (client side) over an
asyncio stream, plus hand-made frames (hyperframe) for the malformed-input tests."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import h2.config
import h2.connection
import h2.events

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class RawH2:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.events: list[Any] = []
        self.closed = False

    @classmethod
    async def open(cls, port: int, context: ssl.SSLContext | None = None) -> RawH2:
        if context is not None:
            context.set_alpn_protocols(["h2"])
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1" if context else None
        )
        client = cls(reader, writer)
        client.conn.initiate_connection()
        await client.flush()
        return client

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)
            await self.writer.drain()

    def request(self, path: str, method: str = "GET", end_stream: bool = True, extra: Any = ()) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        headers = [(":method", method), (":path", path), (":scheme", "https"), (":authority", "t"), *extra]
        self.conn.send_headers(stream_id, headers, end_stream=end_stream)
        return stream_id

    async def read_events(self, timeout: float = 10.0) -> list[Any]:
        """Events of the next read (answers PINGs and SETTINGS as h2 does); [] at EOF."""
        data = await asyncio.wait_for(self.reader.read(65536), timeout)
        if not data:
            self.closed = True
            return []
        events = self.conn.receive_data(data)
        self.events += events
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        await self.flush()
        return events

    async def until(self, predicate: Any, timeout: float = 10.0) -> Any:
        """Read until an event satisfies ``predicate``; return it (AssertionError at EOF)."""
        for event in self.events:
            if predicate(event):
                return event
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            events = await self.read_events(max(0.1, deadline - loop.time()))
            if not events and self.closed:
                raise AssertionError(f"connection closed; events: {self.events}")
            for event in events:
                if predicate(event):
                    return event

    async def response(self, stream_id: int, timeout: float = 10.0) -> tuple[int, bytes]:
        """Status and body of a stream."""
        await self.until(lambda e: isinstance(e, h2.events.StreamEnded) and e.stream_id == stream_id, timeout)
        status = 0
        body = b""
        for event in self.events:
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                status = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                body += event.data
        return status, body

    async def read_until_closed(self, timeout: float = 10.0) -> bytes:
        """Raw bytes until the server closes (for the malformed-input tests)."""
        out = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), max(0.05, deadline - loop.time()))
            except (ConnectionResetError, ssl.SSLError):
                return out
            if not data:
                return out
            out += data

    def close(self) -> None:
        self.writer.close()
