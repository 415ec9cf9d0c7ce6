"""Framed messages over a socketpair (contracts/channel.py): any split, both directions, EOF,
oversized and invalid input."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest

from asynccluster.contracts import messages
from asynccluster.contracts.channel import (
    HEADER,
    MAX_FRAME,
    Channel,
    ChannelError,
    FrameDecoder,
    Throttle,
    frame,
    send_blocking,
)
from asynccluster.contracts.messages import Heartbeat, Ready, ReopenLogs, Stop

BOTH_WAYS = messages.FROM_WORKER | messages.FROM_MASTER


def heartbeat(**changes: Any) -> Heartbeat:
    fields: dict[str, Any] = {"stats": {}, "loop_lag": 0.0, "rss": 1, "cpu": 0.5, "time": 1.0, **changes}
    return Heartbeat(**fields)


def test_frames_survive_every_split() -> None:
    sent = [heartbeat(stats={"requests": n}, app_metrics={"text": "é" * n}) for n in range(5)]
    data = b"".join(frame(m) for m in sent)
    for size in range(1, 12):
        decoder = FrameDecoder()
        bodies: list[bytes] = []
        for start in range(0, len(data), size):
            bodies += decoder.feed(data[start : start + size])
        assert [messages.decode(b) for b in bodies] == sent


def test_an_oversized_frame_header_is_a_channel_error() -> None:
    with pytest.raises(ChannelError, match="exceeds the limit"):
        FrameDecoder().feed(HEADER.pack(MAX_FRAME + 1))
    assert issubclass(ChannelError, ValueError)


def test_an_oversized_message_is_not_framed() -> None:
    with pytest.raises(ChannelError, match=r"'heartbeat' message of .* exceeds"):
        frame(heartbeat(app_metrics="x" * (MAX_FRAME + 1)))


async def test_both_ends_on_a_loop_and_eof() -> None:
    loop = asyncio.get_running_loop()
    left, right = socket.socketpair()
    got: asyncio.Queue[messages.Message] = asyncio.Queue()
    closed = asyncio.Event()
    master = Channel(loop, left, got.put_nowait, closed.set, BOTH_WAYS)
    big = heartbeat(app_metrics={"blob": "x" * 300_000})  # larger than one recv and the socket buffer
    assert send_blocking(right, Ready(pid=7))
    assert await asyncio.wait_for(got.get(), 5) == Ready(pid=7)
    worker = Channel(loop, right, got.put_nowait, lambda: None, BOTH_WAYS)
    assert worker.send(big)
    assert await asyncio.wait_for(got.get(), 5) == big
    assert master.send(Stop(timeout=1.5))
    assert await asyncio.wait_for(got.get(), 5) == Stop(timeout=1.5)
    worker.close()
    await asyncio.wait_for(closed.wait(), 5)
    assert master.closed and not master.send(ReopenLogs())


async def test_an_invalid_message_is_dropped_and_logged_and_the_channel_stays_up(caplog: Any) -> None:
    """A well-framed body that is no message of ours (garbage, an unknown type, a message of
    the wrong direction) is dropped with one throttled error line; the next one is delivered."""
    loop = asyncio.get_running_loop()
    left, right = socket.socketpair()
    got: asyncio.Queue[messages.Message] = asyncio.Queue()
    master = Channel(loop, left, got.put_nowait, lambda: None, messages.FROM_WORKER)
    try:
        for body in (b"[]", b"{x}", b'{"type":"rm -rf"}', messages.encode(Stop(timeout=1.0))):
            right.sendall(HEADER.pack(len(body)) + body)
        assert send_blocking(right, Ready(pid=1))
        assert await asyncio.wait_for(got.get(), 5) == Ready(pid=1)
        assert got.empty() and not master.closed
        errors = [r.getMessage() for r in caplog.records if r.name == "asynccluster.channel"]
        assert len(errors) == 1 and "dropped an invalid message" in errors[0]  # throttled: one line
    finally:
        master.close()
        right.close()


async def test_an_oversized_message_is_refused_and_logged_and_the_channel_stays_up(caplog: Any) -> None:
    loop = asyncio.get_running_loop()
    left, right = socket.socketpair()
    got: asyncio.Queue[messages.Message] = asyncio.Queue()
    sender = Channel(loop, left, lambda m: None, lambda: None, BOTH_WAYS)
    receiver = Channel(loop, right, got.put_nowait, lambda: None, BOTH_WAYS)
    try:
        assert sender.send(heartbeat(app_metrics="x" * (MAX_FRAME + 1))) is False
        assert sender.send(heartbeat()) is True
        assert await asyncio.wait_for(got.get(), 10) == heartbeat() and not sender.closed
        assert any("exceeds the" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    finally:
        sender.close()
        receiver.close()


def test_the_receiving_side_logs_why_it_drops_a_channel(caplog: Any) -> None:
    closed: list[bool] = []
    left, right = socket.socketpair()
    loop = asyncio.new_event_loop()
    try:
        receiver = Channel(loop, right, lambda m: None, lambda: closed.append(True), BOTH_WAYS)
        left.sendall(HEADER.pack(MAX_FRAME + 1))
        receiver.drain()
    finally:
        left.close()
        loop.close()
    assert closed == [True]
    assert any("bad frame" in r.getMessage() and "exceeds the limit" in r.getMessage() for r in caplog.records)


def test_the_throttle_logs_once_per_interval_with_the_count(caplog: Any) -> None:
    now = [0.0]
    throttle = Throttle(interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.ERROR, "asynccluster.channel"):
        assert throttle.event(logging.ERROR, "bad")
        assert not throttle.event(logging.ERROR, "bad")
        now[0] = 11.0
        assert throttle.event(logging.ERROR, "bad")
    assert [r.getMessage() for r in caplog.records] == ["bad", "bad (2 times in the last 11 s)"]
