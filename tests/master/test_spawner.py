"""The spawner's failure path: a worker that could not be started leaks no descriptor."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import pytest

from asynccluster.config import Config
from asynccluster.master.process import SpawnRequest, WorkerHandle
from asynccluster.master.spawner import MultiprocessingSpawner


class _FailingProcess:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def start(self) -> None:
        raise OSError(24, "Too many open files")


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
async def test_a_failed_start_closes_both_socketpairs(monkeypatch: pytest.MonkeyPatch) -> None:
    spawner = MultiprocessingSpawner(asyncio.get_running_loop())
    monkeypatch.setattr(spawner._context, "Process", _FailingProcess)
    with socket.socket() as listener:
        request = SpawnRequest(Config(app="tests.apps.basic:app"), 0, 1, listener)
        before = open_fds()
        kept: list[BaseException] = []  # a kept exception keeps its frames (and their locals) alive
        for _ in range(3):
            with pytest.raises(OSError, match="Too many open files") as failure:
                spawner.spawn(request, WorkerHandle(slot=0, incarnation=1, started_at=0.0), None)  # type: ignore[arg-type]
            kept.append(failure.value)
        assert open_fds() == before  # before the fix: two descriptors more per failed start
