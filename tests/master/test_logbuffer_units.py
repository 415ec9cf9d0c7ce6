"""The master's log buffer and the rotating log file (issue 11 item 1), as pure logic:
levels of worker lines, partial lines, the count and byte bounds, follow queries, rotation."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from asynccluster.logs import ReopenableFileHandler
from asynccluster.master.logbuffer import LogBuffer, line_level, query, render


def buffer(**kwargs: int) -> tuple[LogBuffer, list[tuple[str, str]]]:
    relayed: list[tuple[str, str]] = []
    return LogBuffer(relay=lambda line, stream: relayed.append((line, stream)), **kwargs), relayed


@pytest.mark.parametrize(
    ("line", "stream", "previous", "level"),
    [
        ("2024-01-01 10:00:00,000 WARNING [worker 0 pid 1] slow", "err", "", "warning"),
        ('{"time": "x", "level": "error", "message": "boom"}', "err", "", "error"),
        ("Traceback (most recent call last):", "err", "info", "error"),
        ('  File "app.py", line 3, in app', "err", "error", "error"),
        ("printed to stderr", "err", "info", "error"),
        ("printed to stdout", "out", "", "info"),
    ],
)
def test_the_level_of_a_worker_line(line: str, stream: str, previous: str, level: str) -> None:
    assert line_level(line, stream, previous) == level


def test_lines_are_kept_whole_across_reads_and_relayed_once() -> None:
    ring, relayed = buffer()
    ring.feed(2, 77, "out", b"hel")
    ring.feed(2, 77, "out", b"lo\nwor")
    ring.feed(2, 77, "out", b"")  # the worker exited: its unterminated last line is a line
    assert [item["text"] for item in ring.ring.items()] == ["hello", "wor"]
    assert relayed == [("hello\n", "out"), ("wor\n", "out")]
    item = ring.ring.items()[0]
    assert (item["slot"], item["pid"], item["tag"], item["stream"]) == (2, 77, "worker 2 pid 77", "out")
    assert "OUT     [worker 2 pid 77] hello" in render(item)


def test_the_ring_is_bounded_by_count_and_by_bytes() -> None:
    ring, _ = buffer(size=5, max_bytes=1000)
    ring.feed(0, 1, "out", b"".join(b"line %d\n" % n for n in range(8)))
    assert [item["text"] for item in ring.ring.items()] == [f"line {n}" for n in range(3, 8)]
    ring, _ = buffer(size=100, max_bytes=25)
    ring.feed(0, 1, "out", b"a" * 10 + b"\n" + b"b" * 10 + b"\n" + b"c" * 10 + b"\n")
    assert [item["text"][0] for item in ring.ring.items()] == ["b", "c"]
    assert ring.ring.bytes == 20


def test_master_records_are_kept_with_the_master_tag() -> None:
    ring, _ = buffer()
    logger = logging.getLogger("asynccluster.test-logbuffer")
    logger.addHandler(ring)
    try:
        logger.warning("worker 3 (pid 99, incarnation 1) exited")
    finally:
        logger.removeHandler(ring)
    [item] = ring.ring.items()
    assert item["stream"] == "log" and item["level"] == "warning" and item["slot"] == 3
    assert item["tag"].startswith("master ")


def test_query_filters_then_counts_and_follows_after_a_seq() -> None:
    ring, _ = buffer(size=4)
    for n in range(3):
        ring.feed(n % 2, 10 + n % 2, "err", f"2024-01-01 10:00:0{n},000 INFO    [w] line {n}\n".encode())

    async def scenario() -> None:
        answer = await query(ring, {"worker": 0, "lines": 1})
        assert [item["text"][-6:] for item in answer["items"]] == ["line 2"]
        seq = answer["seq"]
        waiting = asyncio.ensure_future(query(ring, {"after": seq, "wait": 5}))
        await asyncio.sleep(0)  # let it start waiting (an ordering step, not a timing)
        ring.feed(1, 11, "out", b"new\n")
        answer = await waiting
        assert [item["text"] for item in answer["items"]] == ["new"] and not answer["lost"]
        for n in range(6):
            ring.feed(0, 10, "out", b"flood %d\n" % n)
        answer = await query(ring, {"after": seq, "wait": 0})
        assert answer["lost"] and answer["items"][-1]["text"] == "flood 5"
        with pytest.raises(ValueError, match="'worker' must be an integer"):
            await query(ring, {"worker": "x"})

    asyncio.run(scenario())


def test_rotation_by_size_keeps_every_line(tmp_path: Path) -> None:
    path = tmp_path / "cluster.log"
    handler = ReopenableFileHandler(str(path), max_bytes=1000, backups=50)
    lines = [f"line {n:04d} " + "x" * 40 + "\n" for n in range(200)]
    for line in lines:
        handler.write_line(line)
    handler.flush()
    handler.close()
    files = sorted(tmp_path.glob("cluster.log*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    assert len(files) > 5
    assert all(p.stat().st_size <= 1000 for p in files)
    assert "".join(p.read_text() for p in files) == "".join(lines)  # nothing lost, nothing split, in order


def test_rotation_by_age(tmp_path: Path) -> None:
    path = tmp_path / "cluster.log"
    handler = ReopenableFileHandler(str(path), max_age=3600.0, backups=2)
    handler.write_line("old\n")
    handler.flush()
    handler.opened_at -= 3600  # the file has been written to for an hour
    handler.write_line("new\n")
    handler.flush()
    handler.close()
    assert (tmp_path / "cluster.log.1").read_text() == "old\n" and path.read_text() == "new\n"
