"""Bounded memo tables that keep the hot entries (issue 10): sans-IO, no globals.

Most traffic repeats a few methods, request-targets, Host values and response header names,
so the parser and the response writer remember what they checked. The tables used to be
module globals filled first-come-first-kept: once a scan of random URLs had filled one, the
paths real clients use were never cached again. :class:`HotCache` admits freely while it has
room and, once full, only what is *asked for again*:

- a hit is one ``dict.get`` (``cache.get`` is the bound method of the kept table itself);
- a miss on a full table puts the entry on trial (a second bounded table, emptied when full);
- a key missed again while on trial is promoted, replacing the oldest kept entry.

So one-off keys (a scan) never displace anything once the table is full, and a key seen twice
within the trial window is kept. Its size never exceeds ``size`` + ``trial``.

The owner (one per worker: :class:`RequestCaches`, and the response writer's names) creates
them once and passes them in; tests create their own.
"""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
_MISSING = object()


class HotCache(Generic[K, V]):
    """A map of at most ``size`` kept entries (plus ``trial`` on probation); see the module doc.

    ``get(key[, default])`` is ``dict.get`` on the kept entries (use a default when None is a
    value); ``put(key, value)`` after computing a miss.
    """

    __slots__ = ("_kept", "_size", "_trial", "_trial_size", "get")

    def __init__(self, size: int, trial: int | None = None) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self._size = size
        self._trial_size = trial if trial is not None else size
        self._kept: dict[K, V] = {}
        self._trial: dict[K, V] = {}
        self.get = self._kept.get  # the hit path: no Python frame of ours

    def put(self, key: K, value: V) -> None:
        """Remember ``value`` for ``key`` (just computed after a miss of :meth:`get`)."""
        kept = self._kept
        if len(kept) < self._size:
            kept[key] = value
            return
        trial = self._trial
        if trial.pop(key, _MISSING) is not _MISSING:
            # Asked for again while on trial: hot. The oldest kept entry makes room.
            del kept[next(iter(kept))]
            kept[key] = value
            return
        if len(trial) >= self._trial_size:
            trial.clear()  # a scan's keys leave together; nothing kept is touched
        trial[key] = value

    def clear(self) -> None:
        """Forget everything (the owner's keys went stale, e.g. a new Date line)."""
        self._kept.clear()
        self._trial.clear()

    def __contains__(self, key: object) -> bool:
        return key in self._kept

    def __len__(self) -> int:
        return len(self._kept)


class RequestCaches:
    """The request parser's memo tables, one set per worker (shared by its connections).

    - ``methods``: raw method -> its name (checked: no CONNECT);
    - ``targets``: request-target -> (raw_path, path, query_string), for targets of at most
      :data:`TARGET_CACHEABLE` bytes;
    - ``hosts``: Host values found valid -> True.
    """

    __slots__ = ("hosts", "methods", "targets")

    def __init__(self, methods: int = 64, targets: int = 512, hosts: int = 64) -> None:
        self.methods: HotCache[bytes, str] = HotCache(methods)
        self.targets: HotCache[bytes, tuple[bytes, str, bytes]] = HotCache(targets)
        self.hosts: HotCache[bytes, bool] = HotCache(hosts)


# Longer request-targets are checked every time: keeping them would let a client fill the
# table with large keys.
TARGET_CACHEABLE = 256
