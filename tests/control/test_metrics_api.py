"""asynccluster.metrics: the app-facing counters and gauges, and the snapshot the heartbeat carries."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest

from asynccluster import metrics


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    metrics.clear()
    yield
    metrics.clear()


def test_counter_with_and_without_labels_in_snapshot() -> None:
    hits = metrics.counter("shop_hits", "Page hits.")
    orders = metrics.counter("shop_orders_total", "Orders.", labels=("country",))
    hits.inc()
    hits.inc(2)
    orders.labels(country="fr").inc()
    orders.labels("de").inc(3)
    orders.labels(country="fr").inc()

    snap = json.loads(json.dumps(metrics.snapshot()))  # JSON-able, as the heartbeat needs
    assert snap["shop_hits"] == {"type": "counter", "help": "Page hits.", "labels": [], "samples": [[[], 3.0]]}
    # "_total" is stripped from the declared name; the exposition adds it back.
    assert snap["shop_orders"]["labels"] == ["country"]
    assert sorted((*s[0], s[1]) for s in snap["shop_orders"]["samples"]) == [
        ("de", 3.0),
        ("fr", 2.0),
    ]
    assert orders.value(country="fr") == 2.0


def test_gauge_set_inc_dec() -> None:
    depth = metrics.gauge("queue_depth", "Jobs waiting.")
    depth.set(10)
    depth.inc(5)
    depth.dec(3)
    assert depth.value() == 12.0
    per_pool = metrics.gauge("pool_size", labels=["pool"])
    per_pool.labels(pool="db").set(4)
    per_pool.labels(pool="db").dec()
    assert per_pool.value(pool="db") == 3.0
    assert metrics.snapshot()["pool_size"]["type"] == "gauge"


def test_declaring_twice_returns_the_same_metric_and_conflicts_are_refused() -> None:
    first = metrics.counter("jobs", labels=("kind",))
    assert metrics.counter("jobs", labels=("kind",)) is first
    with pytest.raises(ValueError, match="already declared"):
        metrics.gauge("jobs", labels=("kind",))
    with pytest.raises(ValueError, match="already declared"):
        metrics.counter("jobs", labels=("other",))


@pytest.mark.parametrize(
    ("name", "labels", "message"),
    [
        ("1bad", (), "invalid metric name"),
        ("has-dash", (), "invalid metric name"),
        ("asynccluster_requests", (), "reserved"),
        ("ok_name", ("worker",), "reserved"),
        ("ok_name", ("le",), "reserved"),
        ("ok_name", ("__x",), "invalid label"),
        ("ok_name", ("a", "a"), "duplicate"),
    ],
)
def test_invalid_declarations(name: str, labels: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        metrics.counter(name, labels=labels)


def test_misuse_is_reported() -> None:
    counter = metrics.counter("c", labels=("a",))
    with pytest.raises(ValueError, match=r"use \.labels"):
        counter.inc()
    with pytest.raises(ValueError, match="expected labels"):
        counter.labels(b="x")
    with pytest.raises(ValueError, match="only go up"):
        counter.labels(a="x").inc(-1)
    plain = metrics.counter("plain")
    with pytest.raises(ValueError, match="only go up"):
        plain.inc(-2)


def test_increments_from_threads_are_not_lost() -> None:
    # Sync endpoints of an ASGI app run in a thread pool: updates must be atomic.
    counter = metrics.counter("threaded")
    gauge = metrics.gauge("threaded_gauge", labels=("k",))

    def work() -> None:
        for _ in range(2000):
            counter.inc()
            gauge.labels(k="x").inc()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert counter.value() == 16000
    assert gauge.value(k="x") == 16000
