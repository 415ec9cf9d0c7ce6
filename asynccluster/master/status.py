"""The cluster's status as one JSON-able dict (control.py's ``status``, admin's ``/status``)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from asynccluster.master.process import WorkerHandle

if TYPE_CHECKING:
    from asynccluster.master.supervisor import Supervisor


def worker_status(handle: WorkerHandle, restarts: int, last_exit: str, now: float) -> dict[str, Any]:
    return {
        "slot": handle.slot,
        "pid": handle.pid,
        "incarnation": handle.incarnation,
        "state": handle.state,
        "started_at": handle.started_wall,
        "uptime": round(handle.uptime(now), 3),
        "restarts": restarts,
        "last_exit": last_exit,
        "retiring": handle.retire_reason,
        "heartbeat": dict(handle.heartbeat),
    }


def cluster_status(supervisor: Supervisor) -> dict[str, Any]:
    now = supervisor.clock()
    listeners = supervisor.listeners
    workers = []
    for handle in sorted(supervisor.handles, key=lambda h: (h.slot, h.incarnation)):
        slot = supervisor.slots.get(handle.slot)
        restarts = slot.restarts if slot is not None else 0
        last_exit = slot.last_exit if slot is not None else ""
        workers.append(worker_status(handle, restarts, last_exit, now))
    queues: dict[str, int] = {}
    if listeners is not None:
        queues = {str(slot): depth for slot, depth in listeners.queue_depths().items()}
    return {
        "name": supervisor.config.cluster_name,
        "app": supervisor.config.app,
        "pid": os.getpid(),
        "address": listeners.address if listeners is not None else "",
        "listener": listeners.mode if listeners is not None else "",
        "started_at": supervisor.started_at,
        "uptime": round(time.time() - supervisor.started_at, 3),
        "state": supervisor.state,
        "ready": supervisor.ready,
        "desired_workers": supervisor.desired,
        "log_file": os.path.abspath(supervisor.config.log_file) if supervisor.config.log_file else None,
        "workers": workers,
        "accept_queue": queues,
        # Grouped app exceptions without their tracebacks (issue 15): Prometheus and the dashboard.
        "error_groups": supervisor.diagnostics.errors.counts() if hasattr(supervisor, "diagnostics") else [],
    }
