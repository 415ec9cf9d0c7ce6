"""--preload's re-preload backoff without processes (issue 16, newcomer's run): a helper lost
while the code on disk is broken was re-imported about once a second, two ERROR lines a try.

The streak's logic runs against a loop whose clock the test moves (pure logic: the timers are
recorded, not run); tests/integration/test_preload.py runs the real thing.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from asynccluster.config import Config
from asynccluster.master.preload import RETRY_CAP, STILL_FAILING_EVERY, Preloader, retry_delay


class ClockLoop:
    """time() the test sets; call_later records (delay, callback) and returns a cancellable handle."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[Timer] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Any, *args: Any) -> Timer:
        timer = Timer(self.now + delay)
        self.timers.append(timer)
        return timer


class Timer:
    def __init__(self, when: float) -> None:
        self._when = when
        self.cancelled = False

    def when(self) -> float:
        return self._when

    def cancel(self) -> None:
        self.cancelled = True


def test_the_delay_doubles_from_one_second_up_to_the_cap() -> None:
    assert [retry_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert retry_delay(10_000) == RETRY_CAP  # no overflow however long the streak


def fail(preloader: Preloader, loop: ClockLoop, error: str = "SyntaxError at app.py:3") -> float:
    """One failed re-preload, at the time its timer was due; returns the next delay."""
    if loop.timers:
        loop.now = loop.timers[-1].when()
    preloader.streak.timer = None  # the timer fired
    preloader._last_error = error
    preloader._failed_again()
    return loop.timers[-1].when() - loop.now


def test_a_failure_streak_logs_its_error_once_then_at_most_a_line_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    loop = ClockLoop()
    preloader = Preloader(loop, Config(app="app:app"))  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, "asynccluster.master")
    delays = [fail(preloader, loop) for _ in range(20)]  # 20 tries: ~15 minutes
    assert delays[:7] == [1, 2, 4, 8, 16, 32, 60]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "next try in 1 s" in errors[0].getMessage()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert all("still cannot be preloaded" in line for line in warnings)
    assert len(warnings) <= loop.now / STILL_FAILING_EVERY + 1, warnings
    assert preloader.info()["failures"] == 20 and preloader.info()["retry_in"] == 60

    fail(preloader, loop, "NameError at app.py:9")  # a different error is said at once
    assert "NameError" in caplog.records[-1].getMessage() and caplog.records[-1].levelno == logging.ERROR


def test_success_ends_the_streak_and_the_next_failure_starts_over(caplog: pytest.LogCaptureFixture) -> None:
    loop = ClockLoop()
    preloader = Preloader(loop, Config(app="app:app"))  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, "asynccluster.master")
    for _ in range(4):
        fail(preloader, loop)
    pending = loop.timers[-1]
    preloader._succeeded()
    assert pending.cancelled and preloader.streak.failures == 0 and preloader.info()["retry_in"] is None
    assert "preloaded again after 4 failed tries" in caplog.records[-1].getMessage()
    assert fail(preloader, loop) == 1  # a new streak: one second again
