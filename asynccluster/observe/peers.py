"""The other clusters of this user, for the dashboard's links (issue 12).

Every running master has a control socket in the same private directory (the directory of
our own, master/control.py). We ask each other one for its ``status`` (the same
newline-delimited JSON protocol ``asynccluster status`` speaks) and read its admin address.
Bounded: at most :data:`MAX_PEERS` sockets, :data:`TIMEOUT` seconds each, all asked at once,
and the answer is cached for :data:`CACHE_SECONDS`, so a page polling it costs nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_PEERS = 32
TIMEOUT = 1.0
CACHE_SECONDS = 5.0
MAX_STATUS = 4 * 1024 * 1024  # bytes of one status answer
_ANY = {"0.0.0.0", "::", "[::]", ""}


def link_for(admin: str) -> str | None:
    """``"127.0.0.1:9001"`` -> ``"http://127.0.0.1:9001/"``; a wildcard host becomes loopback."""
    if not admin:
        return None
    host, _, port = admin.rpartition(":")
    if host in _ANY:
        host = "127.0.0.1"
    return f"http://{host}:{port}/"


async def ask_status(path: Path, timeout: float = TIMEOUT) -> dict[str, Any] | None:
    """The ``status`` of the master listening on ``path``; None if it does not answer in time."""
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path), limit=MAX_STATUS), timeout)
        writer.write(b'{"cmd": "status"}\n')
        line = await asyncio.wait_for(reader.readline(), timeout)
        answer = json.loads(line)
        result = answer.get("result") if isinstance(answer, dict) and answer.get("ok") else None
        return result if isinstance(result, dict) else None
    except (OSError, asyncio.TimeoutError, ValueError):
        return None
    finally:
        if writer is not None:
            writer.close()


class Peers:
    """``await peers.discover()`` -> ``[{"name", "state", "workers", "admin", "url", "self"}]``."""

    def __init__(self, own: Callable[[], dict[str, Any]], clock: Callable[[], float] = time.monotonic) -> None:
        self._own = own  # the monitor's extra: our control socket path and name
        self._clock = clock
        self._cached: tuple[float, list[dict[str, Any]]] | None = None
        self._lock = asyncio.Lock()

    async def discover(self) -> list[dict[str, Any]]:
        async with self._lock:
            if self._cached is not None and self._clock() - self._cached[0] < CACHE_SECONDS:
                return self._cached[1]
            found = await self._ask_all()
            self._cached = (self._clock(), found)
            return found

    async def _ask_all(self) -> list[dict[str, Any]]:
        own = self._own()
        socket_path = own.get("control_socket")
        if not socket_path:
            return []
        mine = Path(socket_path)
        with contextlib.suppress(OSError):
            others = sorted(p for p in mine.parent.glob("*.sock") if p != mine)[:MAX_PEERS]
            answers = await asyncio.gather(*(ask_status(path) for path in others))
            peers = [self._entry(path, status) for path, status in zip(others, answers, strict=True) if status]
            return [{"name": own.get("name"), "self": True, "url": link_for(str(own.get("admin", "")))}, *peers]
        return []

    @staticmethod
    def _entry(path: Path, status: dict[str, Any]) -> dict[str, Any]:
        admin = str(status.get("admin") or "")
        workers = status.get("workers") or []
        return {
            "name": status.get("name") or path.stem,
            "state": status.get("state"),
            "workers": len({w.get("slot") for w in workers if isinstance(w, dict)}),
            "admin": admin or None,
            "url": link_for(admin),
            "self": False,
        }


__all__ = ["Peers", "ask_status", "link_for"]
