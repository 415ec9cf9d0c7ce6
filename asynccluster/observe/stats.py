"""Per-worker counters, kept on the hot path cheaply and shipped in the heartbeat.

The worker's protocol increments plain ints on one shared :class:`WorkerStats`; once a
second the worker sends :meth:`WorkerStats.snapshot` to the master, which merges snapshots
of every worker (issue 5: one scrape sees the whole cluster). No locks: one event loop.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import Any

# Upper bounds of the latency histogram, in seconds (Prometheus-style fixed buckets, so the
# master can add the workers' histograms bucket by bucket). +Inf is implicit.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_FIRST_BUCKET = LATENCY_BUCKETS[0]


class WorkerStats:
    __slots__ = (
        "connections",
        "dropped_log_lines",
        "in_flight",
        "latency_counts",
        "latency_sum",
        "on_limit",
        "request_limit",
        "requests",
        "status_counts",
    )

    def __init__(self) -> None:
        self.requests = 0  # responses completed
        self.in_flight = 0  # requests started, response not finished
        self.connections = 0  # open client connections
        self.status_counts: dict[int, int] = {}
        # One slot per bucket plus +Inf; non-cumulative here, cumulative in the exposition.
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        # --max-requests, checked by the worker itself at exactly N (issue 9/11): on_limit()
        # is called once, when the N-th response completes.
        self.request_limit = 0
        self.on_limit: Callable[[], None] | None = None
        # Access-log lines dropped because the log's reader fell behind (issue 16): read from
        # the access log's queue at each heartbeat, not counted on the hot path here.
        self.dropped_log_lines: Callable[[], int] | None = None

    def record_response(self, status: int, seconds: float) -> None:
        """One finished response: its status and the time from request head to last byte."""
        self.requests += 1
        if self.requests == self.request_limit and self.on_limit is not None:
            self.on_limit()
        counts = self.status_counts
        if status in counts:
            counts[status] += 1
        else:
            counts[status] = 1
        # Most responses fall in the first bucket: skip the search for them.
        self.latency_counts[0 if seconds <= _FIRST_BUCKET else bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able copy for the heartbeat."""
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "connections": self.connections,
            "status": {str(code): n for code, n in self.status_counts.items()},
            "latency_counts": list(self.latency_counts),
            "latency_sum": self.latency_sum,
            "access_log_dropped": self.dropped_log_lines() if self.dropped_log_lines is not None else 0,
        }
