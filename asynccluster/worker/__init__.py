"""Everything inside a worker process: the HTTP/ASGI server and the worker's entry point.

Public names: :class:`Server` and :func:`serve` (worker/server.py), :class:`LifespanFailure`
(worker/lifespan.py). They are imported lazily, so that importing ``asynccluster.worker.main``
(e.g. as a multiprocessing target named by the master) does not pull the HTTP stack into the
master process (DESIGN.md §2: master/ never imports http/ or worker/protocol).
"""

from __future__ import annotations

from typing import Any

__all__ = ["LifespanFailure", "Server", "serve"]


def __getattr__(name: str) -> Any:
    if name == "LifespanFailure":
        from asynccluster.worker.lifespan import LifespanFailure

        return LifespanFailure
    if name in ("Server", "serve"):
        from asynccluster.worker import server

        return getattr(server, name)
    raise AttributeError(f"module 'asynccluster.worker' has no attribute {name!r}")
