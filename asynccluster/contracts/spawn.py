"""What a worker process starts from: its spawn arguments and the environment it sets.

The master builds one :class:`WorkerArgs` per worker (master/spawner.py) and multiprocessing
pickles it into the spawned child, whose target (worker/main.py ``worker_entry``) reads it.
Both ends import it from here, so the worker needs nothing of the master's (issue 10: the
``worker/main.py <-> master/spawner.py`` cycle).

The sockets pickle through ``multiprocessing.reduction`` (``DupFd``): the child gets the very
same file descriptions, not copies of a queue.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Generic, TypeVar

# Set by the worker before the app is imported (``asynccluster.worker_id()`` reads the first):
WORKER_ID_ENV = "ASYNCCLUSTER_WORKER_ID"  # the slot, 0..N-1, stable across respawns
WORKER_INCARNATION_ENV = "ASYNCCLUSTER_WORKER_INCARNATION"  # 1, 2, ... per process serving the slot
WORKER_ENV = (WORKER_ID_ENV, WORKER_INCARNATION_ENV)

ConfigT = TypeVar("ConfigT")


@dataclass(frozen=True)
class WorkerArgs(Generic[ConfigT]):
    """Everything a worker process starts from (pickled into the spawned child).

    ``config`` is the cluster's ``asynccluster.config.Config`` (generic here so that this
    package imports only the standard library; both ends write ``WorkerArgs[Config]``).
    Times are in seconds.
    """

    config: ConfigT
    slot: int
    incarnation: int
    listen_sock: socket.socket
    channel_sock: socket.socket  # framed messages (contracts/channel.py, contracts/messages.py)
    stacks_sock: socket.socket  # faulthandler writes stack dumps here; the master logs them
    master_pid: int  # the worker leaves when its parent is no longer this pid
    heartbeat_interval: float  # from the master's Timing: one source for both ends
    shutdown_budget: float  # lifespan shutdown's own time after the drain (policy.shutdown_budget)
    max_requests: int = 0  # ask for a replacement after exactly this many responses (0: never)
    # The worker's stdout and stderr (issue 11): sockets the master reads (master/output.py).
    output_socks: tuple[socket.socket, socket.socket] | None = None
