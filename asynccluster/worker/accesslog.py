"""The access log: one line per response on the ``asynccluster.access`` logger (issue 2).

The line is ``--access-log-format``, a %-style format over these fields (documented in
config.py's help as well):

    client        "host:port" of the client (after trusted proxy headers), or "-"
    method        request method
    full_path     path, then "?" and query if there is one (what uvicorn logs)
    path          the path (root_path included), percent-quoted
    query         the query string, percent-quoted ("" if none)
    http_version  "1.1" or "1.0"
    status        response status (int)
    bytes         response body bytes sent (int)
    duration_ms   request head to last response byte, in milliseconds (float)
    worker        the worker id, or "-" outside a cluster

A log line cannot be forged (issue 8 item 7): path and query are written percent-quoted
(UTF-8), keeping only the characters of RFC 3986 paths and queries that need no quoting, so
'"', spaces, control characters and line separators (U+0085, U+2028, ...) from a request
can neither close the quoted request field nor start a new line, in text or JSON. The path
is the decoded ``scope["path"]`` quoted again (as uvicorn does), so what an app routes on is
what the log shows; method (an HTTP token), client (an IP address) and version need nothing.

Cost: when ``--no-access-log`` is given the protocol holds ``None`` instead of an
:class:`AccessLog` and pays one attribute test per request. When on, in a worker process
(whose logging asynccluster.logs set up) the whole line is one %-format over the fields
dict, prefixed like every other line of the worker (time, level, tag; JSON: the object
around the formatted message) and appended to the handlers' buffers, which are written in
batches (asynccluster.logs: a few writes a second, and at exit), instead of a LogRecord, a
formatter pass and a write and flush per line. Where the access logger's records may go
elsewhere (tests, an embedding program's own logging), records are logged as usual.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from asynccluster.config import Config
from asynccluster.settingtypes import ACCESS_LOG_SAMPLE
from asynccluster.worker.logqueue import LineQueue, queued_line_writer

ACCESS_LOGGER = "asynccluster.access"
DEFAULT_FORMAT: str = Config.access_log_format  # declared once, in Config
_SAMPLE = ACCESS_LOG_SAMPLE

logger = logging.getLogger("asynccluster.worker")

# RFC 3986 §3.3 pchar and "/" (and for the query §3.4 "?" and "%": its escapes are kept as
# sent); anything else in a path or query is percent-quoted before it reaches the log.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?%"
_PATH_UNSAFE = re.compile(r"[^A-Za-z0-9/:@!$&'()*+,;=\-._~]")
_QUERY_UNSAFE = re.compile(r"[^A-Za-z0-9/:@!$&'()*+,;=\-._~?%]")


def quoted_path(path: str) -> str:
    """``path`` percent-quoted for the log (UTF-8); unchanged when it needs nothing (usual)."""
    return quote(path, safe=_PATH_SAFE) if _PATH_UNSAFE.search(path) else path


def quoted_query(query: bytes) -> str:
    """The raw query string percent-quoted for the log; its own %XX escapes are kept."""
    text = query.decode("latin-1")
    return quote(text, safe=_QUERY_SAFE, encoding="latin-1") if _QUERY_UNSAFE.search(text) else text


class AccessLog:
    __slots__ = ("_logger", "_queue", "_write", "fmt", "worker")

    def __init__(self, fmt: str, worker_id: int | None = None) -> None:
        self._logger = logging.getLogger(ACCESS_LOGGER)
        self.fmt = checked_format(fmt)
        self.worker: Any = "-" if worker_id is None else worker_id
        # Lines go through a bounded queue to a writer thread: the loop never waits for the
        # log's reader; when it falls behind, lines are dropped and counted (issue 16).
        self._queue: LineQueue | None = queued_line_writer(self._logger, self.fmt)
        self._write: Callable[[dict[str, Any]], None] | None = self._queue

    @property
    def dropped(self) -> int:
        """Lines dropped because the log's reader did not keep up (0 when logging records)."""
        return self._queue.dropped if self._queue is not None else 0

    def log(
        self,
        scope: dict[str, Any],
        status: int,
        body_bytes: int,
        seconds: float,
    ) -> None:
        access = self._logger
        if not access.isEnabledFor(logging.INFO):
            return
        client = scope.get("client")
        path = quoted_path(scope["path"])
        query_string = scope["query_string"]
        query = quoted_query(query_string) if query_string else ""
        fields = {
            "client": f"{client[0]}:{client[1]}" if client else "-",
            "method": scope["method"],
            "full_path": f"{path}?{query}" if query else path,
            "path": path,
            "query": query,
            "http_version": scope["http_version"],
            "status": status,
            "bytes": body_bytes,
            "duration_ms": seconds * 1000.0,
            "worker": self.worker,
        }
        write = self._write
        if write is not None:
            write(fields)
            return
        # makeRecord + handle instead of logger.info: skips findCaller's stack walk (the
        # caller is always this line), a good part of the per-line cost.
        access.handle(access.makeRecord(access.name, logging.INFO, __file__, 0, self.fmt, (fields,), None))


def checked_format(fmt: str) -> str:
    """``fmt`` if it formats the access fields, else the default (said once, at startup: a bad
    format must not fail every request)."""
    try:
        fmt % _SAMPLE
    except (KeyError, ValueError, TypeError) as exc:
        logger.error("invalid --access-log-format %r (%s: %s); using the default", fmt, type(exc).__name__, exc)
        return DEFAULT_FORMAT
    return fmt
