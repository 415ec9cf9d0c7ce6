"""Backoff and recycle rules."""

from __future__ import annotations

import random

from asynccluster.config import Config
from asynccluster.master.policy import (
    Timing,
    backoff_delay,
    draw_recycle_limits,
    recent,
    recycle_reason,
    respawn_decision,
)
from asynccluster.master.process import WorkerHandle

TIMING = Timing(backoff_base=0.5, backoff_cap=4.0, respawn_budget=3, budget_window=60.0, floor_delay=0.5)


def test_backoff_is_immediate_then_exponential_and_capped() -> None:
    assert [backoff_delay(n, TIMING) for n in range(1, 7)] == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0]


def test_a_worker_that_served_then_crashed_is_respawned_at_once_within_the_budget() -> None:
    for crashes in range(1, TIMING.respawn_budget + 1):
        decision = respawn_decision(served=True, failures=0, crashes=crashes, others_live=True, timing=TIMING)
        assert decision.delay == 0.0 and decision.why == ""


def test_past_the_budget_a_slot_backs_off_by_the_excess() -> None:
    delays = [
        respawn_decision(served=True, failures=0, crashes=n, others_live=True, timing=TIMING).delay for n in range(4, 9)
    ]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0]
    why = respawn_decision(served=True, failures=0, crashes=6, others_live=True, timing=TIMING).why
    assert "6 crashes in 60 s, over the budget of 3" in why


def test_never_ready_deaths_back_off() -> None:
    delays = [
        respawn_decision(served=False, failures=n, crashes=n, others_live=True, timing=TIMING).delay
        for n in range(1, 5)
    ]
    assert delays == [0.0, 0.5, 1.0, 2.0]


def test_the_floor_caps_the_delay_when_no_other_worker_is_up() -> None:
    alone = respawn_decision(served=False, failures=5, crashes=5, others_live=False, timing=TIMING)
    assert alone.delay == TIMING.floor_delay and "no other worker is up" in alone.why
    over_budget = respawn_decision(served=True, failures=0, crashes=50, others_live=False, timing=TIMING)
    assert over_budget.delay == TIMING.floor_delay


def test_recent_keeps_the_window() -> None:
    assert recent([1.0, 50.0, 61.5, 100.0], 120.0, 60.0) == [61.5, 100.0]


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
