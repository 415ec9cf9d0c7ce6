"""Grouped app exceptions (issue 15): the worker side's grouping key, the master's bounded store.

An unhandled exception of the app (a 500) is grouped by its type and its *app frame*: the
innermost traceback frame that is the app's own code, i.e. not in the standard library, not
in an installed package and not in asynccluster (so ``json.loads`` failing inside a route
groups at the route's line). When no frame qualifies, the innermost frame outside asyncio and
asynccluster is used, and failing that the innermost frame.

What is kept per group, and why it is safe to show to whoever can read the control socket,
the admin endpoint or the dashboard: the exception's type, its message cut at
:data:`MESSAGE_LIMIT` characters (an app that puts a secret in an exception message shows
it in its log already), the app frame, ONE full traceback (the first one seen in a batch,
cut to its last :data:`TRACEBACK_LIMIT` characters; frames and code lines, no local
variables), the request line as method and *path only*: the query string is dropped because
it is where tokens and passwords end up (``?api_key=``); no header values, no body, no
client address. Then count, first/last seen (Unix time) and the worker slots.

Bounded: a worker sends at most :data:`MAX_GROUPS` groups per batch, and the master keeps at
most :data:`MAX_GROUPS` groups, least recently seen evicted first (and counted).
"""

from __future__ import annotations

import functools
import hashlib
import os
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

MAX_GROUPS = 100
MESSAGE_LIMIT = 200  # characters of the exception message
TRACEBACK_LIMIT = 8000  # characters of the one traceback kept (its end: the innermost frames)
PATH_LIMIT = 200  # characters of the request path

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_ASYNCIO_DIR = os.path.dirname(os.path.abspath(traceback.__file__)) + os.sep + "asyncio" + os.sep


@functools.lru_cache(maxsize=1)
def _library_dirs() -> tuple[str, ...]:
    """The standard library's and installed packages' directories (looked up at the first error)."""
    import sysconfig

    paths = sysconfig.get_paths()
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    return tuple({os.path.abspath(paths[key]) + os.sep for key in keys if paths.get(key)})


def _is_app_file(filename: str) -> bool:
    if filename.startswith("<"):  # <frozen ...>, <string>
        return False
    path = os.path.abspath(filename)
    if path.startswith(_PACKAGE_DIR):
        return False
    return not path.startswith(_library_dirs()) and "site-packages" not in path and "dist-packages" not in path


def _is_ours(filename: str) -> bool:
    path = os.path.abspath(filename)
    return path.startswith(_PACKAGE_DIR) or path.startswith(_ASYNCIO_DIR)


def app_frame(tb: TracebackType | None) -> str:
    """``file:line:function`` of the frame that names the group (see the module docstring)."""
    frames = []
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    if not frames:
        return "?"
    chosen = next((f for f in reversed(frames) if _is_app_file(f[0])), None)
    chosen = chosen or next((f for f in reversed(frames) if not _is_ours(f[0])), None) or frames[-1]
    filename, line, function = chosen
    return f"{_short(filename)}:{line}:{function}"


def _short(filename: str) -> str:
    """A path relative to the working directory when below it (shorter, and the same in
    every worker), else as it is."""
    try:
        relative = os.path.relpath(filename)
    except ValueError:
        return filename
    return filename if relative.startswith("..") else relative


def type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def group_id(kind: str, frame: str) -> str:
    """A short stable id for a group (the Prometheus label, and what the CLI shows)."""
    return hashlib.sha1(f"{kind}@{frame}".encode(), usedforsecurity=False).hexdigest()[:10]


def request_line(scope: dict[str, Any]) -> str:
    """``METHOD /path``: the path only, never the query (secrets), cut at PATH_LIMIT."""
    path = str(scope.get("path", ""))
    if len(path) > PATH_LIMIT:
        path = path[:PATH_LIMIT] + "..."
    return f"{scope.get('method', scope.get('type', '?'))} {path}"


def format_traceback(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text if len(text) <= TRACEBACK_LIMIT else "...\n" + text[-TRACEBACK_LIMIT:]


def short_message(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # an exception whose __str__ raises: still grouped
        text = "<unprintable>"
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + "..."


@dataclass
class ErrorGroup:
    """One group as the master keeps it (and as ``asynccluster errors --json`` shows it)."""

    id: str
    type: str
    frame: str
    message: str
    traceback: str
    request: str
    count: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    workers: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def summary(self) -> dict[str, Any]:
        """Without the traceback: what status, Prometheus and the dashboard carry."""
        return {key: value for key, value in self.__dict__.items() if key != "traceback"}


class ErrorGroups:
    """The master's store: worker batches merged in, at most ``limit`` groups (LRU)."""

    def __init__(self, limit: int = MAX_GROUPS) -> None:
        self.limit = limit
        self.groups: OrderedDict[str, ErrorGroup] = OrderedDict()
        self.evicted = 0  # groups pushed out since the start
        self.total = 0  # every error reported, evicted groups included

    def merge(self, slot: int, batch: list[Any]) -> None:
        """Add one worker's batch (``[{type, frame, message, traceback, request, count,
        first_seen, last_seen}]``); malformed entries are skipped (a confused worker)."""
        for entry in batch[: self.limit]:
            if isinstance(entry, dict):
                self._merge_one(slot, entry)

    def _merge_one(self, slot: int, entry: dict[str, Any]) -> None:
        kind, frame = str(entry.get("type", "?"))[:200], str(entry.get("frame", "?"))[:500]
        count = entry.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            return
        key = group_id(kind, frame)
        group = self.groups.get(key)
        first, last = _number(entry.get("first_seen")), _number(entry.get("last_seen"))
        if group is None:
            group = self.groups[key] = ErrorGroup(
                id=key, type=kind, frame=frame, first_seen=first, last_seen=last,
                message=str(entry.get("message", ""))[: MESSAGE_LIMIT + 3],
                traceback=str(entry.get("traceback", ""))[: TRACEBACK_LIMIT + 4],
                request=str(entry.get("request", ""))[: PATH_LIMIT + 20],
            )  # fmt: skip
            while len(self.groups) > self.limit:
                self.groups.popitem(last=False)
                self.evicted += 1
        else:
            self.groups.move_to_end(key)
            group.first_seen = min(group.first_seen, first)
            if last >= group.last_seen:  # the latest message and request line describe the group
                group.message = str(entry.get("message", group.message))[: MESSAGE_LIMIT + 3]
                group.request = str(entry.get("request", group.request))[: PATH_LIMIT + 20]
            group.last_seen = max(group.last_seen, last)
        group.count += count
        self.total += count
        if slot not in group.workers:
            group.workers = sorted([*group.workers, slot])

    def counts(self) -> list[dict[str, Any]]:
        """``[{id, type, frame, count}]``: the compact form the status carries (Prometheus)."""
        return [{"id": g.id, "type": g.type, "frame": g.frame, "count": g.count} for g in self.groups.values()]

    def listing(self, *, tracebacks: bool = True) -> list[dict[str, Any]]:
        """Most frequent first."""
        ordered = sorted(self.groups.values(), key=lambda g: (-g.count, -g.last_seen))
        return [g.as_dict() if tracebacks else g.summary() for g in ordered]


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
