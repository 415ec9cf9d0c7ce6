"""asynccluster: an asyncio cluster runtime for ASGI apps.

Public API only (DESIGN.md §2): :func:`run`, :class:`Cluster`, :class:`Config`,
:func:`worker_id` and ``__version__``. ``Cluster`` is imported lazily so that an app
calling ``asynccluster.worker_id()`` inside a worker does not load the master's code.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from asynccluster.config import Config
from asynccluster.contracts.spawn import WORKER_ID_ENV
from asynccluster.contracts.spawn import WORKER_INCARNATION_ENV as WORKER_INCARNATION_ENV
from asynccluster.contracts.version import __version__

if TYPE_CHECKING:
    from asynccluster.master.cluster import Cluster

__all__ = ["Cluster", "Config", "__version__", "run", "worker_id"]
# WORKER_ID_ENV and WORKER_INCARNATION_ENV stay importable from here (they always were);
# their home is contracts/spawn.py, which the package's own modules import instead.


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
