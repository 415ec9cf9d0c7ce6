"""The cluster-wide Prometheus exposition, parsed by prometheus_client's own parser."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from asynccluster.observe.prometheus import format_value, is_ready, render
from asynccluster.observe.stats import LATENCY_BUCKETS, WorkerStats
from tests.control.fakes import FakeSupervisor, heartbeat, worker


def families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(family: Any, name: str | None = None) -> list[Any]:
    return [s for s in family.samples if name is None or s.name == name]


def stats_heartbeat(latencies: list[float], statuses: list[int], app: Any = None) -> dict[str, Any]:
    stats = WorkerStats()
    for seconds, code in zip(latencies, statuses, strict=True):
        stats.record_response(code, seconds)
    hb = heartbeat(app_metrics=app)
    hb["stats"] = stats.snapshot()
    return hb


def app_counter(samples: list[Any]) -> dict[str, Any]:
    return {"orders": {"type": "counter", "help": "Orders \\ placed\nnow", "labels": ["country"], "samples": samples}}


def test_per_worker_series_sum_to_the_cluster_and_parse() -> None:
    sup = FakeSupervisor()
    sup.workers[0]["heartbeat"] = stats_heartbeat([0.0004, 0.003, 0.2], [200, 200, 404], app_counter([[["fr"], 2]]))
    sup.workers[1]["heartbeat"] = stats_heartbeat([0.02, 7.0], [200, 500], app_counter([[['a"b\\c\nd'], 5]]))
    parsed = families(render(sup.status()))

    requests = {
        s.labels["worker"]: s.value for s in samples(parsed["asynccluster_requests"], "asynccluster_requests_total")
    }
    assert requests == {"0": 3.0, "1": 2.0}

    codes = {(s.labels["worker"], s.labels["code"]): s.value for s in samples(parsed["asynccluster_responses"])}
    assert codes == {("0", "200"): 2, ("0", "404"): 1, ("1", "200"): 1, ("1", "500"): 1}

    histogram = parsed["asynccluster_request_duration_seconds"]
    assert histogram.type == "histogram"
    buckets = [
        s for s in samples(histogram, "asynccluster_request_duration_seconds_bucket") if s.labels["worker"] == "1"
    ]
    assert len(buckets) == len(LATENCY_BUCKETS) + 1
    values = [s.value for s in buckets]
    assert values == sorted(values), "buckets are cumulative"
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 2
    by_le = {s.labels["le"]: s.value for s in buckets}
    assert by_le["0.025"] == 1 and by_le["5.0"] == 1 and by_le["10.0"] == 2
    count = [s for s in samples(histogram, "asynccluster_request_duration_seconds_count") if s.labels["worker"] == "1"]
    assert count[0].value == 2

    # The app's counter: merged with a worker label, label values escaped and read back intact.
    orders = {(s.labels["worker"], s.labels["country"]): s.value for s in samples(parsed["orders"])}
    assert orders == {("0", "fr"): 2, ("1", 'a"b\\c\nd'): 5}
    assert parsed["orders"].documentation == "Orders \\ placed\nnow"

    assert samples(parsed["asynccluster_ready"])[0].value == 1
    states = {s.labels["state"]: s.value for s in samples(parsed["asynccluster_workers"])}
    assert states["ready"] == 2
    rss = samples(parsed["asynccluster_worker_resident_memory_bytes"])
    assert {s.labels["worker"] for s in rss} == {"0", "1"}
    queue = samples(parsed["asynccluster_accept_queue_depth"])
    assert {s.labels["worker"] for s in queue} == {"0", "1"}


def test_two_incarnations_of_a_slot_make_one_series() -> None:
    # Mid-reload a slot has its old (draining) and new (starting) incarnation: one series, summed.
    sup = FakeSupervisor(
        workers=[
            worker(0, 10, state="draining", requests=7, incarnation=1),
            worker(0, 11, state="ready", requests=3, incarnation=2),
            worker(1, 12, requests=5),
        ]
    )
    parsed = families(render(sup.status()))
    requests = {
        s.labels["worker"]: s.value for s in samples(parsed["asynccluster_requests"], "asynccluster_requests_total")
    }
    assert requests == {"0": 10, "1": 5}
    ready = {s.labels["worker"]: s.value for s in samples(parsed["asynccluster_worker_ready"])}
    assert ready == {"0": 1, "1": 1}


def test_app_gauges_take_the_newest_incarnation_and_conflicting_types_are_skipped() -> None:
    gauge = {"depth": {"type": "gauge", "help": "", "labels": [], "samples": [[[], 4]]}}
    newer = {"depth": {"type": "gauge", "help": "", "labels": [], "samples": [[[], 9]]}}
    conflicting = {"depth": {"type": "counter", "help": "", "labels": [], "samples": [[[], 100]]}}
    sup = FakeSupervisor(
        workers=[
            worker(0, 10, state="draining", incarnation=1, app_metrics=gauge),
            worker(0, 11, incarnation=2, app_metrics=newer),
            worker(1, 12, app_metrics=conflicting),
        ]
    )
    parsed = families(render(sup.status()))
    depth = {s.labels["worker"]: s.value for s in samples(parsed["depth"])}
    assert depth == {"0": 9}


def test_readiness() -> None:
    sup = FakeSupervisor()
    assert is_ready(sup.status())
    sup.state = "stopping"
    assert not is_ready(sup.status())
    sup = FakeSupervisor(workers=[worker(0, 1, state="starting")])
    assert not is_ready(sup.status())
    assert not is_ready({"state": "running", "workers": []})
    parsed = families(render(FakeSupervisor(state="stopping").status()))
    assert samples(parsed["asynccluster_ready"])[0].value == 0


def test_format_value() -> None:
    assert format_value(3) == "3"
    assert format_value(2.0) == "2"
    assert format_value(0.25) == "0.25"
    assert format_value(float("inf")) == "+Inf"
    assert format_value(float("nan")) == "NaN"
    assert format_value(True) == "1"
