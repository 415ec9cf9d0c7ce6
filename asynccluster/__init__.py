"""asynccluster: an asyncio cluster runtime for ASGI apps.

Public API only (DESIGN.md §2): :func:`run`, :class:`Cluster`, :class:`Config`,
:func:`worker_id` and ``__version__``. ``Cluster`` is imported lazily so that an app
calling ``asynccluster.worker_id()`` inside a worker does not load the master's code.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from asynccluster.config import Config

if TYPE_CHECKING:
    from asynccluster.master.cluster import Cluster

__version__ = "0.1.0"
__all__ = ["Cluster", "Config", "__version__", "run", "worker_id"]

WORKER_ID_ENV = "ASYNCCLUSTER_WORKER_ID"
WORKER_INCARNATION_ENV = "ASYNCCLUSTER_WORKER_INCARNATION"


def worker_id() -> int | None:
    """This worker's slot (0..N-1, stable across respawns, like pm2's NODE_APP_INSTANCE).

    None outside a cluster.
    """
    value = os.environ.get(WORKER_ID_ENV)
    return int(value) if value is not None and value.isdigit() else None


def run(app: Any, **settings: Any) -> int:
    """Run ``app`` ("module:attr", or the app object itself) on a cluster; return the exit code.

    ``settings`` are Config fields, e.g. ``run("myapp:app", workers=4, port=8080)``.
    """
    from asynccluster.master.runner import run as run_cluster_app

    return run_cluster_app(app, **settings)


def __getattr__(name: str) -> Any:
    if name == "Cluster":
        from asynccluster.master.cluster import Cluster

        return Cluster
    raise AttributeError(f"module 'asynccluster' has no attribute {name!r}")
