"""The cluster's status view from the slot table (control.py's ``status``, admin's ``/status``).

Builds the typed views of contracts/status.py; ``Supervisor.status()`` sends their
``to_dict()``. Reads the slot table and the settings; knows nothing of the Supervisor.
"""

from __future__ import annotations

import os
import time
from typing import Any

from asynccluster.config import Config
from asynccluster.contracts.states import ClusterState, WorkerState
from asynccluster.contracts.status import ClusterStatus, SlotWaiting, WorkerStatus
from asynccluster.master.process import WorkerHandle
from asynccluster.master.slots import Slot, SlotTable


def worker_status(handle: WorkerHandle, slot: Slot | None, now: float) -> WorkerStatus:
    """One incarnation; ``restarts`` and ``last_exit`` are its slot's (``now``: clock() seconds)."""
    return WorkerStatus(
        slot=handle.slot,
        pid=handle.pid,
        incarnation=handle.incarnation,
        state=WorkerState(handle.state),
        started_at=handle.started_wall,
        uptime=round(handle.uptime(now), 3),
        restarts=slot.restarts if slot is not None else 0,
        last_exit=slot.last_exit if slot is not None else "",
        retiring=handle.retire_reason,
        heartbeat=dict(handle.heartbeat),
    )


def cluster_status(
    config: Config,
    slots: SlotTable,
    *,
    state: ClusterState,
    ready: bool,
    started_at: float,
    now: float,
    error_groups: list[dict[str, Any]],
    preload: dict[str, Any] | None = None,
) -> ClusterStatus:
    """The whole cluster; ``started_at`` is wall-clock, ``now`` the supervisor's clock()."""
    listeners = slots.listeners
    handles = sorted(slots.handles, key=lambda h: (h.slot, h.incarnation))
    queues: dict[str, int] = {}
    if listeners is not None:
        queues = {str(slot): depth for slot, depth in listeners.queue_depths().items()}
    return ClusterStatus(
        name=config.cluster_name,
        app=config.app,
        pid=os.getpid(),
        address=listeners.address if listeners is not None else "",
        listener=listeners.mode if listeners is not None else "",
        started_at=started_at,
        uptime=round(time.time() - started_at, 3),
        state=state,
        ready=ready,
        desired_workers=slots.desired,
        log_file=os.path.abspath(config.log_file) if config.log_file else None,
        workers=[worker_status(handle, slots.get(handle.slot), now) for handle in handles],
        accept_queue=queues,
        # Grouped app exceptions without their tracebacks (issue 15): Prometheus and the dashboard.
        error_groups=error_groups,
        preload=preload,
        respawning=[
            SlotWaiting(slot=slot.index, respawn_in=round(left, 1), restarts=slot.restarts, last_exit=slot.last_exit)
            for slot, left in sorted(slots.waiting(), key=lambda item: item[0].index)
        ],
    )
