"""The master's log buffer: every line of the cluster, always there (issue 11 item 1).

Whatever the log settings, the master keeps, in one bounded ring (:class:`LogBuffer`):

- its own log records (it is a ``logging.Handler`` on the ``asynccluster`` logger, built on
  the dashboard's :class:`~asynccluster.observe.events.LogRing`, so the dashboard's log panel
  shows the same ring: one ring per master, not two);
- every line a worker writes to its stdout or stderr: its log records, its access log, an
  app's ``print()`` and a crash's traceback. The spawner gives each worker two socketpairs
  that become its fds 1 and 2 (master/spawner.py, :class:`OutputPipes`); the master reads
  them from its loop (:meth:`LogBuffer.feed`), keeps each complete line and passes it on to
  its own stdout/stderr and log file (asynccluster/logs.py :func:`relay_line`), so the
  terminal, Docker and systemd see what they saw before.

Items are dicts ``{"seq", "time", "level", "tag", "slot", "pid", "stream", "text"}``;
``stream`` is ``"log"`` (a master record: ``text`` is the message), ``"out"`` or ``"err"``
(a worker's line as written: ``text`` is the whole line, with its own time and tag if it is
a log record). The ring holds at most :data:`MAX_LINES` lines and :data:`MAX_BYTES` of text;
the oldest go first. ``asynccluster logs`` reads it over the control socket
(:func:`query`): the last N matching lines, then, to follow, what came after a ``seq``,
waiting up to a few seconds for it (a long poll: no busy polling, no protocol change).

Levels of worker lines: a line in the text or JSON log format carries its level; an indented
line continues the one before it (a traceback's frames) and takes its level; any other line
on stderr counts as an error (pm2's "error log" is stderr), on stdout as info.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from asynccluster.logs import master_tag, relay_line, worker_tag
from asynccluster.observe.events import LogRing, Ring, adopt_log_ring, remove_log_ring

MAX_LINES = 10_000
MAX_BYTES = 8 << 20  # characters of text kept across the ring
MAX_LINE = 16 << 10  # a longer line is kept cut (and relayed whole)
MAX_PENDING = 64 << 10  # an unterminated line longer than this is taken as a line
MAX_WAIT = 10.0  # seconds a follow request may wait for new lines
LEVELS = ("trace", "debug", "info", "warning", "error", "critical")
ERR_LEVELS = frozenset(("warning", "error", "critical"))
_TEXT_LEVEL = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (TRACE|DEBUG|INFO|WARNING|ERROR|CRITICAL) +\[")
_JSON_LEVEL = re.compile(r'"level": "(trace|debug|info|warning|error|critical)"')


class BoundedRing(Ring):
    """A :class:`Ring` bounded by count and by the total length of the items' ``text``."""

    def __init__(self, size: int = MAX_LINES, max_bytes: int = MAX_BYTES) -> None:
        super().__init__(size)
        self._items = deque()  # the count bound is kept by hand, with the byte bound
        self.size = size
        self.max_bytes = max_bytes
        self.bytes = 0

    def append(self, item: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        item["seq"] = self.seq
        self._items.append(item)
        self.bytes += len(item.get("text", ""))
        while len(self._items) > self.size or (self.bytes > self.max_bytes and len(self._items) > 1):
            self.bytes -= len(self._items.popleft().get("text", ""))
        return item


def line_level(text: str, stream: str, previous: str) -> str:
    """The level of one worker line (see the module docstring)."""
    match = _TEXT_LEVEL.match(text) or (_JSON_LEVEL.search(text) if text.startswith("{") else None)
    if match:
        return match.group(1).lower()
    if text[:1] in (" ", "\t") and previous:
        return previous
    return "error" if stream == "err" else "info"


class LogBuffer(LogRing):
    """The ring of every master record and worker line (see the module docstring).

    ``relay`` passes each worker line on (to the master's stdout/stderr and log file);
    tests give their own.
    """

    def __init__(
        self,
        size: int = MAX_LINES,
        max_bytes: int = MAX_BYTES,
        relay: Callable[[str, str], None] = relay_line,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(size)
        self.ring: BoundedRing = BoundedRing(size, max_bytes)
        self._relay = relay
        self._clock = clock
        self._pending: dict[tuple[int, str], bytes] = {}  # (pid, stream) -> an unfinished line
        self._last_level: dict[tuple[int, str], str] = {}
        self._waiters: set[asyncio.Future[None]] = set()

    def emit(self, record: Any) -> None:
        seq = self.ring.seq
        super().emit(record)
        if self.ring.seq != seq:
            item = self.ring.last()
            if item is not None:
                item["stream"] = "log"
                if item["tag"] == "master":
                    item["tag"] = master_tag()
            self._wake()

    def feed(self, slot: int, pid: int, stream: str, data: bytes) -> None:
        """Bytes a worker wrote to ``stream`` ("out" or "err"); b"" at its end flushes a partial line."""
        key = (pid, stream)
        buffered = self._pending.pop(key, b"") + data
        lines = buffered.split(b"\n")
        rest = lines.pop()
        # At the stream's end an unterminated last line is still a line; so is an endless one.
        if (not data and rest) or len(rest) > MAX_PENDING:
            lines.append(rest)
            rest = b""
        if rest:
            self._pending[key] = rest
        if not data:
            self._last_level.pop(key, None)
        if lines:
            self._add_lines(slot, pid, stream, lines)

    def _add_lines(self, slot: int, pid: int, stream: str, lines: list[bytes]) -> None:
        key = (pid, stream)
        tag = worker_tag(slot, pid)
        now = self._clock()
        previous = self._last_level.get(key, "")
        for raw in lines:
            text = raw.decode("utf-8", "replace")
            try:
                self._relay(text + "\n", stream)
            except Exception:  # a closed stdout must not stop the ring (issue 9)
                pass
            level = previous = line_level(text, stream, previous)
            self.ring.append(
                {"time": now, "level": level, "tag": tag, "slot": slot, "pid": pid,
                 "stream": stream, "text": text[:MAX_LINE]}
            )  # fmt: skip
        self._last_level[key] = previous
        self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait_after(self, seq: int, timeout: float) -> None:
        """Until the ring has an item after ``seq`` or ``timeout`` seconds passed."""
        if self.ring.seq > seq or timeout <= 0:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)


def matches(item: dict[str, Any], slot: int | None, errors_only: bool, since: float | None) -> bool:
    if slot is not None and item.get("slot") != slot:
        return False
    if errors_only and item.get("level") not in ERR_LEVELS:
        return False
    return since is None or float(item.get("time", 0.0)) >= since


async def query(buffer: LogBuffer, args: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """Answer a ``logs`` control request.

    ``args``: ``lines`` (the last N matching items, default 20), ``worker`` (a slot),
    ``err`` (warnings and errors only), ``since`` (seconds back from now), ``after`` (a
    ``seq``: only items after it, waiting up to ``wait`` seconds, at most MAX_WAIT, for the
    first). Returns ``{"items": [...], "seq": the ring's last seq, "lost": bool}``; ``lost``
    says items after ``after`` were pushed out before they were read.
    """
    slot = _int_or_none(args.get("worker"), "worker")
    lines = _int_or_none(args.get("lines"), "lines")
    since_seconds = args.get("since")
    since = None
    if since_seconds is not None:
        if not isinstance(since_seconds, (int, float)) or since_seconds < 0:
            raise ValueError(f"logs: 'since' is a number of seconds >= 0, got {since_seconds!r}")
        since = (time.time() if now is None else now) - float(since_seconds)
    errors_only = bool(args.get("err", False))
    after = _int_or_none(args.get("after"), "after")
    ring = buffer.ring
    if after is not None:
        wait = args.get("wait", 0)
        wait = min(float(wait), MAX_WAIT) if isinstance(wait, (int, float)) else 0.0
        await buffer.wait_after(after, wait)
        items = ring.since(after)
        first = ring.items()[0]["seq"] if ring.items() else ring.seq + 1
        lost = bool(after < ring.seq and first > after + 1)
    else:
        items, lost = ring.items(), False
    chosen = [item for item in items if matches(item, slot, errors_only, since)]
    if after is None:
        count = 20 if lines is None else max(lines, 0)
        chosen = chosen[-count:] if count else []
    return {"items": chosen, "seq": ring.seq, "lost": lost}


def _int_or_none(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"logs: {what!r} must be an integer, got {value!r:.40}")
    return value


def render(item: dict[str, Any], cluster: str = "") -> str:
    """One item as a text line: a worker's line as written; a raw one (a print(), a traceback)
    and a master record get the time, level (OUT/ERR for raw lines) and tag in the log's format."""
    text = str(item.get("text", ""))
    stream = item.get("stream")
    if stream in ("out", "err") and (_TEXT_LEVEL.match(text) or text.startswith("{")):
        return text
    created = float(item.get("time", 0.0))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)) + f",{int(created % 1 * 1000):03d}"
    label = str(stream).upper() if stream in ("out", "err") else str(item.get("level", "")).upper()
    return f"{stamp} {label:<7} [{item.get('tag', '')}] {text}"


def as_json(item: dict[str, Any], cluster: str) -> str:
    return json.dumps({"cluster": cluster, **item}, ensure_ascii=False)


_current: LogBuffer | None = None


def install(logger_name: str = "asynccluster") -> LogBuffer:
    """The master's buffer, attached to its logger and shared with the dashboard (one per process)."""
    global _current
    if _current is None:
        _current = LogBuffer()
        adopt_log_ring(_current, logger_name)
    return _current


def current() -> LogBuffer | None:
    return _current


def uninstall(logger_name: str = "asynccluster") -> None:
    """Detach the buffer (the end of an embedded Cluster.serve(), tests): the host program's
    logging is left as it was."""
    global _current
    if _current is not None:
        remove_log_ring(logger_name)
        logging.getLogger(logger_name).removeHandler(_current)
        _current = None


__all__ = ["LEVELS", "LogBuffer", "as_json", "current", "install", "line_level", "query", "render", "uninstall"]
