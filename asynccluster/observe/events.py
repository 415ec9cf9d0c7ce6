"""Bounded rings in the master that the dashboard shows (issue 12): lifecycle events and log lines.

- :class:`EventRing`: the supervisor's one-line hooks record spawn, ready, exit, respawn
  (with its backoff), hang (with the stacks the worker dumped), reload started / rolled
  back / done, scale and recycle (with why). The last :data:`MAX_EVENTS` are kept.
- :class:`LogRing`: a ``logging.Handler`` on the ``asynccluster`` logger of the master, so it
  holds what the master logs, including the lines it logs on behalf of a worker (exits,
  readiness, dumped stacks: tagged ``worker N pid P``, or starting with the worker's name;
  both are attributed to that worker's slot, for the page's filter). The workers' own lines (the app's
  logging, the access log) go from each worker straight to the shared stderr / log file and
  are not in it. The last :data:`MAX_LOGS` records are kept.

Both hand out items with an increasing ``seq``; a reader asks for what came after the last
``seq`` it saw (:meth:`since`), so a once-a-second push sends only what is new. Items are
plain JSON-able dicts. Nothing here does I/O, and no method raises on odd input: recording
must never break the supervisor's dispatch.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any

MAX_EVENTS = 500
MAX_LOGS = 1000
MAX_TEXT = 2000  # characters kept of one event text or log message
MAX_STACKS = 64 * 1024  # characters of dumped stacks kept on one hang event
STACKS_BURST = 5.0  # seconds: stacks of one pid arriving within this extend the same hang event
_WORKER_TAG = re.compile(r"worker (\d+) pid (\d+)")
# The master's own lines about one worker start with its name: "worker 2 (pid 1240, incarnation 3) ..."
_WORKER_NAME = re.compile(r"(?:recycling )?worker (\d+) \(pid (\d+)")


class Ring:
    """A bounded deque of dicts, each stamped with an increasing ``seq``."""

    def __init__(self, size: int) -> None:
        self._items: deque[dict[str, Any]] = deque(maxlen=size)
        self.seq = 0

    def append(self, item: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        item["seq"] = self.seq
        self._items.append(item)
        return item

    def since(self, seq: int) -> list[dict[str, Any]]:
        """Items with ``seq`` greater than the given one, oldest first (walked from the newest
        end: a reader asking every second costs what is new, not the whole ring)."""
        newer: list[dict[str, Any]] = []
        for item in reversed(self._items):
            if item["seq"] <= seq:
                break
            newer.append(item)
        newer.reverse()
        return newer

    def items(self) -> list[dict[str, Any]]:
        return list(self._items)

    def last(self) -> dict[str, Any] | None:
        return self._items[-1] if self._items else None


class EventRing(Ring):
    """The lifecycle timeline: ``{"seq", "time", "kind", "slot", "pid", "text", "stacks"?}``."""

    def __init__(self, size: int = MAX_EVENTS, clock: Callable[[], float] = time.time) -> None:
        super().__init__(size)
        self._clock = clock

    def record(self, kind: str, text: str, slot: int | None = None, pid: int | None = None) -> None:
        """One event: ``kind`` is a short word (spawn, ready, exit, respawn, hang, reload, scale,
        recycle, restart), ``text`` says what happened and why."""
        try:
            self.append({"time": self._clock(), "kind": kind, "slot": slot, "pid": pid, "text": str(text)[:MAX_TEXT]})
        except Exception:  # never let a record break the caller (the supervisor's dispatch)
            pass

    def result(self, kind: str, outcome: Any) -> Any:
        """Record an operation's result (a ReloadResult, ScaleResult, RestartResult) and return it.

        A reload is recorded as ``reload done: ...`` or ``reload rolled back: ...``; other kinds
        with their message, prefixed ``<kind> failed:`` when ``ok`` is False.
        """
        ok = bool(getattr(outcome, "ok", True))
        message = str(getattr(outcome, "message", "") or getattr(outcome, "error", "") or "")
        if kind == "reload":
            text = f"reload {'done' if ok else 'rolled back'}: {message}"
        else:
            text = message if ok else f"{kind} failed: {message}"
        self.record(kind, text, getattr(outcome, "slot", None))
        return outcome

    def stacks(self, slot: int, pid: int, text: str, reason: str) -> None:
        """Stacks a worker dumped: a ``hang`` event with the stacks (expandable in the page).

        The dump comes in pieces; pieces of one pid within :data:`STACKS_BURST` join one event.
        """
        try:
            last = self.last()
            now = self._clock()
            if last is not None and last["kind"] == "hang" and last["pid"] == pid and now - last["time"] < STACKS_BURST:
                before = last.get("stacks", "")
                joint = "" if not before or before.endswith("\n") else "\n"  # pieces come line by line
                last["stacks"] = (before + joint + text)[:MAX_STACKS]
                return
            event = {"time": now, "kind": "hang", "slot": slot, "pid": pid,
                     "text": (reason or "stacks dumped")[:MAX_TEXT], "stacks": text[:MAX_STACKS]}  # fmt: skip
            self.append(event)
        except Exception:
            pass


class LogRing(logging.Handler):
    """The master's recent log records: ``{"seq", "time", "level", "tag", "slot", "pid", "text"}``."""

    def __init__(self, size: int = MAX_LOGS) -> None:
        super().__init__(logging.DEBUG)
        self.ring = Ring(size)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tag = str(getattr(record, "tag", "") or "")
            text = record.getMessage()
            match = _WORKER_TAG.search(tag) or _WORKER_NAME.match(text)
            if record.exc_info and record.exc_info[1] is not None:
                text += f"\n{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            self.ring.append(
                {
                    "time": record.created,
                    "level": record.levelname.lower(),
                    "tag": tag or "master",
                    "slot": int(match.group(1)) if match else None,
                    "pid": int(match.group(2)) if match else record.process,
                    "text": text[:MAX_TEXT],
                }
            )
        except Exception:  # a log handler must never raise into the code that logged
            pass

    def since(self, seq: int) -> list[dict[str, Any]]:
        return self.ring.since(seq)


_installed: dict[str, LogRing] = {}


def install_log_ring(logger_name: str = "asynccluster") -> LogRing:
    """The ring attached to ``logger_name`` (one per process, attached on first use)."""
    ring = _installed.get(logger_name)
    if ring is None:
        ring = _installed[logger_name] = LogRing()
        logging.getLogger(logger_name).addHandler(ring)
    return ring


def adopt_log_ring(ring: LogRing, logger_name: str = "asynccluster") -> None:
    """Attach ``ring`` as this process's ring of ``logger_name``: the master's log buffer
    (master/logbuffer.py, issue 11), which also holds the workers' lines, is then the one the
    dashboard shows."""
    remove_log_ring(logger_name)
    _installed[logger_name] = ring
    logging.getLogger(logger_name).addHandler(ring)


def remove_log_ring(logger_name: str = "asynccluster") -> None:
    ring = _installed.pop(logger_name, None)
    if ring is not None:
        logging.getLogger(logger_name).removeHandler(ring)


__all__ = ["EventRing", "LogRing", "Ring", "adopt_log_ring", "install_log_ring", "remove_log_ring"]
