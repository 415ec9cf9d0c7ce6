"""Access-log lines never make the event loop wait for the log's reader (issue 16).

Before: the loop thread appended each line to the logging handler's buffer under the
handler's lock and, past FLUSH_SIZE, wrote the buffer itself with blocking ``os.write``
calls, while the flusher thread wrote it under the same lock. When the log's reader fell
behind (a pipe, the master relaying a worker's output, a slow disk) a write blocked, and the
loop with it: under pipelined load, latency up to 2 s, 88 timeouts in 5 s and 30% fewer
requests than without the access log.

Now the loop thread formats the line (with the time of the response, as before) and never
blocks on the log:

- when no writer holds the handlers' locks (``acquire(blocking=False)``), the line is appended
  to their buffers as before (so it keeps its order with the worker's other log lines), and
  a full buffer (FLUSH_SIZE) is written by this module's writer thread, not by the loop;
- while a write is in progress (it may be blocked on a slow reader), lines wait in a bounded
  deque (no lock: ``deque.append`` is atomic under the GIL), which the writer thread moves
  to the handlers once it can, in order;
- when that deque holds :data:`CAPACITY` lines the reader is not keeping up: further lines
  are dropped and counted (``dropped``, which the worker's heartbeat carries, and one warning
  per :data:`REPORT_SECONDS`), rather than requests delayed.

This leans on :class:`asynccluster.logs.BufferedHandler`'s buffer (``pending``,
``pending_size``, ``lock``) and flusher, which exist for this fast path.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from asynccluster import logs

logger = logging.getLogger("asynccluster.worker")

# Lines waiting for the writer thread before new ones are dropped. At 100 k lines/s this is
# ~0.16 s of backlog, and ~2-3 MB of memory at most: a reader that far behind is not
# catching up, and holding more would only delay the lines and grow the worker.
CAPACITY = 16384

# One warning per this many seconds while lines are being dropped.
REPORT_SECONDS = 10.0

LineMaker = Callable[[dict[str, Any], float], str]

_queues: weakref.WeakSet[LineQueue] = weakref.WeakSet()


def queued_line_writer(access: logging.Logger, fmt: str) -> LineQueue | None:
    """A :class:`LineQueue` feeding this process's handlers, when :func:`logs.line_writer`
    would have written the access log directly (a worker whose logging asynccluster set up);
    None otherwise (the caller then logs records as usual)."""
    if logs.line_writer(access, fmt) is None:
        return None
    handlers = list(logs._process_handlers)  # what line_writer just checked: set up by setup_logging
    first = handlers[0]
    tag_filter = next(f for f in first.filters if isinstance(f, logs.TagFilter))
    make: LineMaker = first.formatter.line_maker(  # type: ignore[union-attr]
        access.name, logging.INFO, tag_filter.tag, tag_filter.slot, fmt
    )
    return LineQueue(make, handlers)


class LineQueue:
    """Formats on the loop thread, writes on its own thread; bounded, drops when full."""

    __slots__ = (
        "__weakref__",
        "_handlers",
        "_locks",
        "_make",
        "_reported",
        "_thread",
        "_waiting",
        "_wake",
        "capacity",
        "dropped",
    )

    def __init__(self, make: LineMaker, handlers: list[logs.BufferedHandler], capacity: int | None = None) -> None:
        self._make = make
        self._handlers = handlers
        self._locks = [handler.lock for handler in handlers]
        self._waiting: deque[str] = deque()  # lines that came while a write held the handlers
        self._wake = threading.Event()
        self.capacity = CAPACITY if capacity is None else capacity
        self.dropped = 0  # lines dropped since start (the loop thread counts, the writer reads)
        self._reported = 0  # the drop count at the last warning
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()
        _queues.add(self)

    def __call__(self, fields: dict[str, Any]) -> None:
        """One access line (loop thread): buffered now if the handlers are free, else queued."""
        waiting = self._waiting
        if waiting or not self._try_lock():
            if len(waiting) >= self.capacity:
                self.dropped += 1
                return
            waiting.append(self._make(fields, time.time()))
            if len(waiting) == 1:
                self._wake.set()
            return
        line = self._make(fields, time.time())
        full = False
        try:
            for handler in self._handlers:
                if not handler.pending:
                    logs._flusher.arm()  # written within FLUSH_INTERVAL, as before
                handler.pending.append(line)
                handler.pending_size += len(line)
                full = full or handler.pending_size > logs.FLUSH_SIZE
        finally:
            for lock in self._locks:
                lock.release()  # type: ignore[union-attr]
        if full:
            self._wake.set()  # the writer thread writes it, not the loop

    def _try_lock(self) -> bool:
        """Every handler's lock, without waiting; False (holding none) if one is taken."""
        taken: list[Any] = []
        for lock in self._locks:
            if not lock.acquire(blocking=False):  # type: ignore[union-attr]
                for held in taken:
                    held.release()
                return False
            taken.append(lock)
        return True

    def _run(self) -> None:
        next_report = 0.0
        while True:
            self._wake.wait()
            self._wake.clear()  # before writing: a line queued from now on sets it again
            self.drain()
            if self.dropped != self._reported and time.monotonic() >= next_report:
                self._report()
                next_report = time.monotonic() + REPORT_SECONDS

    def drain(self) -> None:
        """Write the handlers' buffers and every queued line, in order (writer thread; exit).

        Queued lines move into the buffers while this thread holds the handlers' locks, so the
        loop (which then cannot take them) queues behind them: the order is kept.
        """
        waiting = self._waiting
        while True:
            for handler in self._handlers:
                handler.flush()  # may block on a slow reader: only this thread waits
            if not waiting:
                return
            for lock in self._locks:
                lock.acquire()  # type: ignore[union-attr]
            try:
                for _ in range(len(waiting)):
                    line = waiting.popleft()
                    for handler in self._handlers:
                        handler.pending.append(line)
                        handler.pending_size += len(line)
            except IndexError:  # emptied meanwhile (the exit hook and the writer may both drain)
                pass
            finally:
                for lock in self._locks:
                    lock.release()  # type: ignore[union-attr]

    def _report(self) -> None:
        dropped = self.dropped
        logger.warning(
            "access log: %d line(s) dropped since the last report (%d in all): the log's reader "
            "is not keeping up, so lines are dropped rather than requests delayed",
            dropped - self._reported,
            dropped,
        )
        self._reported = dropped


@atexit.register
def _drain_at_exit() -> None:
    """Write what is still queued before logging's own exit flush (atexit runs this first)."""
    for queue in list(_queues):
        try:
            queue.drain()
        except Exception:  # logging never raises at exit
            pass
        if queue.dropped != queue._reported:
            queue._report()
