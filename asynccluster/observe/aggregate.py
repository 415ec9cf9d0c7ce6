"""Merging what the workers report into cluster-wide numbers, in the master.

Workers send cumulative counters in their heartbeat (asynccluster/observe/stats.py,
asynccluster/metrics.py). Everything derived lives here, with no I/O:

- per-incarnation rates (requests/s, CPU %) from two heartbeats, and recent latency
  quantiles from the difference of two histograms (:class:`Monitor`, which samples the
  supervisor once a second, so even a one-shot ``asynccluster status`` shows a rate);
- per-slot sums for the Prometheus exposition (:func:`merge_by_slot`): during a reload a
  slot briefly has two incarnations, and one ``worker="slot"`` series must cover both;
- the app's own metrics merged across processes (:func:`merge_app_metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from asynccluster.contracts.states import WorkerState
from asynccluster.observe.stats import LATENCY_BUCKETS

# Samples kept per worker incarnation: one a second, enough for a minute of sparkline.
HISTORY = 60
# Latency quantiles are shown over this recent window (seconds), not the whole lifetime.
LATENCY_WINDOW = 10.0
EMPTY_HISTOGRAM: tuple[int, ...] = (0,) * (len(LATENCY_BUCKETS) + 1)

StatusFn = Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Sample:
    """One heartbeat of one worker incarnation, reduced to what rates need."""

    time: float
    requests: int
    cpu: float
    latency_counts: tuple[int, ...]


@dataclass
class Track:
    """The recent heartbeats of one worker incarnation (keyed by pid)."""

    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=HISTORY + 1))
    rates: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))

    def add(self, sample: Sample) -> None:
        if self.samples and sample.time <= self.samples[-1].time:
            return  # the same heartbeat seen twice
        if self.samples:
            self.rates.append(_rate(self.samples[-1], sample))
        self.samples.append(sample)


def _rate(old: Sample, new: Sample) -> float:
    elapsed = new.time - old.time
    return max(0, new.requests - old.requests) / elapsed if elapsed > 0 else 0.0


def sample_of(heartbeat: dict[str, Any]) -> Sample | None:
    stats = heartbeat.get("stats") or {}
    if "time" not in heartbeat:
        return None
    counts = tuple(stats.get("latency_counts") or EMPTY_HISTOGRAM)
    return Sample(float(heartbeat["time"]), int(stats.get("requests", 0)), float(heartbeat.get("cpu", 0.0)), counts)


# ---------------------------------------------------------------- histogram quantiles


def quantile(counts: Iterable[int], q: float) -> float | None:
    """Estimate a quantile from non-cumulative bucket counts, like PromQL histogram_quantile.

    Linear interpolation inside the bucket holding the rank; the +Inf bucket answers with
    the largest finite bound. None when there is nothing to estimate from.
    """
    counts = list(counts)
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    cumulative = 0
    for index, count in enumerate(counts):
        if count and cumulative + count >= rank:
            if index >= len(LATENCY_BUCKETS):
                return LATENCY_BUCKETS[-1]
            lower = LATENCY_BUCKETS[index - 1] if index else 0.0
            upper = LATENCY_BUCKETS[index]
            return lower + (upper - lower) * (rank - cumulative) / count
        cumulative += count
    return LATENCY_BUCKETS[-1]


def histogram_delta(new: Iterable[int], old: Iterable[int]) -> list[int]:
    return [max(0, a - b) for a, b in zip(new, old, strict=False)]


# ---------------------------------------------------------------- the monitor (rates, enriched status)


class Monitor:
    """Keeps a minute of heartbeats per worker and derives the numbers people look at."""

    def __init__(self, status_fn: StatusFn, clock: Callable[[], float] = time.time) -> None:
        self._status_fn = status_fn
        self._clock = clock
        self._tracks: dict[int, Track] = {}
        # Added to every status view: the control socket path, the admin address, the log file.
        self.extra: dict[str, Any] = {}

    def sample(self) -> dict[str, Any]:
        """Read the supervisor's status once and remember the heartbeats in it."""
        status = self._status_fn()
        seen: set[int] = set()
        for worker in status.get("workers", []):
            pid = worker.get("pid")
            if pid is None:
                continue
            seen.add(pid)
            heartbeat_sample = sample_of(worker.get("heartbeat") or {})
            if heartbeat_sample is not None:
                self._tracks.setdefault(pid, Track()).add(heartbeat_sample)
        for pid in set(self._tracks) - seen:
            del self._tracks[pid]  # that incarnation is gone
        return status

    def view(self) -> dict[str, Any]:
        """The supervisor's status plus rates, quantiles, uptimes and totals (status --json)."""
        status = self.sample()
        now = self._clock()
        workers = [self._enrich_worker(worker, now) for worker in status.get("workers", [])]
        view = {**status, **self.extra, "workers": workers}
        view["uptime"] = _since(status.get("started_at"), now)
        view["totals"] = totals(workers)
        return view

    def _enrich_worker(self, worker: dict[str, Any], now: float) -> dict[str, Any]:
        heartbeat = worker.get("heartbeat") or {}
        stats = heartbeat.get("stats") or {}
        track = self._tracks.get(worker.get("pid", -1))
        enriched = {
            **worker,
            "uptime": _since(worker.get("started_at"), now),
            "requests": stats.get("requests", 0),
            "in_flight": stats.get("in_flight", 0),
            "connections": stats.get("connections", 0),
            "loop_lag": heartbeat.get("loop_lag"),
            "rss": heartbeat.get("rss"),
            "cpu": heartbeat.get("cpu"),
            "req_per_s": None,
            "cpu_percent": None,
            "req_history": [],
            "latency_p50": None,
            "latency_p99": None,
        }
        if track is not None and track.samples:
            enriched.update(_derived(track))
        elif stats:
            enriched.update(_latencies(stats.get("latency_counts") or EMPTY_HISTOGRAM))
        return enriched


