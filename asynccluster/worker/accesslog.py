"""The access log: one line per response on the ``asynccluster.access`` logger (issue 2).

The line is ``--access-log-format``, a %-style format over these fields (documented in
config.py's help as well):

    client        "host:port" of the client (after trusted proxy headers), or "-"
    method        request method
    path          percent-decoded path (root_path included)
    query         the raw query string, decoded as latin-1 ("" if none)
    http_version  "1.1" or "1.0"
    status        response status (int)
    bytes         response body bytes sent (int)
    duration_ms   request head to last response byte, in milliseconds (float)
    worker        the worker id, or "-" outside a cluster

Cost: when ``--no-access-log`` is given the protocol holds ``None`` instead of an
:class:`AccessLog` and pays one attribute test per request. When on, the fields go to the
logger as one dict (formatted only if a handler emits the record), and the record is made
directly, without the stack walk ``logger.info`` does to find the caller.
"""

from __future__ import annotations

import logging
from typing import Any

ACCESS_LOGGER = "asynccluster.access"


class AccessLog:
    __slots__ = ("_logger", "fmt", "worker")

    def __init__(self, fmt: str, worker_id: int | None = None) -> None:
        self._logger = logging.getLogger(ACCESS_LOGGER)
        self.fmt = fmt
        self.worker: Any = "-" if worker_id is None else worker_id

    def log(
        self,
        scope: dict[str, Any],
        status: int,
        body_bytes: int,
        seconds: float,
    ) -> None:
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        client = scope.get("client")
        fields = {
            "client": f"{client[0]}:{client[1]}" if client else "-",
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode("latin-1"),
            "http_version": scope["http_version"],
            "status": status,
            "bytes": body_bytes,
            "duration_ms": seconds * 1000.0,
            "worker": self.worker,
        }
        # makeRecord + handle instead of logger.info: skips findCaller's stack walk (the
        # caller is always this line), a good part of the per-line cost.
        logger.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 0, self.fmt, (fields,), None))
