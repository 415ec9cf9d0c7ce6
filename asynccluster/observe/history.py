"""The dashboard's numbers, once a second, and the last 10 minutes of them (issue 12).

:class:`Recorder` turns one :meth:`Monitor.view` (the supervisor's status with rates,
asynccluster/observe/aggregate.py) into:

- a *point* for the charts, kept in a ring of :data:`HISTORY` (600: ten minutes at one a
  second), so a page opened late still draws the last ten minutes;
- one *row* per worker incarnation for the table;
- a *cluster* summary.

Latency quantiles come from the workers' fixed-bucket histograms (observe/stats.py): the
per-second difference of each incarnation's cumulative counts, summed over the cluster
(merged histograms, like PromQL's ``sum by (le) (rate(...))``) and over the last
:data:`WINDOW` seconds, then :func:`~asynccluster.observe.aggregate.quantile`. Status
codes per class, in responses per second over each worker's own heartbeat interval. Units in
points and rows: seconds since the epoch for ``t``, milliseconds for latencies and loop lag,
percent of one core for CPU, MiB for RSS.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from asynccluster.contracts.states import WorkerState
from asynccluster.observe.aggregate import EMPTY_HISTOGRAM, histogram_delta, quantile

HISTORY = 600  # points: ten minutes at one a second
WINDOW = 10  # seconds of histogram deltas behind each latency quantile
CLASSES = ("2xx", "3xx", "4xx", "5xx")
MIB = 1024 * 1024


@dataclass
class _Seen:
    """What one incarnation had reported at the previous tick."""

    latency: tuple[int, ...]
    status: dict[str, int]
    window: deque[list[int]] = field(default_factory=lambda: deque(maxlen=WINDOW))
    beat: float | None = None  # the worker's clock in its last heartbeat
    rates: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0.0))


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _quantiles(counts: list[int]) -> dict[str, float | None]:
    return {name: _ms(quantile(counts, q)) for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))}


def _sum_histograms(histograms: Iterable[list[int]]) -> list[int]:
    total = list(EMPTY_HISTOGRAM)
    for counts in histograms:
        total = [a + b for a, b in zip(total, counts, strict=False)]
    return total


def status_classes(status: dict[str, Any]) -> dict[str, int]:
    """``{"200": 5, "404": 1}`` -> ``{"2xx": 5, "3xx": 0, "4xx": 1, "5xx": 0}`` (1xx is left out)."""
    classes = dict.fromkeys(CLASSES, 0)
    for code, count in status.items():
        key = f"{str(code)[:1]}xx"
        if key in classes:
            classes[key] += int(count or 0)
    return classes


class MasterCpu:
    """The master's own CPU use between two calls, in percent of one core."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = (clock(), self._cpu())

    @staticmethod
    def _cpu() -> float:
        times = os.times()
        return times.user + times.system

    def percent(self) -> float:
        now, cpu = self._clock(), self._cpu()
        elapsed = now - self._last[0]
        used = cpu - self._last[1]
        self._last = (now, cpu)
        return round(max(0.0, used / elapsed * 100), 2) if elapsed > 0 else 0.0


