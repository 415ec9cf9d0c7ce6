"""The events :class:`asynccluster.http.parser.RequestParser` produces (re-exported there).

The contract with the worker is in this package's ``__init__`` docstring.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["RequestHead", "RequestSink"]


class RequestSink(Protocol):
    def on_request(self, head: RequestHead) -> None: ...

    def on_body(self, data: bytes) -> None: ...

    def on_request_complete(self) -> None: ...


class RequestHead:
    """One request's validated head, as handed to :meth:`RequestSink.on_request`."""

    __slots__ = (
        "chunked",
        "content_length",
        "expect_continue",
        "headers",
        "http_version",
        "keep_alive",
        "method",
        "path",
        "proxied",
        "query_string",
        "raw_path",
        "upgrade",
    )

    def __init__(
        self,
        method: str,
        raw_path: bytes,
        path: str,
        query_string: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        expect_continue: bool,
        content_length: int | None,
        chunked: bool,
        upgrade: bytes | None,
        proxied: bool = False,
    ) -> None:
        self.method = method
        self.raw_path = raw_path
        self.path = path
        self.query_string = query_string
        self.http_version = http_version
        self.headers = headers
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.content_length = content_length
        self.chunked = chunked
        self.upgrade = upgrade
        # A Forwarded / X-Forwarded-For / X-Forwarded-Proto field is among the headers.
        self.proxied = proxied

    def __repr__(self) -> str:
        return f"<RequestHead {self.method} {self.raw_path!r} HTTP/{self.http_version}>"
