"""A fake supervisor for the control/observe unit tests: status() from plain data, operations recorded."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from asynccluster.contracts.results import ReloadResult, RestartResult, ScaleResult
from asynccluster.observe.stats import LATENCY_BUCKETS


def heartbeat(requests: int = 0, *, at: float | None = None, cpu: float = 0.0, app_metrics: Any = None,
              status: dict[str, int] | None = None, latency: list[int] | None = None) -> dict[str, Any]:  # fmt: skip
    counts = latency or [0] * (len(LATENCY_BUCKETS) + 1)
    return {
        "stats": {
            "requests": requests,
            "in_flight": 1,
            "connections": 2,
            "status": status or ({"200": requests} if requests else {}),
            "latency_counts": counts,
            "latency_sum": 0.001 * sum(counts),
        },
        "loop_lag": 0.0012,
        "rss": 30 * 1024 * 1024,
        "cpu": cpu,
        "app_metrics": app_metrics or {},
        "time": time.time() if at is None else at,
    }


def worker(slot: int, pid: int, *, state: str = "ready", requests: int = 0, incarnation: int = 1,
           **hb: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "slot": slot,
        "pid": pid,
        "incarnation": incarnation,
        "state": state,
        "started_at": time.time() - 65,
        "restarts": 0,
        "last_exit": None,
        "heartbeat": heartbeat(requests, **hb),
    }


@dataclass
class FakeSupervisor:
    workers: list[dict[str, Any]] = field(default_factory=lambda: [worker(0, 1000), worker(1, 1001)])
    state: str = "running"
    calls: list[tuple[str, Any]] = field(default_factory=list)
    fail_with: Exception | None = None
    stopped: asyncio.Event | None = None
    max_workers: int = 16  # --max-workers, as the control server reads it

    @property
    def desired(self) -> int:
        """The worker count the cluster keeps, as the control server reads it."""
        return len(self.workers)

    def status(self) -> dict[str, Any]:
        return {
            "name": "fake",
            "app": "tests.apps.basic:app",
            "pid": 4242,
            "address": "127.0.0.1:8000",
            "listener": "reuseport",
            "started_at": time.time() - 120,
            "state": self.state,
            "ready": any(w["state"] == "ready" for w in self.workers),
            "workers": self.workers,
            "accept_queue": {str(w["slot"]): 0 for w in self.workers},
        }

    async def reload(self) -> ReloadResult:
        self.calls.append(("reload", None))
        if self.fail_with:
            raise self.fail_with
        total = len(self.workers)
        return ReloadResult(True, total, total, 0.1, message=f"reloaded {total}/{total} workers in 0.1 s, 0 failures")

    async def scale(self, count: int) -> ScaleResult:
        self.calls.append(("scale", count))
        before = len(self.workers)
        return ScaleResult(True, before, count, message=f"scaled from {before} to {count} workers")

    async def scale_by(self, delta: int) -> ScaleResult:
        # +N / -N: the real supervisor applies the delta under its lock; recorded as the target.
        return await self.scale(len(self.workers) + delta)

    async def restart(self, slot: int) -> RestartResult:
        self.calls.append(("restart", slot))
        return RestartResult(True, slot, message=f"restarted slot {slot}")

    async def stop(self, force: bool = False) -> None:
        self.calls.append(("stop", force))
        self.state = "stopping"
        if self.stopped is not None:
            self.stopped.set()