class Recorder:
    """Feed :meth:`add` one monitor view a second; it returns the frame and keeps the history."""

    def __init__(self, size: int = HISTORY, clock: Callable[[], float] = time.time) -> None:
        self.points: deque[dict[str, Any]] = deque(maxlen=size)
        self._clock = clock
        self._seen: dict[int, _Seen] = {}
        self._cluster_window: deque[list[int]] = deque(maxlen=WINDOW)
        self._master_cpu = MasterCpu()
        self._ticks = 0

    def add(self, view: dict[str, Any]) -> dict[str, Any]:
        """One tick: ``{"point": {...}, "workers": [row, ...], "cluster": {...}}``."""
        now = self._clock()
        rows, latency, status = [], [], dict.fromkeys(CLASSES, 0.0)
        alive: set[int] = set()
        for worker in view.get("workers", []):
            row, delta, classes = self._worker(worker)
            rows.append(row)
            alive.add(int(worker.get("pid") or 0))
            latency.append(delta)
            for key in CLASSES:
                status[key] += classes[key]
        for pid in set(self._seen) - alive:
            del self._seen[pid]  # that incarnation is gone
        self._cluster_window.append(_sum_histograms(latency))
        self._ticks += 1
        master_cpu = self._master_cpu.percent()
        point = {**self._point(now, rows, status), "master_cpu": master_cpu}
        self.points.append(point)
        return {"point": point, "workers": rows, "cluster": {**self._cluster(view, rows), "master_cpu": master_cpu}}

    def _worker(self, worker: dict[str, Any]) -> tuple[dict[str, Any], list[int], dict[str, float]]:
        """A table row, this tick's latency histogram delta, and its responses/s by status class."""
        heartbeat = worker.get("heartbeat") or {}
        stats = heartbeat.get("stats") or {}
        pid = int(worker.get("pid") or 0)
        counts = tuple(int(c) for c in (stats.get("latency_counts") or EMPTY_HISTOGRAM))
        status = {str(code): int(n) for code, n in (stats.get("status") or {}).items()}
        seen = self._seen.get(pid)
        if seen is None:
            # First sight: before the first tick its counts are history we did not watch; a
            # worker that appears later started since the last tick, so all of it is new.
            base_latency = counts if self._ticks == 0 else EMPTY_HISTOGRAM
            base_status = status if self._ticks == 0 else {}
            seen = self._seen[pid] = _Seen(base_latency, base_status)
        delta = histogram_delta(counts, seen.latency)
        self._status_rates(seen, status, heartbeat.get("time"))
        seen.latency, seen.status = counts, status
        seen.window.append(delta)
        lag = heartbeat.get("loop_lag")
        rss = heartbeat.get("rss")
        row = {
            "slot": worker.get("slot"),
            "pid": pid,
            "incarnation": worker.get("incarnation"),
            "state": worker.get("state"),
            "restarts": worker.get("restarts", 0),
            "uptime": worker.get("uptime"),
            "requests": stats.get("requests", 0),
            "rps": worker.get("req_per_s"),
            "in_flight": stats.get("in_flight", 0),
            "connections": stats.get("connections", 0),
            "loop_lag": None if lag is None else round(float(lag) * 1000, 3),
            "cpu": worker.get("cpu_percent"),
            "rss": None if rss is None else round(int(rss) / MIB, 1),
            "status": status_classes(status),
            "last_exit": worker.get("last_exit", ""),
            "retiring": worker.get("retiring", ""),
            **_quantiles(_sum_histograms(seen.window)),
        }
        return row, delta, seen.rates

    @staticmethod
    def _status_rates(seen: _Seen, status: dict[str, int], beat: Any) -> None:
        """Responses per second by class, over the worker's own heartbeat interval: our tick and
        its heartbeat are not in step, so a tick may see zero or two new heartbeats; a tick that
        saw none keeps the last rates instead of dropping to 0."""
        if not isinstance(beat, (int, float)) or beat == seen.beat:
            return
        elapsed = beat - seen.beat if seen.beat is not None and beat > seen.beat else 1.0
        seen.beat = float(beat)
        new = status_classes({code: max(0, n - seen.status.get(code, 0)) for code, n in status.items()})
        seen.rates = {key: round(count / elapsed, 1) for key, count in new.items()}

    def _point(self, now: float, rows: list[dict[str, Any]], status: dict[str, float]) -> dict[str, Any]:
        def total(key: str) -> float:
            return sum(float(row[key] or 0) for row in rows)

        slots: dict[str, float] = {}
        for row in rows:
            slots[str(row["slot"])] = round(slots.get(str(row["slot"]), 0.0) + float(row["rps"] or 0), 2)
        lags = [row["loop_lag"] for row in rows if row["loop_lag"] is not None]
        return {
            "t": round(now, 3),
            "rps": round(total("rps"), 2),
            **_quantiles(_sum_histograms(self._cluster_window)),
            **{key: round(value, 1) for key, value in status.items()},
            "in_flight": int(total("in_flight")),
            "connections": int(total("connections")),
            "cpu": round(total("cpu"), 1),
            "rss": round(total("rss"), 1),
            "loop_lag": max(lags) if lags else None,
            "ready": sum(1 for row in rows if row["state"] == WorkerState.READY),
            "slots": slots,
        }

    def _cluster(self, view: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
        status = dict.fromkeys(CLASSES, 0)
        for row in rows:
            for key in CLASSES:
                status[key] += row["status"][key]
        return {
            "name": view.get("name"),
            "app": view.get("app"),
            "pid": view.get("pid"),
            "address": view.get("address"),
            "admin": view.get("admin"),
            "state": view.get("state"),
            "desired": view.get("desired_workers"),
            "ready": sum(1 for row in rows if row["state"] == WorkerState.READY),
            "uptime": view.get("uptime"),
            "requests": sum(int(row["requests"] or 0) for row in rows),
            "status": status,
            "restarts": sum(int(row["restarts"] or 0) for row in {row["slot"]: row for row in rows}.values()),
        }


__all__ = ["CLASSES", "HISTORY", "Recorder", "status_classes"]
