"""Backoff and recycle rules."""

from __future__ import annotations

import random

from asynccluster.config import Config
from asynccluster.master.policy import Timing, backoff_delay, died_young, draw_recycle_limits, recycle_reason
from asynccluster.master.process import WorkerHandle


def test_backoff_is_immediate_then_exponential_and_capped() -> None:
    timing = Timing(backoff_base=0.5, backoff_cap=4.0)
    assert [backoff_delay(n, timing) for n in range(1, 7)] == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0]


def test_died_young() -> None:
    timing = Timing(stable_after=10.0)
    handle = WorkerHandle(slot=0, incarnation=1, started_at=0.0)
    assert died_young(handle, 100.0, timing)  # never ready
    handle.ready_at = 1.0
    assert died_young(handle, 5.0, timing)
    assert not died_young(handle, 20.0, timing)


def test_recycle_limits_include_jitter_within_bounds() -> None:
    config = Config(max_requests=100, max_requests_jitter=20, max_lifetime=60, max_lifetime_jitter=30)
    rng = random.Random(7)
    draws = [draw_recycle_limits(config, rng) for _ in range(200)]
    assert all(100 <= r <= 120 and 60 <= t <= 90 for r, t in draws)
    assert len({r for r, _ in draws}) > 5  # actually spread
    assert draw_recycle_limits(Config(), rng) == (0, 0.0)


def test_recycle_reasons() -> None:
    handle = WorkerHandle(slot=0, incarnation=1, started_at=0.0, max_requests=50, max_lifetime=100.0)
    config = Config(max_memory=1 << 20)
    assert recycle_reason(handle, config, 1.0) is None
    handle.heartbeat = {"stats": {"requests": 50}, "rss": 0}
    assert "max-requests" in (recycle_reason(handle, config, 1.0) or "")
    handle.heartbeat = {"stats": {"requests": 1}, "rss": 2 << 20}
    assert "max-memory" in (recycle_reason(handle, config, 1.0) or "")
    handle.heartbeat = {}
    assert "max-lifetime" in (recycle_reason(handle, config, 101.0) or "")