def _derived(track: Track) -> dict[str, Any]:
    newest = track.samples[-1]
    derived: dict[str, Any] = {"req_history": [round(rate, 3) for rate in track.rates]}
    if len(track.samples) >= 2:
        previous = track.samples[-2]
        elapsed = newest.time - previous.time
        derived["req_per_s"] = track.rates[-1] if track.rates else 0.0
        derived["cpu_percent"] = max(0.0, (newest.cpu - previous.cpu) / elapsed * 100) if elapsed > 0 else 0.0
    baseline = _baseline(track, newest.time - LATENCY_WINDOW)
    derived.update(_latencies(histogram_delta(newest.latency_counts, baseline)))
    return derived


def _baseline(track: Track, since: float) -> tuple[int, ...]:
    """The histogram at the start of the window (zeros: the whole lifetime, for a lone sample)."""
    older = [sample for sample in track.samples if sample.time <= since]
    if older:
        return older[-1].latency_counts
    if len(track.samples) >= 2:
        return track.samples[0].latency_counts  # watched for less than the window: since then
    return EMPTY_HISTOGRAM


def _latencies(counts: Iterable[int]) -> dict[str, Any]:
    counts = list(counts)
    return {"latency_p50": quantile(counts, 0.5), "latency_p99": quantile(counts, 0.99)}


def _since(started_at: Any, now: float) -> float | None:
    return max(0.0, now - float(started_at)) if isinstance(started_at, (int, float)) else None


