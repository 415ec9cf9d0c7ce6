"""Logging for the master and the workers (issue 3: every line says which process wrote it).

- Each line carries a tag: ``master 1234`` or ``worker 2 pid 1240``. The master can also log
  *on behalf of* a worker (its exit, the stacks it dumped) by passing ``extra={"tag": ...}``
  (see :func:`worker_tag`), so those lines sit under the worker's name.
- ``--log-level`` (``trace`` is below debug), ``--log-format text|json``.
- ``--log-file``: lines also go to this file, opened in append mode by every process (each
  line is one ``write()`` on an O_APPEND file, so lines from different workers never
  interleave); :func:`reopen_log_files` reopens it after logrotate moved it (SIGUSR1).

The master configures only the ``asynccluster`` logger (it may be embedded in a program with
its own logging); a worker process is ours, so there the root logger is configured and the
app's own log lines get the worker's tag too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from asynccluster.config import Config

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

TEXT_FORMAT = "%(asctime)s %(levelname)-7s [%(tag)s] %(message)s"
_reopenable: list[ReopenableFileHandler] = []


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


class ReopenableFileHandler(logging.FileHandler):
    """A file handler whose file can be reopened in place (logrotate's "create" mode)."""

    def reopen(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self.stream is not None:
                self.stream.close()
            self.stream = self._open()


def make_formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)


def build_handlers(config: Config, tag: str, slot: int | None) -> list[logging.Handler]:
    formatter = make_formatter(config.log_format)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if config.log_file:
        handlers.append(ReopenableFileHandler(config.log_file, mode="a", encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(TagFilter(tag, slot))
    return handlers


def setup_logging(config: Config, *, slot: int | None = None) -> None:
    """Configure logging for the master (``slot`` None) or the worker of ``slot``."""
    is_worker = slot is not None
    tag = worker_tag(slot, os.getpid()) if slot is not None else master_tag()
    target = logging.getLogger() if is_worker else logging.getLogger("asynccluster")
    for handler in list(target.handlers):
        target.removeHandler(handler)
        handler.close()
    _reopenable.clear()
    for handler in build_handlers(config, tag, slot):
        target.addHandler(handler)
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
