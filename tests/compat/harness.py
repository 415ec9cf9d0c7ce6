"""The differential harness: one app module under asynccluster and under uvicorn, the same requests to both.

    pair = server_pair("tests.compat.apps.plain:app")        # a module-scoped fixture named ``pair``

    def test_x(pair: Pair) -> None:
        reply = pair.same("GET", "/json")                    # sent to both; status, body, headers compared
        assert reply.status == 200                           # asynccluster's reply

Both servers are real processes started once per test module, each in its own process group:
``asynccluster run MOD:APP --workers 1 --port 0`` (tests/integration/conftest.py's ClusterProcess)
and ``uvicorn MOD:APP --port 0 --http httptools --loop uvloop``; each prints the port it got.
Every request has a 10 s deadline (httpx timeout), so a hang is a failure, never a stuck run.
Compared: status, body, and every response header except ``date`` and ``server`` (those are the
server's own, RFC 9110 §6.6.1 and §10.2.4) and ``expires`` (the app's clock), as name -> list
of values in order. Where asynccluster
differs on purpose, the test passes an :class:`OnPurpose` naming the header, our value and the spec;
a known difference not (yet) decided is a strict xfail that states both answers (issue 8).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest

from tests.integration.conftest import ClusterProcess

REQUEST_TIMEOUT = 10.0  # seconds: every request's deadline; a hang fails the test
START_TIMEOUT = 30.0  # seconds for a server to print its port and become ready
# date and server are the server's own; expires is the app's clock (Django's never_cache sets
# it to "now", which differs by a second between the two servers' answers now and then).
NOT_COMPARED = frozenset({"date", "server", "expires"})
T = TypeVar("T")


@dataclass(frozen=True)
class Reply:
    """One response, reduced to what is compared: status, headers (lower-case name -> values), body bytes."""

    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name)
        return None if values is None else ", ".join(values)

    @classmethod
    def of(cls, response: httpx.Response, *, body: bool = True) -> Reply:
        """The reply with this server's own address (absolute redirects, links) written as ``SERVER``.

        ``body=False``: only status and headers (a stream still being read).
        """
        address = f"{response.url.host}:{response.url.port}"
        headers: dict[str, list[str]] = {}
        for name, value in response.headers.multi_items():
            if name.lower() not in NOT_COMPARED:
                headers.setdefault(name.lower(), []).append(value.replace(address, "SERVER"))
        content = response.content.replace(address.encode(), b"SERVER") if body else b""
        return cls(response.status_code, headers, content)


@dataclass(frozen=True)
class OnPurpose:
    """asynccluster answers ``header`` with ``ours`` (None: absent) where uvicorn differs, because ``why``."""

    header: str
    ours: str | None
    why: str


class UvicornProcess(ClusterProcess):
    """``uvicorn MOD:APP --port 0 --http httptools --loop uvloop``, its port read from its log."""

    def __init__(self, app: str, *, env: dict[str, str] | None = None) -> None:
        args = [app, "--host", "127.0.0.1", "--port", "0", "--http", "httptools", "--loop", "uvloop"]
        super().__init__(args, env=env, command=[sys.executable, "-m", "uvicorn"])

    @property
    def port(self) -> int:
        if self._port is None:
            self._port = int(self.wait_for(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", START_TIMEOUT).group(1))
        return self._port

    def wait_ready(self, timeout: float = START_TIMEOUT) -> dict[int, int]:
        self.wait_for(r"Application startup complete|Uvicorn running on", timeout)
        return {0: self.pid}


@dataclass
class Server:
    """A running server process and a keep-alive httpx client to it."""

    name: str
    process: ClusterProcess
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT)

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, **kwargs: Any) -> Reply:
        return Reply.of(self.client.request(method, path, **kwargs))

    def read_events_then_leave(self, path: str, count: int = 3) -> Reply:
        """GET an event stream, read ``count`` ``data:`` lines, disconnect; the reply with those lines as body."""
        events: list[str] = []
        with self.client.stream("GET", path) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(line)
                if len(events) == count:
                    break
            head = Reply.of(response, body=False)
        return Reply(head.status, head.headers, "\n".join(events).encode())

    def raw(self, request: bytes, *, after_interim: bytes | None = None, half_close: bool = False) -> list[Reply]:
        """Send raw bytes on a fresh connection that the server closes after answering; the responses.

        ``after_interim``: sent once a 1xx response has arrived (``Expect: 100-continue``).
        ``half_close``: shut the sending side right after the request bytes (``SHUT_WR``).
        Responses must be Content-Length framed (these tests' apps are); interim ones included.
        """
        received = b""
        with socket.create_connection(("127.0.0.1", self.port), timeout=REQUEST_TIMEOUT) as connection:
            connection.sendall(request)
            if half_close:
                connection.shutdown(socket.SHUT_WR)
            if after_interim is not None:
                while b"\r\n\r\n" not in received:
                    received += recv_some(connection)
                connection.sendall(after_interim)
            while chunk := recv_some(connection):
                received += chunk
        return parse_responses(received)

    def stop(self) -> None:
        """SIGTERM by pid, wait; whatever is left of its process group is killed."""
        self.client.close()
        try:
            if self.process.proc.poll() is None:
                os.kill(self.process.pid, signal.SIGTERM)
                self.process.proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass  # gone already, or stuck: the group is killed below either way
        finally:
            self.process.kill_group()


@dataclass
class Pair:
    """asynccluster (``ours``) and uvicorn (``theirs``) serving the same app."""

    ours: Server
    theirs: Server

    @property
    def both(self) -> tuple[Server, Server]:
        return (self.ours, self.theirs)

    def each(self, action: Callable[[Server], T]) -> tuple[T, T]:
        """``action`` run against ours, then theirs."""
        return action(self.ours), action(self.theirs)

    def same(
        self,
        method: str,
        path: str,
        *,
        on_purpose: tuple[OnPurpose, ...] = (),
        normalize: Callable[[Reply], Reply] | None = None,
        **kwargs: Any,
    ) -> Reply:
        """Send the request to both, assert equal replies; asynccluster's reply (normalized).

        ``normalize`` masks what the app itself makes different per request (a CSRF token).
        """
        ours, theirs = self.each(lambda server: server.request(method, path, **kwargs))
        if normalize is not None:
            ours, theirs = normalize(ours), normalize(theirs)
        assert_same(f"{method} {path}", ours, theirs, on_purpose)
        return ours


def assert_same(what: str, ours: Reply, theirs: Reply, on_purpose: tuple[OnPurpose, ...] = ()) -> None:
    """Status, headers (but the on-purpose ones, checked against their stated value) and body equal."""
    ours_headers, theirs_headers = dict(ours.headers), dict(theirs.headers)
    for difference in on_purpose:
        got = ours_headers.pop(difference.header, None)
        uvicorn_value = theirs_headers.pop(difference.header, None)
        want = None if difference.ours is None else [difference.ours]
        assert got == want, f"{what}: asynccluster's {difference.header} is {got}, expected {want}: {difference.why}"
        assert uvicorn_value != want, f"{what}: uvicorn now agrees on {difference.header}: drop the OnPurpose"
    mine = (ours.status, ours_headers, ours.body)
    uvicorn = (theirs.status, theirs_headers, theirs.body)
    assert mine == uvicorn, f"{what} differs\n  asynccluster: {mine!r}\n  uvicorn:      {uvicorn!r}"


def recv_some(connection: socket.socket) -> bytes:
    """Up to 64 KiB; b"" when the server closed. A silent server fails after REQUEST_TIMEOUT (socket timeout)."""
    return connection.recv(65536)


def parse_responses(data: bytes) -> list[Reply]:
    """Content-Length framed HTTP/1.x responses (1xx without a body), as Replies without date/server."""
    replies: list[Reply] = []
    while data:
        head, separator, data = data.partition(b"\r\n\r\n")
        assert separator, f"incomplete response head: {head!r}"
        status_line, *fields = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers: dict[str, list[str]] = {}
        for line in fields:
            name, _, value = line.partition(":")
            if name.lower() not in NOT_COMPARED:
                headers.setdefault(name.lower(), []).append(value.strip())
        length = 0 if status < 200 else int(headers.get("content-length", ["0"])[0])
        replies.append(Reply(status, headers, data[:length]))
        data = data[length:]
    return replies


def start_pair(app: str, env: dict[str, str] | None = None) -> Pair:
    """Start both servers (concurrently: each pays its own start-up), wait until both serve."""
    # One hash seed for both: apps that build headers from sets (Werkzeug's Allow) then list them alike.
    env = {"PYTHONHASHSEED": "0", **(env or {})}
    processes = (ClusterProcess([app, "--workers", "1", "--port", "0"], env=env), UvicornProcess(app, env=env))
    try:
        for process in processes:
            process.wait_ready(START_TIMEOUT)
    except BaseException:
        for process in processes:
            process.kill_group()
        raise
    return Pair(Server("asynccluster", processes[0]), Server("uvicorn", processes[1]))


def server_pair(app: str, env: Callable[[pytest.TempPathFactory], dict[str, str]] | None = None) -> Any:
    """A module-scoped fixture ``pair``: ``app`` ("module:attr") under both servers; stopped by pid at the end."""

    @pytest.fixture(scope="module", name="pair")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
        pair = start_pair(app, env(tmp_path_factory) if env is not None else None)
        try:
            yield pair
        finally:
            for server in pair.both:
                server.stop()

    return fixture
