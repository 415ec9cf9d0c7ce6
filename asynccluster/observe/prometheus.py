"""Prometheus text exposition (format 0.0.4) of the whole cluster, rendered by the master.

One scrape sees every worker (issue 5): the master merges the workers' heartbeats and labels
each series ``worker="<slot>"``. Slots are stable across respawns and reloads (like pm2's
NODE_APP_INSTANCE), so a series survives a replacement and Prometheus sees an ordinary
counter reset when an incarnation is replaced.

Format reference: https://prometheus.io/docs/instrumenting/exposition_formats/ (text 0.0.4):
``# HELP`` escapes backslash and newline; label values escape backslash, double quote and
newline; histograms are cumulative ``_bucket{le=...}`` series ending with ``le="+Inf"``,
plus ``_sum`` and ``_count``.
"""

from __future__ import annotations

import math
from typing import Any

from asynccluster.contracts.states import ClusterState, WorkerState
from asynccluster.observe.aggregate import AppMetric, merge_app_metrics, merge_by_slot
from asynccluster.observe.stats import LATENCY_BUCKETS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "asynccluster_"

Labels = dict[str, str]


def format_value(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{escape_label(value)}"' for key, value in labels.items()) + "}"


class Exposition:
    """Accumulates metric families; each family's HELP/TYPE is written once, before its samples."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help: str) -> None:
        self._lines.append(f"# HELP {name} {escape_help(help)}")
        self._lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: Labels, value: float) -> None:
        self._lines.append(f"{name}{format_labels(labels)} {format_value(value)}")

    def histogram(self, name: str, labels: Labels, counts: list[int], total: float) -> None:
        """``counts`` are non-cumulative per bucket (LATENCY_BUCKETS then +Inf)."""
        cumulative = 0
        # le as prometheus_client writes it ("5.0", "+Inf"), so series match other exporters.
        bounds = [*(repr(float(b)) for b in LATENCY_BUCKETS), "+Inf"]
        for bound, count in zip(bounds, counts, strict=False):
            cumulative += count
            self.sample(f"{name}_bucket", {**labels, "le": bound}, cumulative)
        self.sample(f"{name}_sum", labels, total)
        self.sample(f"{name}_count", labels, cumulative)

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


# (suffix, type, help, key in the per-slot entry)
_PER_WORKER: tuple[tuple[str, str, str, str], ...] = (
    ("requests_total", "counter", "Responses completed by the worker.", "requests"),
    ("requests_in_flight", "gauge", "Requests started whose response is not finished.", "in_flight"),
    ("connections", "gauge", "Open client connections.", "connections"),
    (
        "access_log_dropped_total",
        "counter",
        "Access-log lines dropped because the log's reader did not keep up (issue 16).",
        "access_log_dropped",
    ),
    ("event_loop_lag_seconds", "gauge", "How late the worker's event loop ran its last heartbeat timer.", "loop_lag"),
    ("worker_resident_memory_bytes", "gauge", "Resident set size of the worker process.", "rss"),
    ("worker_cpu_seconds_total", "counter", "User and system CPU time of the worker process.", "cpu"),
    ("worker_restarts_total", "counter", "Times the worker slot was respawned after an exit.", "restarts"),
    ("worker_ready", "gauge", "1 when an incarnation of the slot is ready to serve.", "ready"),
)


def render(status: dict[str, Any]) -> str:
    """The exposition of one ``supervisor.status()`` (raw or enriched by the Monitor)."""
    out = Exposition()
    _cluster_families(out, status)
    slots = merge_by_slot(status.get("workers", []))
    for suffix, kind, help, key in _PER_WORKER:
        out.family(PREFIX + suffix, kind, help)
        for slot, entry in sorted(slots.items()):
            out.sample(PREFIX + suffix, {"worker": str(slot)}, entry[key])
    _status_codes(out, slots)
    _latency(out, slots)
    _accept_queue(out, status)
    for metric in merge_app_metrics(slots):
        _app_metric(out, metric)
    _error_groups(out, status)
    return out.text()


def _cluster_families(out: Exposition, status: dict[str, Any]) -> None:
    out.family(PREFIX + "ready", "gauge", "1 while at least one worker is ready and the cluster is not stopping.")
    out.sample(PREFIX + "ready", {}, is_ready(status))
    out.family(PREFIX + "workers", "gauge", "Worker processes by state.")
    # Every live state, 0 included (an exited worker is gone from the status).
    states = {str(state): 0 for state in WorkerState if state is not WorkerState.EXITED}
    for worker in status.get("workers", []):
        state = str(worker.get("state", WorkerState.STARTING))
        states[state] = states.get(state, 0) + 1
    for state, count in states.items():
        out.sample(PREFIX + "workers", {"state": state}, count)
    desired = status.get("desired_workers")
    if isinstance(desired, int):
        out.family(PREFIX + "workers_desired", "gauge", "Worker slots the cluster is configured to run.")
        out.sample(PREFIX + "workers_desired", {}, desired)


def _status_codes(out: Exposition, slots: dict[int, dict[str, Any]]) -> None:
    name = PREFIX + "responses_total"
    out.family(name, "counter", "Responses by HTTP status code.")
    for slot, entry in sorted(slots.items()):
        for code, count in sorted(entry["status"].items()):
            out.sample(name, {"worker": str(slot), "code": code}, count)


def _latency(out: Exposition, slots: dict[int, dict[str, Any]]) -> None:
    name = PREFIX + "request_duration_seconds"
    out.family(name, "histogram", "Time from the request head to the last byte of the response.")
    for slot, entry in sorted(slots.items()):
        out.histogram(name, {"worker": str(slot)}, entry["latency_counts"], entry["latency_sum"])


def _accept_queue(out: Exposition, status: dict[str, Any]) -> None:
    queue = status.get("accept_queue") or {}
    name = PREFIX + "accept_queue_depth"
    out.family(name, "gauge", "Connections waiting in the slot's listen backlog (not yet accepted).")
    for slot, depth in sorted(queue.items(), key=lambda item: str(item[0])):
        if depth is not None:
            out.sample(name, {"worker": str(slot)}, depth)


def _app_metric(out: Exposition, metric: AppMetric) -> None:
    name = metric.name + "_total" if metric.type == "counter" else metric.name
    kind = metric.type if metric.type in ("counter", "gauge") else "untyped"
    out.family(name, kind, metric.help or f"{metric.name} (set by the app)")
    for (slot, values), value in sorted(metric.samples.items()):
        out.sample(name, {"worker": slot, **dict(zip(metric.labels, values, strict=True))}, value)


def _error_groups(out: Exposition, status: dict[str, Any]) -> None:
    """Unhandled app exceptions by group (issue 15; at most 100 groups: bounded cardinality)."""
    groups = status.get("error_groups")
    if not isinstance(groups, list):
        return
    name = PREFIX + "app_errors_total"
    out.family(name, "counter", "Unhandled app exceptions (500s), by group: type and app frame (asynccluster errors).")
    for group in groups:
        labels = {"group": str(group.get("id")), "type": str(group.get("type")), "frame": str(group.get("frame"))}
        out.sample(name, labels, group.get("count", 0))


def is_ready(status: dict[str, Any]) -> bool:
    """Ready: the cluster is not stopping and at least one worker is ready (issue 5)."""
    if status.get("state") in (ClusterState.STOPPING, ClusterState.STOPPED) or status.get("ready") is False:
        return False
    return any(worker.get("state") == WorkerState.READY for worker in status.get("workers", []))
