"""What the master's verbs answer: reload, restart (and recycle), scale (issue 10).

The same objects reach every caller: ``await cluster.reload()`` returns a :class:`ReloadResult`;
the control socket sends its :meth:`~ReloadResult.to_dict` (plus ``elapsed``, and for a scale
``previous``/``target``) as the ``result`` of its response; the dashboard's POST actions answer
with the same dict; the CLI reads it back with :meth:`~ReloadResult.from_dict`. The dict is the
wire format: its keys and value types are what they were before the types existed.

Also here, because the CLI, the control server and the supervisor must agree on it: the one
rule for a scale target, :func:`scale_refusal` (at least one worker, at most --max-workers).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

MIN_WORKERS = 1  # a cluster keeps at least one worker; stopping it is `stop`, not `scale 0`

_R = TypeVar("_R", "ReloadResult", "RestartResult", "ScaleResult")


def _known_fields(cls: type[_R], data: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``data`` that are fields of ``cls`` (the control server adds ``elapsed``...)."""
    if not isinstance(data, dict):
        raise ValueError(f"a {cls.__name__} is a JSON object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    return {key: value for key, value in data.items() if key in names}


@dataclass(frozen=True)
class ReloadResult:
    """The outcome of a rolling reload (issue 4): every slot's worker replaced, or none.

    ``ok``: all new workers became ready and the old ones were told to drain; False: the reload
    was rolled back (the old workers keep serving) and ``error`` says why. ``replaced`` of
    ``total`` slots; ``seconds`` (wall, rounded to ms) from the start to the commit;
    ``pids``: slot -> ``[old pid, new pid]`` of a committed reload (empty when rolled back).
    """

    ok: bool
    replaced: int
    total: int
    seconds: float
    error: str = ""
    message: str = ""
    pids: dict[int, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``{"ok", "replaced", "total", "seconds", "error", "message", "pids"}``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReloadResult:
        """Inverse of :meth:`to_dict`; JSON's string keys of ``pids`` become slot numbers again."""
        known = _known_fields(cls, data)
        pids = known.get("pids") or {}
        known["pids"] = {int(slot): [int(pid) for pid in pair] for slot, pair in pids.items()}
        return cls(**known)


@dataclass(frozen=True)
class RestartResult:
    """The outcome of replacing one slot's worker (``restart``, and a recycle: --max-requests,
    --max-lifetime, --max-memory, a hung worker). Readiness-gated: ``ok`` False means the new
    worker never became ready and ``old_pid`` keeps serving (``new_pid`` is 0)."""

    ok: bool
    slot: int
    old_pid: int = 0
    new_pid: int = 0
    seconds: float = 0.0
    error: str = ""
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """``{"ok", "slot", "old_pid", "new_pid", "seconds", "error", "message"}``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RestartResult:
        return cls(**_known_fields(cls, data))


@dataclass(frozen=True)
class ScaleResult:
    """The outcome of a scale from ``before`` to ``after`` workers (issue 4, issue 9).

    A scale up whose new workers are not all ready is rolled back (``ok`` False, ``after`` ==
    ``before``). ``steering``: per removed slot, how its queued connections were kept
    ("cbpf", "tcp_migrate_req", "shared listener", "none"); see master/steering.py.
    """

    ok: bool
    before: int
    after: int
    seconds: float = 0.0
    steering: list[str] = field(default_factory=list)
    error: str = ""
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """``{"ok", "before", "after", "seconds", "steering", "error", "message"}``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScaleResult:
        known = _known_fields(cls, data)
        known["steering"] = [str(method) for method in known.get("steering") or []]
        return cls(**known)


OperationResult = ReloadResult | RestartResult | ScaleResult


def scale_refusal(target: int, *, current: int | None = None, limit: int | None = None) -> str | None:
    """Why a cluster cannot have ``target`` workers, or None if it can: the one rule (issue 10).

    At least :data:`MIN_WORKERS` (a cluster is stopped with ``stop``, not scaled to 0) and at
    most ``limit`` (--max-workers; 0 there means 4 x usable CPUs, at least 16). ``current``
    (the count now) only makes the message clearer for a relative ``-N``.
    """
    if target < MIN_WORKERS:
        now = f" (now {current})" if current is not None else ""
        return (
            f"cannot scale to {target} workers{now}; a cluster keeps at least {MIN_WORKERS} worker — "
            "use 'asynccluster stop' to stop it"
        )
    if limit is not None and target > limit:
        return (
            f"cannot scale to {target} workers: the limit is {limit} "
            "(--max-workers; 0 means 4 x usable CPUs, at least 16)"
        )
    return None


__all__ = ["MIN_WORKERS", "OperationResult", "ReloadResult", "RestartResult", "ScaleResult", "scale_refusal"]