def totals(workers: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [w["req_per_s"] for w in workers if w.get("req_per_s") is not None]
    return {
        "workers_ready": sum(1 for w in workers if w.get("state") == WorkerState.READY),
        "workers_total": len({w.get("slot") for w in workers}),
        "requests": sum(int(w.get("requests") or 0) for w in workers),
        "req_per_s": sum(rates) if rates else None,
        "in_flight": sum(int(w.get("in_flight") or 0) for w in workers),
        "connections": sum(int(w.get("connections") or 0) for w in workers),
    }


# ---------------------------------------------------------------- one monitor per supervisor


class _Shared:
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.users = 0
        self.task: asyncio.Task[None] | None = None


# Keyed by id(): a supervisor need not be hashable; the entry goes when its last user releases it.
_shared: dict[int, _Shared] = {}


def acquire_monitor(supervisor: Any, interval: float = 1.0) -> Monitor:
    """The supervisor's monitor, sampling once per ``interval`` while anyone holds it."""
    shared = _shared.get(id(supervisor))
    if shared is None:
        shared = _shared[id(supervisor)] = _Shared(Monitor(supervisor.status))
    shared.users += 1
    if shared.task is None:
        shared.task = asyncio.get_running_loop().create_task(_sample_forever(shared.monitor, interval))
    return shared.monitor


async def release_monitor(supervisor: Any) -> None:
    shared = _shared.get(id(supervisor))
    if shared is None:
        return
    shared.users -= 1
    if shared.users > 0:
        return
    del _shared[id(supervisor)]
    if shared.task is not None:
        shared.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await shared.task


async def _sample_forever(monitor: Monitor, interval: float) -> None:
    while True:
        try:
            monitor.sample()
        except Exception:  # a status() hiccup must not end the sampling
            pass
        await asyncio.sleep(interval)


# ---------------------------------------------------------------- per-slot sums for /metrics


def merge_by_slot(workers: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """One entry per slot, summing the incarnations it has right now (old + new in a reload)."""
    merged: dict[int, dict[str, Any]] = {}
    for worker in sorted(workers, key=lambda w: (w.get("slot", 0), w.get("incarnation", 0))):
        slot = int(worker.get("slot", 0))
        heartbeat = worker.get("heartbeat") or {}
        stats = heartbeat.get("stats") or {}
        entry = merged.setdefault(slot, _empty_slot())
        entry["incarnations"] += 1
        entry["ready"] = entry["ready"] or worker.get("state") == WorkerState.READY
        entry["restarts"] = max(entry["restarts"], int(worker.get("restarts") or 0))
        for key in ("requests", "in_flight", "connections", "access_log_dropped"):
            entry[key] += int(stats.get(key) or 0)
        for code, count in (stats.get("status") or {}).items():
            entry["status"][str(code)] = entry["status"].get(str(code), 0) + int(count)
        counts = stats.get("latency_counts") or EMPTY_HISTOGRAM
        entry["latency_counts"] = [a + int(b) for a, b in zip(entry["latency_counts"], counts, strict=False)]
        entry["latency_sum"] += float(stats.get("latency_sum") or 0.0)
        entry["loop_lag"] = max(entry["loop_lag"], float(heartbeat.get("loop_lag") or 0.0))
        entry["rss"] += int(heartbeat.get("rss") or 0)
        entry["cpu"] += float(heartbeat.get("cpu") or 0.0)
        entry["app_metrics"].append(heartbeat.get("app_metrics") or {})
    return merged


def _empty_slot() -> dict[str, Any]:
    return {
        "incarnations": 0,
        "ready": False,
        "restarts": 0,
        "requests": 0,
        "in_flight": 0,
        "connections": 0,
        "access_log_dropped": 0,
        "status": {},
        "latency_counts": list(EMPTY_HISTOGRAM),
        "latency_sum": 0.0,
        "loop_lag": 0.0,
        "rss": 0,
        "cpu": 0.0,
        "app_metrics": [],
    }


@dataclass
class AppMetric:
    """An app metric merged over the cluster: samples keyed by (slot, label values)."""

    name: str
    type: str
    help: str
    labels: tuple[str, ...]
    samples: dict[tuple[str, tuple[str, ...]], float] = field(default_factory=dict)


def merge_app_metrics(slots: dict[int, dict[str, Any]]) -> list[AppMetric]:
    """Merge every worker's ``metrics.snapshot()``.

    The first declaration seen of a name wins; a worker declaring it differently (new code
    mid-reload) is skipped for that metric rather than producing an invalid exposition.
    Counters of a slot's two incarnations add up; for gauges the newest incarnation wins.
    """
    merged: dict[str, AppMetric] = {}
    for slot in sorted(slots):
        for snapshot in slots[slot]["app_metrics"]:  # oldest incarnation first
            for name, data in snapshot.items():
                _merge_one(merged, str(slot), name, data)
    return [merged[name] for name in sorted(merged)]


def _merge_one(merged: dict[str, AppMetric], slot: str, name: str, data: dict[str, Any]) -> None:
    kind = data.get("type", "untyped")
    labels = tuple(data.get("labels") or ())
    metric = merged.get(name)
    if metric is None:
        metric = merged[name] = AppMetric(name, kind, str(data.get("help", "")), labels)
    elif metric.type != kind or metric.labels != labels:
        return
    for label_values, value in data.get("samples") or ():
        values = tuple(str(v) for v in label_values)
        if len(values) != len(labels):
            continue
        key = (slot, values)
        if kind == "counter":
            metric.samples[key] = metric.samples.get(key, 0.0) + float(value)
        else:
            metric.samples[key] = float(value)
