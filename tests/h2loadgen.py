"""A bounded HTTP/2 load generator that counts every failed request (issue 13).

K connections (TLS with ALPN ``h2``, or h2c with prior knowledge), each keeping S GET streams
in flight, until ``max_requests``, ``duration`` or :meth:`H2LoadGenerator.stop`. Built on
python-hyper's ``h2`` (client side), with the retry rule of RFC 9113 §8.1.4 and §6.8 and no
more: a stream with an id above the last one a GOAWAY names, or refused with REFUSED_STREAM,
was not processed, and is re-sent on a new connection (counted in ``retried``). Anything else
that does not end in a complete 2xx response is a failure: a reset, a connection closed or
a GOAWAY with the stream unanswered though the server said it would process it, a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

READ_SIZE = 65536


@dataclass
class H2LoadResult:
    ok: int = 0
    failed: int = 0
    retried: int = 0  # unprocessed streams (above a GOAWAY's last id, or REFUSED_STREAM), re-sent
    failures: Counter[str] = field(default_factory=Counter)
    pids: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    goaways: int = 0
    examples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        kinds = ", ".join(f"{k}={n}" for k, n in self.failures.most_common()) or "-"
        return (
            f"{self.ok + self.failed} requests: ok={self.ok} failed={self.failed} ({kinds}) retried={self.retried} "
            f"connections={self.connections} goaways={self.goaways} pids={len(self.pids)}"
        )


class H2LoadGenerator:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        connections: int = 2,
        streams: int = 4,
        max_requests: int = 100_000,
        duration: float = 60.0,
        timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
        path: str = "/",
    ) -> None:
        assert host in ("127.0.0.1", "::1", "localhost"), "loopback only"
        self.host, self.port = host, port
        self.connections, self.streams = connections, streams
        self.max_requests, self.duration, self.timeout = max_requests, duration, timeout
        self.tls, self.path = tls, path
        if tls is not None:
            tls.set_alpn_protocols(["h2"])
        self.result = H2LoadResult()
        self._issued = 0
        self._retry: list[int] = []  # tokens of requests to re-send (unprocessed)
        self._stopped = asyncio.Event()
        self._deadline = 0.0
        self._responses = 0

    async def run(self) -> H2LoadResult:
        self._deadline = time.monotonic() + self.duration
        await asyncio.gather(*(self._connection_loop() for _ in range(self.connections)))
        return self.result

    def stop(self) -> None:
        self._stopped.set()

    async def wait_for_responses(self, count: int, timeout: float) -> bool:
        target = self._responses + count
        deadline = time.monotonic() + timeout
        while self._responses < target:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def _done(self) -> bool:
        return self._stopped.is_set() or time.monotonic() >= self._deadline or self._issued >= self.max_requests

    def _next_request(self) -> bool:
        if self._retry:
            self._retry.pop()
            return True
        if self._done():
            return False
        self._issued += 1
        return True

    def _fail(self, kind: str, detail: str) -> None:
        self.result.failed += 1
        self.result.failures[kind] += 1
        if len(self.result.examples) < 20:
            self.result.examples.append(f"{kind}: {detail}")

    async def _connection_loop(self) -> None:
        while self._retry or not self._done():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        self.host, self.port, ssl=self.tls, server_hostname=self.host if self.tls else None
                    ),
                    self.timeout,
                )
            except (OSError, asyncio.TimeoutError) as exc:
                if self._next_request():
                    self._fail("connect", repr(exc))
                continue
            self.result.connections += 1
            try:
                await self._serve_connection(reader, writer)
            finally:
                writer.close()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        pending: dict[int, dict[str, Any]] = {}
        last_ok: int | None = None  # the GOAWAY's last stream id, once received
        authority = f"{self.host}:{self.port}"
        headers = [(":method", "GET"), (":path", self.path), (":scheme", "https" if self.tls else "http"),
                   (":authority", authority)]  # fmt: skip
        while True:
            while last_ok is None and len(pending) < self.streams and self._next_request():
                stream_id = conn.get_next_available_stream_id()
                conn.send_headers(stream_id, headers, end_stream=True)
                pending[stream_id] = {"status": 0, "pid": None}
            if not pending:
                return
            writer.write(conn.data_to_send())
            try:
                data = await asyncio.wait_for(reader.read(READ_SIZE), self.timeout)
            except asyncio.TimeoutError:
                for _ in pending:
                    self._fail("timeout", f"no response in {self.timeout}s")
                return
            except (OSError, ssl.SSLError) as exc:
                data = b""
                detail = repr(exc)
            else:
                detail = "closed"
            if not data:  # closed: unprocessed streams are retried, the others failed
                self._settle(pending, last_ok, "closed", detail)
                return
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                self._settle(pending, last_ok, "protocol_error", repr(exc))
                return
            for event in events:
                last_ok = self._on_event(conn, event, pending, last_ok)

    def _on_event(self, conn: Any, event: Any, pending: dict[int, dict[str, Any]], last_ok: int | None) -> int | None:
        if isinstance(event, h2.events.ResponseReceived) and event.stream_id in pending:
            fields = dict(event.headers)
            pending[event.stream_id]["status"] = int(fields[b":status"])
            pending[event.stream_id]["pid"] = fields.get(b"x-pid")
        elif isinstance(event, h2.events.DataReceived):
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and event.stream_id in pending:
            info = pending.pop(event.stream_id)
            self._responses += 1
            if 200 <= info["status"] < 300:
                self.result.ok += 1
                if info["pid"]:
                    self.result.pids[info["pid"].decode()] += 1
            else:
                self._fail("status", str(info["status"]))
        elif isinstance(event, h2.events.StreamReset) and event.stream_id in pending:
            pending.pop(event.stream_id)
            if event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM:
                self._retry_one()
            else:
                self._fail("reset", str(event.error_code))
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.result.goaways += 1
            last_ok = event.last_stream_id if event.last_stream_id is not None else 0
            for stream_id in [s for s in pending if s > last_ok]:
                pending.pop(stream_id)
                self._retry_one()
        return last_ok

    def _retry_one(self) -> None:
        self.result.retried += 1
        self._retry.append(1)

    def _settle(self, pending: dict[int, dict[str, Any]], last_ok: int | None, kind: str, detail: str) -> None:
        for stream_id in pending:
            if last_ok is not None and stream_id > last_ok:
                self._retry_one()
            else:
                self._fail(kind, detail)
        pending.clear()


@contextlib.asynccontextmanager
async def h2_load_running(host: str, port: int, **options: Any) -> AsyncIterator[H2LoadGenerator]:
    generator = H2LoadGenerator(host, port, **options)
    task = asyncio.ensure_future(generator.run())
    try:
        yield generator
    finally:
        generator.stop()
        await task
