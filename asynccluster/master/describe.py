"""``asynccluster describe NAME``: one cluster in detail, like ``pm2 describe`` (issue 11 item 7).

What the master answers (a JSON-able dict): who it is (name, pid, state, start time,
version, Python, working directory, command line), where things are (control socket, log
file with its rotation, the in-memory log buffer), every setting with its value and where
it came from (command line, environment, config file, default: :func:`set_origins` is
given them by ``asynccluster run``, which knows), the workers with their restarts and last
exits, and the last exits of the cluster from the event ring.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any

from asynccluster.contracts.version import __version__
from asynccluster.master import logbuffer

LAST_EXITS = 10
_origins: dict[str, str] = {}


def set_origins(sources: dict[str, str] | None) -> None:
    """Where each setting came from (``load_config``'s sources), for ``describe``."""
    _origins.clear()
    _origins.update(sources or {})


def describe(supervisor: Any, status: dict[str, Any], control_socket: str) -> dict[str, Any]:
    config = supervisor.config
    settings = [
        {"name": fld.name, "value": _jsonable(getattr(config, fld.name)), "origin": _origins.get(fld.name, "unknown")}
        for fld in dataclasses.fields(config)
    ]
    events = getattr(supervisor, "events", None)
    exits = [e for e in (events.items() if events is not None else []) if e.get("kind") == "exit"][-LAST_EXITS:]
    buffer = logbuffer.current()
    return {
        "name": status.get("name"),
        "pid": os.getpid(),
        "state": status.get("state"),
        "app": config.app,
        "address": status.get("address"),
        "started_at": status.get("started_at"),
        "uptime": status.get("uptime"),
        "version": __version__,
        "python": sys.version.split()[0],
        "cwd": os.getcwd(),
        "command": list(sys.argv),
        "paths": {
            "control_socket": control_socket,
            "log_file": os.path.abspath(config.log_file) if config.log_file else None,
            "log_rotation": _rotation(config),
            "log_buffer": _buffer_text(buffer),
        },
        "preload": status.get("preload"),  # None without --preload (contracts/status.py)
        "restarts": sum(int(w.get("restarts", 0)) for w in status.get("workers", [])),
        "workers": [
            {k: w.get(k) for k in ("slot", "pid", "incarnation", "state", "uptime", "restarts", "last_exit")}
            for w in status.get("workers", [])
        ],
        "last_exits": [{"time": e.get("time"), "slot": e.get("slot"), "text": e.get("text")} for e in exits],
        "settings": settings,
        "described_at": time.time(),
    }


def _rotation(config: Any) -> str | None:
    if not config.log_file:
        return None
    rules = []
    if config.log_max_size:
        rules.append(f"at {config.log_max_size} bytes")
    if config.log_max_age:
        rules.append(f"every {config.log_max_age:g} s")
    if not rules:
        return "none (reopened on SIGUSR1, for logrotate)"
    return f"{' or '.join(rules)}, {config.log_backups} kept"


def _buffer_text(buffer: logbuffer.LogBuffer | None) -> str:
    if buffer is None:
        return "not started"
    ring = buffer.ring
    return (
        f"{len(ring.items())} lines, {ring.bytes} characters (at most {ring.size} lines, {ring.max_bytes} characters)"
    )


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


__all__ = ["describe", "set_origins"]
