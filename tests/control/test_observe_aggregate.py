"""Rates, quantiles and totals derived by the master's Monitor from worker heartbeats."""

from __future__ import annotations

from typing import Any

import pytest

from asynccluster.observe.aggregate import Monitor, histogram_delta, merge_by_slot, quantile
from asynccluster.observe.stats import LATENCY_BUCKETS
from tests.control.fakes import FakeSupervisor, worker

N = len(LATENCY_BUCKETS) + 1


def counts(**at: int) -> list[int]:
    """Bucket counts by bucket index, e.g. counts(b3=10)."""
    values = [0] * N
    for key, value in at.items():
        values[int(key[1:])] = value
    return values


def test_quantile_interpolates_inside_the_bucket() -> None:
    # 100 observations all in bucket 3 (0.0025, 0.005]: p50 is the bucket's middle.
    assert quantile(counts(b3=100), 0.5) == pytest.approx(0.00375)
    # 90 fast in bucket 0 (0, 0.0005], 10 slow in bucket 7 (0.05, 0.1]: p99 is among the slow.
    p99 = quantile(counts(b0=90, b7=10), 0.99)
    assert p99 is not None and 0.05 < p99 <= 0.1
    p50 = quantile(counts(b0=90, b7=10), 0.5)
    assert p50 is not None and p50 <= 0.0005
    assert quantile([0] * N, 0.5) is None
    # Everything beyond the last bound: the largest finite bound, as histogram_quantile does.
    assert quantile(counts(**{f"b{N - 1}": 5}), 0.99) == LATENCY_BUCKETS[-1]
    assert histogram_delta([5, 3], [2, 4]) == [3, 0]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_monitor_rates_cpu_and_history_from_successive_heartbeats() -> None:
    sup = FakeSupervisor(workers=[worker(0, 100, requests=0, at=1000.0, cpu=1.0)])
    clock = Clock(1000.5)
    monitor = Monitor(sup.status, clock)
    first = monitor.view()["workers"][0]
    assert first["req_per_s"] is None and first["requests"] == 0  # one heartbeat: no rate yet

    sup.workers[0] = worker(0, 100, requests=50, at=1002.0, cpu=1.5, latency=counts(b2=50))
    sup.workers[0]["started_at"] = 990.0
    monitor.sample()
    monitor.sample()  # the same heartbeat seen again must not count twice
    clock.now = 1002.5
    view = monitor.view()
    row = view["workers"][0]
    assert row["req_per_s"] == pytest.approx(25.0)
    assert row["cpu_percent"] == pytest.approx(25.0)
    assert row["req_history"] == [25.0]
    assert row["latency_p50"] is not None and 0.001 < row["latency_p50"] <= 0.0025
    assert row["uptime"] == pytest.approx(12.5)
    assert view["totals"]["requests"] == 50 and view["totals"]["req_per_s"] == pytest.approx(25.0)
    assert view["totals"]["workers_ready"] == 1 and view["totals"]["workers_total"] == 1


def test_monitor_forgets_gone_incarnations_and_starts_over_for_a_new_pid() -> None:
    sup = FakeSupervisor(workers=[worker(0, 100, requests=10, at=10.0)])
    monitor = Monitor(sup.status, Clock(11.0))
    monitor.sample()
    sup.workers[0] = worker(0, 100, requests=20, at=11.0)
    monitor.sample()
    sup.workers[0] = worker(0, 101, requests=0, at=12.0)  # respawned: counters restart at 0
    row = monitor.view()["workers"][0]
    assert row["pid"] == 101 and row["req_per_s"] is None and row["req_history"] == []


def test_monitor_extra_fields_are_part_of_the_view() -> None:
    monitor = Monitor(FakeSupervisor().status)
    monitor.extra.update(name="web-2", admin="127.0.0.1:9000")
    view = monitor.view()
    assert view["name"] == "web-2" and view["admin"] == "127.0.0.1:9000"


def test_merge_by_slot_sums_incarnations() -> None:
    workers: list[dict[str, Any]] = [
        worker(0, 1, state="draining", requests=4, latency=counts(b1=4)),
        worker(0, 2, state="starting", requests=1, latency=counts(b1=1), incarnation=2),
        worker(1, 3, requests=2, latency=counts(b5=2)),
    ]
    merged = merge_by_slot(workers)
    assert merged[0]["requests"] == 5 and merged[0]["incarnations"] == 2
    assert merged[0]["latency_counts"][1] == 5
    assert merged[0]["ready"] is False and merged[1]["ready"] is True
    assert merged[0]["rss"] == 2 * workers[0]["heartbeat"]["rss"]
