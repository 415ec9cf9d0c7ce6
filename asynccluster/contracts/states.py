"""The states of the cluster, of a worker slot and of a worker incarnation (issue 10).

Each is a ``str`` enum: a member *is* its value, so ``json.dumps``, ``==`` against the text and
f-strings give what the status views have always shown ("running", "ready", ...). The control
socket, the admin endpoint, Prometheus and the dashboard read these values; they are the wire
format.

The cluster's state changes only through :func:`check_cluster_transition` (called by the one
setter, ``Supervisor.state``), against the table :data:`CLUSTER_TRANSITIONS`, written down the
way h11 writes its own (``h11/_state.py``): from each state, the states it may go to.

::

    STARTING --all current workers ready--> RUNNING
    STARTING / RUNNING --reload--> RELOADING --done--> RUNNING (or back to STARTING)
    any but STOPPED --stop (signal, control, Cluster.stop, a hopeless start)--> STOPPING
    STOPPING --every worker reaped--> STOPPED
"""

from __future__ import annotations

from enum import Enum


class _Text(str, Enum):
    """A str-valued enum whose str() and format() are the bare value on every Python (3.10-3.13)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class ClusterState(_Text):
    """The cluster as a whole (``status["state"]``)."""

    STARTING = "starting"  # workers are being started; not every slot has a ready worker yet
    RUNNING = "running"  # every slot's current worker was ready once: serving
    RELOADING = "reloading"  # a rolling reload is replacing the workers (old ones still serve)
    STOPPING = "stopping"  # a stop began: /readyz fails, the workers drain (after --shutdown-delay)
    STOPPED = "stopped"  # every worker is reaped; serve() is about to return the exit code


class SlotState(_Text):
    """A worker slot (a stable position 0..N-1 with its own listening socket)."""

    ACTIVE = "active"  # part of the cluster: kept at one current worker, respawned when it dies
    RETIRING = "retiring"  # being removed by a scale down: never respawned, drained, then dropped


class WorkerState(_Text):
    """One worker incarnation (``status["workers"][i]["state"]``)."""

    STARTING = "starting"  # spawned; importing the app, lifespan startup (until its ``ready``)
    READY = "ready"  # accepting and serving; heartbeats watched
    DRAINING = "draining"  # told to stop (or said it is stopping): finishing what it accepted
    EXITED = "exited"  # reaped; gone from the status views


class IllegalTransition(ValueError):
    """A state change the table does not allow (a bug in the caller, never user input)."""


CLUSTER_TRANSITIONS: dict[ClusterState, frozenset[ClusterState]] = {
    ClusterState.STARTING: frozenset({ClusterState.RUNNING, ClusterState.RELOADING, ClusterState.STOPPING}),
    ClusterState.RUNNING: frozenset({ClusterState.RELOADING, ClusterState.STOPPING}),
    # A reload that began while the cluster was still starting returns to STARTING (or to
    # RUNNING if every slot's worker is ready by then).
    ClusterState.RELOADING: frozenset({ClusterState.RUNNING, ClusterState.STARTING, ClusterState.STOPPING}),
    ClusterState.STOPPING: frozenset({ClusterState.STOPPED}),
    ClusterState.STOPPED: frozenset(),
}

SLOT_TRANSITIONS: dict[SlotState, frozenset[SlotState]] = {
    SlotState.ACTIVE: frozenset({SlotState.RETIRING}),
    SlotState.RETIRING: frozenset(),
}


def check_cluster_transition(old: ClusterState, new: ClusterState) -> ClusterState:
    """``new`` if the table allows ``old -> new``, else :class:`IllegalTransition`."""
    if new not in CLUSTER_TRANSITIONS[old]:
        allowed = ", ".join(sorted(state.value for state in CLUSTER_TRANSITIONS[old])) or "none"
        raise IllegalTransition(
            f"cluster state {old.value} -> {new.value} is not allowed (from {old.value}: {allowed})"
        )
    return new


def check_slot_transition(old: SlotState, new: SlotState) -> SlotState:
    """``new`` if a slot may go from ``old`` to it, else :class:`IllegalTransition`."""
    if new not in SLOT_TRANSITIONS[old]:
        raise IllegalTransition(f"slot state {old.value} -> {new.value} is not allowed")
    return new


__all__ = [
    "CLUSTER_TRANSITIONS",
    "SLOT_TRANSITIONS",
    "ClusterState",
    "IllegalTransition",
    "SlotState",
    "WorkerState",
    "check_cluster_transition",
    "check_slot_transition",
]
