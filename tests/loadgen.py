"""A bounded asyncio HTTP/1.1 load generator that counts every failed request (issue 4).

It keeps K keep-alive connections (sequential GETs on each) and M "new connection per
request" loops busy at once, against a server on the loopback interface, and stops at
whichever comes first: ``max_requests`` requests issued, ``duration`` seconds, or
:meth:`LoadGenerator.stop`.

Responses are parsed with h11, a strict independent parser: a malformed status line, a body
shorter than its Content-Length or a connection closed mid-response are failures, as are
connection refused/reset, timeouts and non-2xx statuses.

It behaves like a real client and no better (RFC 9112 §9.3.1): a GET that failed on a
*reused* keep-alive connection before any byte of its response arrived (the server closed
or reset a connection it considered idle) is retried once on a new connection, and the
retry is counted separately in ``retried``. A request on a fresh connection is never
retried. ``Connection: close`` from the server is honoured: the client closes and
reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import h11

LOOPBACK = ("127.0.0.1", "::1", "localhost")
READ_SIZE = 65536
MAX_EXAMPLES = 20  # failure descriptions kept for the test report

# Failures after which RFC 9112 §9.3.1 lets a client retry an idempotent request: the
# connection was closed or reset and not a single byte of the response had arrived.
RETRYABLE = frozenset({"closed", "reset"})


@dataclass
class LoadResult:
    """What the load generator saw; live while it runs, final once it returns."""

    ok: int = 0
    failed: int = 0
    retried: int = 0  # requests re-sent on a new connection after a reused one failed first
    failures: Counter[str] = field(default_factory=Counter)  # failed requests by kind
    retry_causes: Counter[str] = field(default_factory=Counter)  # what made a retry necessary
    statuses: Counter[int] = field(default_factory=Counter)
    pids: Counter[str] = field(default_factory=Counter)  # responses per value of the pid header
    connections: int = 0  # connections opened
    server_closes: int = 0  # responses that carried Connection: close (honoured)
    elapsed: float = 0.0
    examples: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        """Requests whose outcome is final (a retried request counts once)."""
        return self.ok + self.failed

    def summary(self) -> str:
        kinds = ", ".join(f"{kind}={count}" for kind, count in self.failures.most_common()) or "-"
        causes = ", ".join(f"{kind}={count}" for kind, count in self.retry_causes.most_common()) or "-"
        return (
            f"{self.requests} requests in {self.elapsed:.1f}s: ok={self.ok} failed={self.failed} ({kinds}) "
            f"retried={self.retried} ({causes}) connections={self.connections} "
            f"server_closes={self.server_closes} pids={len(self.pids)}"
        )


@dataclass
class _Outcome:
    """One request's fate on one connection."""

    status: int = 0
    pid: str | None = None
    keep_alive: bool = False
    failure: str | None = None  # a kind, or None if the response was complete and 2xx
    got_bytes: bool = False  # whether any byte of the response had arrived
    detail: str = ""


