"""Logging for the master and the workers (issue 3: every line says which process wrote it).

- Each line carries a tag: ``master 1234`` or ``worker 2 pid 1240``. The master can also log
  *on behalf of* a worker (its exit, the stacks it dumped) by passing ``extra={"tag": ...}``
  (see :func:`worker_tag`), so those lines sit under the worker's name.
- ``--log-level`` (``trace`` is below debug), ``--log-format text|json``.
- ``--log-file``: lines also go to this file, opened in append mode by every process (every
  ``write()`` is whole lines, at most PIPE_BUF bytes, on an O_APPEND file or a pipe, so lines
  from different workers never interleave); :func:`reopen_log_files` reopens it after
  logrotate moved it (SIGUSR1).
- The access log (one line per request, issue 2) must cost little: :func:`line_writer` hands
  the worker's access log a function that formats a line exactly as a record would be
  formatted (tag, time, text or JSON) without making a record, and appends it to the
  handlers' buffers. Buffered lines are written in batches: when a buffer passes
  FLUSH_SIZE, FLUSH_INTERVAL after the first buffered line (a flusher thread, so lines are
  written even while the loop is blocked by a stuck request), before any ordinary record
  (which is written at once: order is kept and warnings are never delayed), before a log
  file is reopened, and at exit (``logging.shutdown`` flushes every handler).

The master configures only the ``asynccluster`` logger (it may be embedded in a program with
its own logging); a worker process is ours, so there the root logger is configured and the
app's own log lines get the worker's tag too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import os
import select
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from asynccluster.config import Config

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

TEXT_FORMAT = "%(asctime)s %(levelname)-7s [%(tag)s] %(message)s"
# One write() carries at most this much (whole lines): a pipe write up to PIPE_BUF is atomic,
# so batched lines from several workers sharing the master's stderr pipe never interleave.
WRITE_CHUNK = getattr(select, "PIPE_BUF", 512)
FLUSH_SIZE = 64 * 1024  # buffered characters that trigger a write at once
FLUSH_INTERVAL = 0.2  # seconds a buffered line may wait: short enough for `tail -f`
_reopenable: list[ReopenableFileHandler] = []
_process_handlers: list[BufferedHandler] = []  # what setup_logging installed in this process
_process_target: logging.Logger | None = None  # the logger they are attached to
LineMaker = Callable[[dict[str, Any], float], str]  # (fields, created) -> the line, with its newline


def worker_tag(slot: int, pid: int) -> str:
    return f"worker {slot} pid {pid}"


def master_tag(pid: int | None = None) -> str:
    return f"master {pid or os.getpid()}"


def level_number(name: str) -> int:
    return TRACE if name == "trace" else int(logging.getLevelName(name.upper()))


class TagFilter(logging.Filter):
    """Gives every record a ``tag`` (unless the caller set one) and the slot, for JSON."""

    def __init__(self, tag: str, slot: int | None) -> None:
        super().__init__()
        self.tag = tag
        self.slot = slot

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "tag"):
            record.tag = self.tag
        if not hasattr(record, "slot"):
            record.slot = self.slot
        return True


class _SecondCache:
    """strftime() once per second, not once per line."""

    __slots__ = ("fmt", "second", "text")

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.second = -1
        self.text = ""

    def get(self, created: float) -> str:
        second = int(created)
        if second != self.second:
            self.text = time.strftime(self.fmt, time.localtime(created))
            self.second = second
        return self.text


def _msecs(created: float) -> int:
    return int((created - int(created)) * 1000)  # as logging.LogRecord computes msecs


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``; :meth:`line_maker` makes the same lines without a record."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def line_maker(self, name: str, levelno: int, tag: str, slot: int | None, fmt: str) -> LineMaker:
        # The whole line is one %-format over the caller's fields plus the time.
        middle = f" {logging.getLevelName(levelno):<7} [{tag}] ".replace("%", "%%")
        template = f"%(asctime)s,%(msecs)03d{middle}{fmt}\n"
        stamp = _SecondCache(self.default_time_format)

        def line(fields: dict[str, Any], created: float) -> str:
            fields["asctime"] = stamp.get(created)
            fields["msecs"] = _msecs(created)
            return template % fields

        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, tag, slot, pid, message (+ exc)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
            + f".{int(record.msecs):03d}"
            + time.strftime("%z", time.localtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "tag": getattr(record, "tag", ""),
            "slot": getattr(record, "slot", None),
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)

    def line_maker(self, name: str, levelno: int, tag: str, slot: int | None, fmt: str) -> LineMaker:
        # The object format() would make, with the time and the message left to fill in.
        dumps = json.JSONEncoder(ensure_ascii=False).encode
        level = dumps(logging.getLevelName(levelno).lower())
        middle = f'", "level": {level}, "logger": {dumps(name)}, "tag": {dumps(tag)}, '
        middle += f'"slot": {dumps(slot)}, "pid": {os.getpid()}, "message": '
        stamp = _SecondCache("%Y-%m-%dT%H:%M:%S")
        zone = _SecondCache("%z")

        def line(fields: dict[str, Any], created: float) -> str:
            message = dumps(fmt % fields)
            return f'{{"time": "{stamp.get(created)}.{_msecs(created):03d}{zone.get(created)}{middle}{message}}}\n'

        return line


class BufferedHandler(logging.StreamHandler):
    """A stream handler that writes whole lines in batches (see the module docstring).

    An ordinary record is appended and everything buffered is written at once (so records
    keep their order and are never delayed); :meth:`write_line` only appends, for the
    access log. Writes go straight to the file descriptor in chunks of whole lines of at
    most WRITE_CHUNK bytes.
    """

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self.pending: list[str] = []
        self.pending_size = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        with self.lock:  # type: ignore[union-attr]
            self.pending.append(line)
            self._write_pending()

    def write_line(self, line: str) -> None:
        """Buffer one formatted line (with its newline); written within FLUSH_INTERVAL."""
        with self.lock:  # type: ignore[union-attr]
            if not self.pending:
                _flusher.arm()
            self.pending.append(line)
            self.pending_size += len(line)
            if self.pending_size > FLUSH_SIZE:
                self._write_pending()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_pending()
            if self.stream is not None and hasattr(self.stream, "flush"):
                try:
                    self.stream.flush()
                except (OSError, ValueError):  # a closed pipe or file: logging never raises
                    pass

    def _write_pending(self) -> None:
        """Write the buffer (the lock is held). A failed write drops it, like a failed emit."""
        pending = self.pending
        if not pending:
            return
        self.pending = []
        self.pending_size = 0
        stream = self.stream
        if stream is None:
            return
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation: e.g. captured by pytest
            fd = -1
        try:
            if fd < 0:
                stream.write("".join(pending))
                stream.flush()
                return
            stream.flush()  # anything written through the stream itself goes first
            for chunk in _chunks(pending):
                _write_all(fd, chunk)
        except Exception:
            _report_lost(len(pending), stream)


def _report_lost(count: int, failed: Any, text: str = "") -> None:
    """Say on stderr that lines were lost; never raise (logging.Handler.handleError semantics).

    A logging call must not raise into its caller: when stderr is a closed pipe
    (``asynccluster run ... | head``), a BrokenPipeError escaping a log call in the master
    would abort a signal handler or an exit handler half-way (no stop, no respawn).
    """
    if failed is sys.stderr:
        return  # it is stderr that fails: nowhere to say so
    try:
        sys.stderr.write(f"--- asynccluster: {text or f'could not write {count} log line(s)'} ---\n")
        sys.stderr.flush()
    except Exception:
        pass


def _chunks(lines: list[str]) -> list[bytes]:
    """The lines as bytes, grouped into chunks of at most WRITE_CHUNK bytes (a longer line alone)."""
    chunks: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for text in lines:
        data = text.encode("utf-8", "backslashreplace")
        if size and size + len(data) > WRITE_CHUNK:
            chunks.append(b"".join(current))
            current, size = [], 0
        current.append(data)
        size += len(data)
    if current:
        chunks.append(b"".join(current))
    return chunks


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class ReopenableFileHandler(BufferedHandler, logging.handlers.RotatingFileHandler):
    """A file handler whose file can be reopened in place (logrotate's "create" mode), and
    that rotates it itself when asked (issue 11): before a line that would take the file past
    ``max_bytes``, or once the file has been written to for ``max_age`` seconds (counted from
    when this process opened it), whichever comes first. The stdlib's
    RotatingFileHandler.doRollover renames FILE -> FILE.1 -> ... -> FILE.``backups`` (the
    oldest is deleted). Only the master writes the file (workers' lines reach it through
    :func:`relay_line`), so one process rotates and no line is lost or split across it.
    """

    def __init__(self, filename: str, max_bytes: int = 0, max_age: float = 0.0, backups: int = 5) -> None:
        logging.handlers.RotatingFileHandler.__init__(
            self, filename, mode="a", maxBytes=max_bytes, backupCount=max(backups, 1), encoding="utf-8"
        )
        self.pending = []
        self.pending_size = 0
        self.max_age = max_age
        self.opened_at = time.time()

    def _write_pending(self) -> None:
        if self.pending and self.stream is not None and (self.maxBytes > 0 or self.max_age > 0):
            self._write_rotating()
        else:
            super()._write_pending()

    def _write_rotating(self) -> None:
        """Write the buffer, rotating between two lines when due (the lock is held)."""
        pending, self.pending, self.pending_size = self.pending, [], 0
        try:
            size = os.fstat(self.stream.fileno()).st_size  # type: ignore[union-attr]
        except (AttributeError, OSError, ValueError):
            size = 0
        batch: list[str] = []
        for line in pending:
            length = len(line.encode("utf-8", "backslashreplace"))
            if size and self._due(size + length):
                self._write_batch(batch)
                batch, size = [], 0
                self._rotate()
            batch.append(line)
            size += length
        self._write_batch(batch)

    def _due(self, size_after: int) -> bool:
        too_big = 0 < self.maxBytes < size_after
        return too_big or (self.max_age > 0 and time.time() - self.opened_at >= self.max_age)

    def _write_batch(self, lines: list[str]) -> None:
        self.pending = lines
        BufferedHandler._write_pending(self)

    def _rotate(self) -> None:
        try:
            self.doRollover()
        except OSError as exc:  # never raise from logging; keep writing where we can
            _report_lost(0, None, f"could not rotate {self.baseFilename}: {exc}")
            if self.stream is None:
                with contextlib.suppress(OSError):
                    self.stream = self._open()
        self.opened_at = time.time()

    def reopen(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_pending()  # what was logged before the rotation goes to the old file
            try:
                if self.stream is not None:
                    self.stream.close()
                self.stream = self._open()
                self.opened_at = time.time()
            except OSError as exc:  # e.g. the directory went away: never raise; the file's lines
                self.stream = None  # are dropped until the next reopen (stderr still gets them)
                _report_lost(0, None, f"could not reopen {self.baseFilename}: {exc}")


class _Flusher:
    """One daemon thread per process: writes buffered lines FLUSH_INTERVAL after they came."""

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def arm(self) -> None:
        if self._thread is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="asynccluster-log-flusher", daemon=True)
            self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            # Not synchronisation: the batching window. Lines that come meanwhile share one write.
            time.sleep(FLUSH_INTERVAL)
            flush_buffered()


_flusher = _Flusher()


def flush_buffered() -> None:
    """Write every line buffered in this process (graceful stop, tests)."""
    for handler in [*_process_handlers, *_relays.values()]:
        handler.flush()


_relays: dict[str, BufferedHandler] = {}  # "out"/"err" -> the master's stdout/stderr, for relay_line


def relay_line(line: str, stream: str) -> None:
    """A line (with its newline) a worker wrote to its stdout ("out") or stderr ("err"),
    captured by the master (master/logbuffer.py): on to the master's own stdout or stderr,
    as the worker wrote it before, and to the log file (issue 11: the file has every line)."""
    target = _relays.get(stream)
    if target is None:
        sink = sys.stdout if stream == "out" else sys.stderr
        if sink is None:  # started with that descriptor closed (issue 9): the file still gets it
            target = None
        else:
            target = _relays[stream] = BufferedHandler(sink)
    if target is not None:
        target.write_line(line)
    for handler in _reopenable:
        handler.write_line(line)


def make_formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return TextFormatter()


def build_handlers(config: Config, tag: str, slot: int | None) -> list[BufferedHandler]:
    formatter = make_formatter(config.log_format)
    tag_filter = TagFilter(tag, slot)
    handlers: list[BufferedHandler] = [BufferedHandler(sys.stderr)]
    if config.log_file:
        handlers.append(
            ReopenableFileHandler(config.log_file, config.log_max_size, config.log_max_age, config.log_backups)
        )
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(tag_filter)
    return handlers


def setup_logging(config: Config, *, slot: int | None = None) -> None:
    """Configure logging for the master (``slot`` None) or the worker of ``slot``."""
    is_worker = slot is not None
    tag = worker_tag(slot, os.getpid()) if slot is not None else master_tag()
    global _process_target
    target = logging.getLogger() if is_worker else logging.getLogger("asynccluster")
    for handler in list(target.handlers):
        target.removeHandler(handler)
        handler.close()
    _reopenable.clear()
    _process_handlers.clear()
    _process_target = target
    for handler in build_handlers(config, tag, slot):
        target.addHandler(handler)
        _process_handlers.append(handler)
        if isinstance(handler, ReopenableFileHandler):
            _reopenable.append(handler)
    level = level_number(config.log_level)
    target.setLevel(level)
    logging.getLogger("asynccluster").setLevel(level)
    if not is_worker:
        target.propagate = False  # embedded: do not print twice through the host's root logger


def reopen_log_files() -> int:
    """Reopen every log file of this process (SIGUSR1); returns how many were reopened."""
    for handler in _reopenable:
        handler.reopen()
    return len(_reopenable)


def line_writer(
    logger: logging.Logger, fmt: str, levelno: int = logging.INFO
) -> Callable[[dict[str, Any]], None] | None:
    """A fast path for one logger's lines at one level: ``write(fields)`` makes the line that
    logging ``fmt % fields`` would write (tag, time; text or JSON) and buffers it in this
    process's handlers, without a LogRecord.

    Only when every line of ``logger`` would end up in exactly those handlers (they were set
    up by :func:`setup_logging` and nothing on the way adds handlers or filters); otherwise
    None, and the caller logs records as usual (tests, an embedding program's logging). The
    caller still checks ``logger.isEnabledFor(levelno)``; ``fields`` gets time keys added.
    """
    handlers = list(_process_handlers)
    if not handlers or not _routes_only_to(logger, _process_target, handlers):
        return None
    first = handlers[0]
    tag_filter = next((f for f in first.filters if isinstance(f, TagFilter)), None)
    formatter = first.formatter
    line_maker = getattr(formatter, "line_maker", None)
    if tag_filter is None or line_maker is None:
        return None
    if any(h.formatter is not formatter or h.filters != first.filters or h.level > levelno for h in handlers):
        return None
    make: LineMaker = line_maker(logger.name, levelno, tag_filter.tag, tag_filter.slot, fmt)
    clock = time.time
    if len(handlers) == 1:
        write_line = handlers[0].write_line

        def write_one(fields: dict[str, Any]) -> None:
            write_line(make(fields, clock()))

        return write_one
    writers = [handler.write_line for handler in handlers]

    def write(fields: dict[str, Any]) -> None:
        line = make(fields, clock())
        for write_line in writers:
            write_line(line)

    return write


def _routes_only_to(logger: logging.Logger, target: logging.Logger | None, handlers: list[BufferedHandler]) -> bool:
    """Whether records of ``logger`` reach ``handlers`` on ``target`` and nothing else."""
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return False
        if current is target:
            return current.handlers == handlers
        if current.handlers or not current.propagate:
            return False
        current = current.parent
    return False
