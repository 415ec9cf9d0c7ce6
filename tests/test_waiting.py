"""The suite's wait helper (tests/waiting.py): the value it returns and what its failure says."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.waiting import wait_for, wait_until


def test_wait_until_returns_the_first_value_that_is_done() -> None:
    counter = itertools.count()
    assert wait_until(lambda: next(counter), "the third call", done=lambda n: n >= 2) == 2


def test_wait_until_names_what_it_waited_for_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"after 0.05 s waiting for the moon; last value: \{'phase': 'new'\}"):
        wait_until(lambda: {"phase": "new"}, "the moon", 0.05, done=lambda view: view["phase"] == "full")


def test_a_long_last_value_is_shortened() -> None:
    with pytest.raises(AssertionError, match=r"\.\.\. \(10002 characters\)$"):
        wait_until(lambda: "x" * 10_000, "nothing", 0.01, done=lambda _: False)


async def test_wait_for_yields_to_the_loop_between_checks() -> None:
    seen: list[int] = []
    producer = asyncio.get_running_loop().call_later(0.01, seen.append, 1)
    try:
        assert await wait_for(lambda: list(seen), "the callback to run") == [1]
    finally:
        producer.cancel()
    with pytest.raises(AssertionError, match="waiting for never; last value: False"):
        await wait_for(lambda: False, "never", 0.02)