class _Connection:
    """One client connection: a stream pair plus h11's view of it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.served = 0  # complete responses received on this connection

    def close(self) -> None:
        self.writer.close()


class LoadGenerator:
    """Run the load with :meth:`run`; read :attr:`result` at any time."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        keepalive: int = 4,
        fresh: int = 2,
        max_requests: int = 100_000,
        duration: float = 30.0,
        timeout: float = 5.0,
        path: str = "/",
        pid_header: str = "x-pid",
        close_fresh: bool = True,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if host not in LOOPBACK:
            raise ValueError(f"the load generator only targets the loopback interface, not {host!r}")
        if keepalive < 0 or fresh < 0 or keepalive + fresh == 0:
            raise ValueError("need at least one keep-alive or fresh-connection loop")
        self.host = host
        self.port = port
        self.keepalive = keepalive
        self.fresh = fresh
        self.max_requests = max_requests
        self.duration = duration
        self.timeout = timeout
        self.path = path
        self.pid_header = pid_header.lower().encode()
        self.close_fresh = close_fresh  # send Connection: close on fresh-connection requests
        self.tls = tls  # a client SSLContext: the load goes over HTTPS (issue 13)
        self.result = LoadResult()
        self._issued = 0
        self._deadline = float("inf")  # set by run()
        self._stopped = asyncio.Event()
        self._seq = 0  # responses completed, for mark()/pids_since()
        self._pid_last_seq: dict[str, int] = {}

    # ------------------------------------------------------------ control

    async def run(self) -> LoadResult:
        """Run every loop until the request budget, the duration or stop() ends the load."""
        started = time.monotonic()
        self._deadline = started + self.duration
        loops = [self._keepalive_loop() for _ in range(self.keepalive)]
        loops += [self._fresh_loop() for _ in range(self.fresh)]
        try:
            await asyncio.gather(*loops)
        finally:
            self.result.elapsed = time.monotonic() - started
        return self.result

    def stop(self) -> None:
        """Issue no new request; requests in flight complete (bounded by ``timeout``)."""
        self._stopped.set()

    def mark(self) -> int:
        """A point in the response sequence, for :meth:`pids_since`."""
        return self._seq

    def pids_since(self, mark: int) -> set[str]:
        """Pids that answered at least one request completed after ``mark``."""
        return {pid for pid, seq in self._pid_last_seq.items() if seq > mark}

    async def wait_for_responses(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` more responses completed (deadline-bounded); False on timeout."""
        target = self._seq + count
        deadline = time.monotonic() + timeout
        while self._seq < target:
            if time.monotonic() >= deadline or self._done():
                return False
            await asyncio.sleep(0.01)
        return True

    def _take_budget(self) -> bool:
        """Claim one request from the budget, or say the load is over."""
        if self._done():
            return False
        self._issued += 1
        return True

    def _done(self) -> bool:
        return self._stopped.is_set() or self._issued >= self.max_requests or time.monotonic() >= self._deadline

    # ------------------------------------------------------------ the two kinds of client loop

    async def _keepalive_loop(self) -> None:
        conn: _Connection | None = None
        try:
            while self._take_budget():
                if conn is None:
                    conn, failure = await self._open()
                    if conn is None:
                        self._record(_Outcome(failure=failure, detail="connect"))
                        continue
                outcome = await self._exchange(conn, close=False)
                if outcome.failure in RETRYABLE and not outcome.got_bytes and conn.served > 0:
                    conn.close()
                    conn, outcome = await self._retry(outcome)
                elif outcome.failure is not None or not outcome.keep_alive:
                    conn.close()
                    conn = None
                self._record(outcome)
        finally:
            if conn is not None:
                conn.close()

    async def _retry(self, first: _Outcome) -> tuple[_Connection | None, _Outcome]:
        """Re-send the request once on a new connection (RFC 9112 §9.3.1)."""
        self.result.retried += 1
        self.result.retry_causes[first.failure or "?"] += 1
        conn, failure = await self._open()
        if conn is None:
            return None, _Outcome(failure=failure, detail="connect (retry)")
        outcome = await self._exchange(conn, close=False)
        if outcome.failure is not None or not outcome.keep_alive:
            conn.close()
            return None, outcome
        return conn, outcome

    async def _fresh_loop(self) -> None:
        while self._take_budget():
            conn, failure = await self._open()
            if conn is None:
                self._record(_Outcome(failure=failure, detail="connect"))
                continue
            try:
                self._record(await self._exchange(conn, close=self.close_fresh))
            finally:
                conn.close()

    # ------------------------------------------------------------ one connection, one request

    async def _open(self) -> tuple[_Connection | None, str]:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host,
                    self.port,
                    limit=READ_SIZE,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls is not None else None,
                ),
                self.timeout,
            )
        except asyncio.TimeoutError:
            return None, "connect_timeout"
        except OSError as exc:
            return None, _os_error_kind(exc, connecting=True)
        self.result.connections += 1
        return _Connection(reader, writer), ""

    async def _exchange(self, conn: _Connection, close: bool) -> _Outcome:
        outcome = _Outcome()
        try:
            await asyncio.wait_for(self._send_and_receive(conn, close, outcome), self.timeout)
        except asyncio.TimeoutError:
            outcome.failure, outcome.detail = "timeout", f"no complete response in {self.timeout}s"
        except h11.RemoteProtocolError as exc:
            outcome.failure = "truncated" if outcome.got_bytes and "peer closed" in str(exc) else "malformed"
            outcome.detail = str(exc)
        except OSError as exc:
            outcome.failure, outcome.detail = _os_error_kind(exc, connecting=False), repr(exc)
        if outcome.failure == "reset" and outcome.got_bytes:
            outcome.failure = "reset_mid_response"
        return outcome

    async def _send_and_receive(self, conn: _Connection, close: bool, outcome: _Outcome) -> None:
        headers = [("Host", f"{self.host}:{self.port}"), ("User-Agent", "asynccluster-loadgen")]
        if close:
            headers.append(("Connection", "close"))
        request = conn.h11.send(h11.Request(method="GET", target=self.path, headers=headers)) or b""
        conn.writer.write(request + (conn.h11.send(h11.EndOfMessage()) or b""))
        await conn.writer.drain()
        while True:
            event = conn.h11.next_event()
            if event is h11.NEED_DATA:
                chunk = await conn.reader.read(READ_SIZE)
                if not chunk and not outcome.got_bytes:
                    outcome.failure, outcome.detail = "closed", "connection closed before any byte of the response"
                    return
                outcome.got_bytes = outcome.got_bytes or bool(chunk)
                conn.h11.receive_data(chunk)
            elif isinstance(event, h11.Response):
                outcome.status = event.status_code
                outcome.pid = _header(event.headers, self.pid_header)
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise h11.RemoteProtocolError("peer closed connection mid-response")
        conn.served += 1
        if not 200 <= outcome.status < 300:
            outcome.failure, outcome.detail = f"status_{outcome.status}", ""
        outcome.keep_alive = conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE
        if outcome.keep_alive:
            conn.h11.start_next_cycle()
        elif not close:
            self.result.server_closes += 1

    # ------------------------------------------------------------ bookkeeping

    def _record(self, outcome: _Outcome) -> None:
        result = self.result
        if outcome.status:
            result.statuses[outcome.status] += 1
        if outcome.failure is None:
            result.ok += 1
            self._seq += 1
            if outcome.pid is not None:
                result.pids[outcome.pid] += 1
                self._pid_last_seq[outcome.pid] = self._seq
            return
        result.failed += 1
        result.failures[outcome.failure] += 1
        if len(result.examples) < MAX_EXAMPLES:
            result.examples.append(f"{outcome.failure}: {outcome.detail}")


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:  # h11 lower-cases header names
            return value.decode("latin-1")
    return None


def _os_error_kind(exc: OSError, *, connecting: bool) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "connect_reset" if connecting else "reset"
    name = errno.errorcode.get(exc.errno or 0, "unknown")
    return f"{'connect_' if connecting else ''}oserror_{name}"


async def run_load(host: str, port: int, **options: Any) -> LoadResult:
    """Run a :class:`LoadGenerator` to completion with ``options``; return its result."""
    return await LoadGenerator(host, port, **options).run()


@contextlib.asynccontextmanager
async def load_running(host: str, port: int, **options: Any) -> AsyncIterator[LoadGenerator]:
    """Run load in the background for the body of an ``async with``; stop it on exit.

    ``async with load_running(host, port) as gen: ...`` — after the block, ``gen.result``
    is final.
    """
    generator = LoadGenerator(host, port, **options)
    task = asyncio.ensure_future(generator.run())
    try:
        yield generator
    finally:
        generator.stop()
        await task
