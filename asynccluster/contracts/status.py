"""The cluster's status view: what ``Supervisor.status()`` builds (issue 10).

One :class:`ClusterStatus` with one :class:`WorkerStatus` per live incarnation. Its
:meth:`~ClusterStatus.to_dict` is the wire format of the control socket's ``status`` (before
the observer adds rates and totals: observe/aggregate.py), of the admin endpoint's ``/status``,
and what Prometheus (observe/prometheus.py) and the dashboard read. The keys and value types
are exactly those of the dict the master built before these types existed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asynccluster.contracts.states import ClusterState, WorkerState


@dataclass(frozen=True)
class WorkerStatus:
    """One worker incarnation as ``status["workers"][i]`` shows it.

    ``started_at``: wall clock (time.time()) of the spawn; ``uptime``: seconds since, rounded to
    ms; ``restarts`` and ``last_exit``: its slot's (a respawn or a replace counts);
    ``retiring``: why the master retires it ("" if it does not); ``heartbeat``: the worker's
    last heartbeat as sent (stats, loop_lag, rss, cpu, app_metrics, time).
    """

    slot: int
    pid: int
    incarnation: int
    state: WorkerState
    started_at: float
    uptime: float
    restarts: int
    last_exit: str
    retiring: str
    heartbeat: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "pid": self.pid,
            "incarnation": self.incarnation,
            "state": self.state,
            "started_at": self.started_at,
            "uptime": self.uptime,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "retiring": self.retiring,
            "heartbeat": dict(self.heartbeat),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerStatus:
        """Inverse of :meth:`to_dict`; ValueError for an unknown state, KeyError-free defaults."""
        return cls(
            slot=int(data["slot"]),
            pid=int(data.get("pid") or 0),
            incarnation=int(data.get("incarnation") or 0),
            state=WorkerState(data.get("state", WorkerState.STARTING)),
            started_at=float(data.get("started_at") or 0.0),
            uptime=float(data.get("uptime") or 0.0),
            restarts=int(data.get("restarts") or 0),
            last_exit=str(data.get("last_exit") or ""),
            retiring=str(data.get("retiring") or ""),
            heartbeat=dict(data.get("heartbeat") or {}),
        )


@dataclass(frozen=True)
class SlotWaiting:
    """A slot with no worker, waiting for its respawn (a backoff, issue 9): ``respawn_in``
    seconds from now (rounded to 0.1 s); ``restarts`` and ``last_exit`` as for its workers."""

    slot: int
    respawn_in: float
    restarts: int
    last_exit: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "respawn_in": self.respawn_in,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlotWaiting:
        return cls(
            slot=int(data["slot"]),
            respawn_in=float(data.get("respawn_in") or 0.0),
            restarts=int(data.get("restarts") or 0),
            last_exit=str(data.get("last_exit") or ""),
        )


@dataclass(frozen=True)
class ClusterStatus:
    """The whole cluster: who (``name``, ``app``, ``pid``), where (``address``, ``listener``:
    "reuseport" or "shared", ``log_file``), since when (``started_at``: wall clock; ``uptime``:
    seconds), how (``state``, ``ready``: /readyz's answer, ``desired_workers``), the workers,
    each slot's accept queue depth (``accept_queue``: slot as a string -> queued connections),
    the grouped app exceptions without tracebacks (``error_groups``, issue 15) and the slots
    with no worker that wait for a respawn (``respawning``: counted in ``desired_workers``);
    ``preload``: None without --preload, else the helper's pid and its re-preload streak."""

    name: str
    app: str
    pid: int
    address: str
    listener: str
    started_at: float
    uptime: float
    state: ClusterState
    ready: bool
    desired_workers: int
    log_file: str | None
    workers: list[WorkerStatus] = field(default_factory=list)
    accept_queue: dict[str, int] = field(default_factory=dict)
    error_groups: list[dict[str, Any]] = field(default_factory=list)
    respawning: list[SlotWaiting] = field(default_factory=list)
    preload: dict[str, Any] | None = None  # --preload: master/preload.py Preloader.info(); None when off

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "app": self.app,
            "pid": self.pid,
            "address": self.address,
            "listener": self.listener,
            "started_at": self.started_at,
            "uptime": self.uptime,
            "state": self.state,
            "ready": self.ready,
            "desired_workers": self.desired_workers,
            "log_file": self.log_file,
            "workers": [worker.to_dict() for worker in self.workers],
            "accept_queue": dict(self.accept_queue),
            "error_groups": list(self.error_groups),
            "respawning": [slot.to_dict() for slot in self.respawning],
            "preload": dict(self.preload) if self.preload is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterStatus:
        """Inverse of :meth:`to_dict`; keys an observer added (rates, totals, control_socket) are ignored."""
        return cls(
            name=str(data.get("name") or ""),
            app=str(data.get("app") or ""),
            pid=int(data.get("pid") or 0),
            address=str(data.get("address") or ""),
            listener=str(data.get("listener") or ""),
            started_at=float(data.get("started_at") or 0.0),
            uptime=float(data.get("uptime") or 0.0),
            state=ClusterState(data.get("state", ClusterState.STARTING)),
            ready=bool(data.get("ready")),
            desired_workers=int(data.get("desired_workers") or 0),
            log_file=data.get("log_file"),
            workers=[WorkerStatus.from_dict(worker) for worker in data.get("workers") or []],
            accept_queue={str(slot): int(depth) for slot, depth in (data.get("accept_queue") or {}).items()},
            error_groups=list(data.get("error_groups") or []),
            respawning=[SlotWaiting.from_dict(slot) for slot in data.get("respawning") or []],
            preload=dict(data["preload"]) if data.get("preload") is not None else None,
        )


__all__ = ["ClusterStatus", "SlotWaiting", "WorkerStatus"]
