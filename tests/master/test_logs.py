"""Log lines carry the process tag; JSON format; log files are reopened in place."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from asynccluster.config import Config
from asynccluster.logs import reopen_log_files, setup_logging, worker_tag


@pytest.fixture
def restore_logging() -> Iterator[None]:
    package = logging.getLogger("asynccluster")
    saved = (list(package.handlers), package.level, package.propagate)
    yield
    for handler in list(package.handlers):
        package.removeHandler(handler)
        handler.close()
    package.handlers[:] = saved[0]
    package.setLevel(saved[1])
    package.propagate = saved[2]


def test_text_lines_are_tagged_and_the_file_is_reopened(tmp_path: Path, restore_logging: None) -> None:
    log_file = tmp_path / "cluster.log"
    setup_logging(Config(log_file=str(log_file), log_level="debug"))
    logger = logging.getLogger("asynccluster.master")
    logger.info("first")
    logger.info("for a worker", extra={"tag": worker_tag(3, 42)})
    rotated = tmp_path / "cluster.log.1"
    log_file.rename(rotated)  # logrotate moves the file, then sends SIGUSR1
    assert reopen_log_files() == 1
    logger.debug("after rotation")
    old = rotated.read_text()
    assert f"[master {os.getpid()}] first" in old
    assert "[worker 3 pid 42] for a worker" in old
    assert "after rotation" in log_file.read_text() and "after rotation" not in old


def test_json_lines(tmp_path: Path, restore_logging: None) -> None:
    log_file = tmp_path / "cluster.log"
    setup_logging(Config(log_file=str(log_file), log_format="json", log_level="warning"))
    logger = logging.getLogger("asynccluster.master")
    logger.info("hidden by the level")
    logger.warning("shown %d", 1)
    lines = log_file.read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["message"] == "shown 1" and entry["level"] == "warning"
    assert entry["tag"] == f"master {os.getpid()}" and entry["pid"] == os.getpid()


def test_a_closed_stderr_pipe_never_makes_a_log_call_raise(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`asynccluster run ... | head`: the master's stderr is a pipe nobody reads any more.
    A log call that raised BrokenPipeError would abort the signal or exit handler it is in."""
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    broken = os.fdopen(write_fd, "w", buffering=1)
    try:
        monkeypatch.setattr("sys.stderr", broken)
        setup_logging(Config(log_level="info"))
        log = logging.getLogger("asynccluster.test")
        log.warning("nobody reads this")  # raised BrokenPipeError before the fix
        log.error("nor this", extra={"tag": worker_tag(1, 2)})
        for handler in logging.getLogger("asynccluster").handlers:
            handler.flush()
    finally:
        monkeypatch.undo()
        try:
            broken.close()
        except OSError:
            pass
