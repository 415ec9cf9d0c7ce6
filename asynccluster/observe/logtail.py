"""``asynccluster logs``: the last lines of the cluster's log file, then follow it.

Every process of a cluster appends to the same ``--log-file`` (asynccluster/logs.py: one
``write()`` per line on an O_APPEND file), so the file already holds every worker merged in
time order, each line tagged ``[worker 2 pid 1240]`` or ``[master 1234]`` (text format) or
with ``tag``/``slot`` fields (JSON format). Here we read it like ``tail -F``: from the last N
lines, then follow, reopening the file when logrotate moved it or truncated it (SIGUSR1
makes the cluster write to the new file).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

BLOCK = 8192
POLL = 0.2  # seconds between checks for new lines when following
_TAG = re.compile(r"\[(master (\d+)|worker (\d+) pid (\d+))\]")


@dataclass(frozen=True)
class LogLine:
    text: str  # the line as shown (JSON lines rendered as text)
    tag: str | None  # "worker 2 pid 1240", "master 1234", or None for continuation lines
    slot: int | None
    raw: dict[str, Any] | None  # the JSON object of a JSON-format line

    def as_json(self) -> dict[str, Any]:
        return self.raw if self.raw is not None else {"tag": self.tag, "slot": self.slot, "line": self.text}


def parse_line(line: str) -> LogLine:
    line = line.rstrip("\n")
    if line.startswith("{"):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict) and "message" in entry:
            tag = entry.get("tag") or None
            text = f"{entry.get('time', '')} {str(entry.get('level', '')).upper():<7} [{tag}] {entry['message']}"
            if entry.get("exc"):
                text += "\n" + str(entry["exc"])
            slot = entry.get("slot")
            return LogLine(text, tag, slot if isinstance(slot, int) else None, entry)
    match = _TAG.search(line)
    if match is None:
        return LogLine(line, None, None, None)
    return LogLine(line, match.group(1), int(match.group(3)) if match.group(3) else None, None)


def last_lines(path: str, count: int) -> tuple[list[str], int]:
    """The last ``count`` complete lines of the file, and the offset following them."""
    with open(path, "rb") as file:
        end = file.seek(0, os.SEEK_END)
        position, data = end, b""
        while position > 0 and data.count(b"\n") <= count:
            step = min(BLOCK, position)
            position -= step
            file.seek(position)
            data = file.read(step) + data
    complete = data[: data.rfind(b"\n") + 1] if b"\n" in data else b""
    lines = complete.decode("utf-8", "replace").splitlines()
    offset = end - (len(data) - len(complete))
    return (lines[-count:] if count > 0 else []), offset


def follow(path: str, offset: int, should_stop: Callable[[], bool] = lambda: False) -> Iterator[str]:
    """Complete lines appended after ``offset``, forever (until ``should_stop``), like tail -F.

    The file is opened now, not at the first ``next()``: a rotation in between is then seen.
    """
    file = _open(path)
    if file:
        file.seek(offset)
    return _follow(path, file, should_stop)


def _follow(path: str, file: Any, should_stop: Callable[[], bool]) -> Iterator[str]:
    identity = os.fstat(file.fileno()).st_ino if file else None
    pending = b""
    try:
        while not should_stop():
            chunk = file.read() if file else b""
            if chunk:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield line.decode("utf-8", "replace")
                continue
            if _replaced(path, file, identity):
                if file:
                    file.close()
                file = _open(path)
                identity = os.fstat(file.fileno()).st_ino if file else None
                pending = b""
                continue
            time.sleep(POLL)
    finally:
        if file:
            file.close()


def _open(path: str) -> Any:
    try:
        return open(path, "rb")  # kept open while following
    except FileNotFoundError:
        return None


def _replaced(path: str, file: Any, identity: int | None) -> bool:
    """The path now names another file (rotated), or ours shrank (truncated)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return False
    if file is None or info.st_ino != identity:
        return True
    return info.st_size < file.tell()
