"""Framed messages over a socketpair: any split, both directions, EOF."""

from __future__ import annotations

import asyncio
import socket

import pytest

from asynccluster.master.channel import Channel, ChannelError, FrameDecoder, encode, send_blocking


def test_frames_survive_every_split() -> None:
    messages = [{"type": "heartbeat", "stats": {"requests": n}, "text": "é" * n} for n in range(5)]
    data = b"".join(encode(m) for m in messages)
    for size in range(1, 12):
        decoder = FrameDecoder()
        received = []
        for start in range(0, len(data), size):
            received += decoder.feed(data[start : start + size])
        assert received == messages


@pytest.mark.parametrize("bad", [b"\x00\x00\x00\x02[]", b"\x00\x00\x00\x03{x}", b"\xff\xff\xff\xff"])
def test_garbage_is_rejected(bad: bytes) -> None:
    with pytest.raises(ChannelError):
        FrameDecoder().feed(bad)


async def test_both_ends_on_a_loop_and_eof() -> None:
    loop = asyncio.get_running_loop()
    left, right = socket.socketpair()
    got: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    closed = asyncio.Event()
    master = Channel(loop, left, got.put_nowait, closed.set)
    big = {"type": "heartbeat", "blob": "x" * 300_000}  # larger than one recv and the socket buffer
    assert send_blocking(right, {"type": "ready"})
    assert await asyncio.wait_for(got.get(), 5) == {"type": "ready"}
    worker = Channel(loop, right, got.put_nowait, lambda: None)
    worker.send(big)
    assert await asyncio.wait_for(got.get(), 5) == big
    assert master.send({"type": "stop", "timeout": 1.5})
    assert await asyncio.wait_for(got.get(), 5) == {"type": "stop", "timeout": 1.5}
    worker.close()
    await asyncio.wait_for(closed.wait(), 5)
    assert master.closed and not master.send({"type": "stop"})
