"""asynccluster logs: last lines, following across rotation, worker tags."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from asynccluster.observe import logtail
from tests.waiting import wait_until


def test_last_lines_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("".join(f"line {i}\n" for i in range(5000)) + "partial")
    lines, offset = logtail.last_lines(str(path), 3)
    assert lines == ["line 4997", "line 4998", "line 4999"]
    assert offset == path.stat().st_size - len("partial")
    assert logtail.last_lines(str(path), 0)[0] == []
    (tmp_path / "empty.log").write_text("")
    assert logtail.last_lines(str(tmp_path / "empty.log"), 5) == ([], 0)


def test_follow_reads_appends_and_survives_rotation(tmp_path: Path) -> None:
    path = tmp_path / "cluster.log"
    path.write_text("old\n")
    got: list[str] = []
    done = threading.Event()

    lines = logtail.follow(str(path), offset=path.stat().st_size, should_stop=done.is_set)

    def reader() -> None:
        for line in lines:
            got.append(line)
            if line == "after rotation":
                done.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    with open(path, "a") as file:
        file.write("one\n")
    # The follower opens the file on its first read: wait until it has, or a rotation before
    # that would make it start on the new file at the old offset (seen once under load).
    wait_until(lambda: got == ["one"], "the follower read the first line", timeout=10)
    with open(path, "a") as file:
        file.write("tw")
        file.flush()
        file.write("o\n")
    os.rename(path, tmp_path / "cluster.log.1")  # logrotate moves it; the cluster reopens (SIGUSR1)
    path.write_text("after rotation\n")
    assert done.wait(10), got
    thread.join(5)
    assert got == ["one", "two", "after rotation"]


def test_parse_text_and_json_lines() -> None:
    text = logtail.parse_line("2024-01-01 10:00:00,000 INFO    [worker 2 pid 1240] GET / 200\n")
    assert text.tag == "worker 2 pid 1240" and text.slot == 2
    master = logtail.parse_line("2024-01-01 10:00:00,000 INFO    [master 77] started")
    assert master.tag == "master 77" and master.slot is None
    entry = {"time": "t", "level": "info", "tag": "worker 1 pid 9", "slot": 1, "message": "hello"}
    parsed = logtail.parse_line(json.dumps(entry))
    assert parsed.slot == 1 and "[worker 1 pid 9] hello" in parsed.text and parsed.as_json() == entry
    assert logtail.parse_line("  File x.py, line 3").tag is None
