"""The access log's fast path (asynccluster/logs.py ``line_writer``): the same lines as logging
would write (worker tag, text and JSON), buffered, and never lost: written before any other
line, within the flush interval, before a log file is reopened and at a graceful stop."""

from __future__ import annotations

import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asynccluster import logs
from asynccluster.worker.accesslog import ACCESS_LOGGER, DEFAULT_FORMAT, AccessLog
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
SCOPE = {
    "client": ("10.1.2.3", 4567),
    "method": "GET",
    "path": "/a b",
    "query_string": b"x=1",
    "http_version": "1.1",
}
FIELDS_FORMAT = "%(client)s|%(method)s|%(path)s|%(query)s|%(http_version)s|%(status)d|%(bytes)d|%(worker)s"
TEXT_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
JSON_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}$")


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_text_line_is_the_line_logging_would_write(worker_logging: Callable[..., Path]) -> None:
    log_file = worker_logging()
    access = AccessLog(FIELDS_FORMAT, 3)
    assert access._write is not None  # the fast path is in use
    access.log(SCOPE, 200, 5, 0.001)
    # The same fields through an ordinary record (which also writes the buffered line first).
    logging.getLogger(ACCESS_LOGGER).info(FIELDS_FORMAT, {**fast_fields(), "status": 200, "bytes": 5, "worker": 3})
    fast, slow = read_lines(log_file)
    tag = f"[worker 3 pid {os.getpid()}]"
    assert fast[23:] == slow[23:] == f" INFO    {tag} 10.1.2.3:4567|GET|/a%20b|x=1|1.1|200|5|3"
    assert TEXT_TIME.match(fast) and TEXT_TIME.match(slow)


def test_json_line_is_the_line_logging_would_write(worker_logging: Callable[..., Path]) -> None:
    log_file = worker_logging(log_format="json")
    access = AccessLog('%(method)s "%(path)s" %(status)d', 3)
    assert access._write is not None
    access.log({**SCOPE, "path": '/quote"\u00e9'}, 404, 0, 0.001)
    logging.getLogger(ACCESS_LOGGER).info(
        '%(method)s "%(path)s" %(status)d', {"method": "GET", "path": "/quote%22%C3%A9", "status": 404}
    )
    fast, slow = (json.loads(line) for line in read_lines(log_file))
    for entry in (fast, slow):
        assert JSON_TIME.match(entry.pop("time"))
    assert (
        fast
        == slow
        == {
            "level": "info",
            "logger": ACCESS_LOGGER,
            "tag": f"worker 3 pid {os.getpid()}",
            "slot": 3,
            "pid": os.getpid(),
            "message": 'GET "/quote%22%C3%A9" 404',  # quoted: the '"' cannot end the field
        }
    )


def fast_fields() -> dict[str, Any]:
    return {"client": "10.1.2.3:4567", "method": "GET", "path": "/a%20b", "query": "x=1", "http_version": "1.1"}


def test_lines_keep_their_order_with_other_lines(worker_logging: Callable[..., Path]) -> None:
    log_file = worker_logging()
    access = AccessLog("access %(path)s", 3)
    access.log({**SCOPE, "path": "/1"}, 200, 0, 0.0)
    access.log({**SCOPE, "path": "/2"}, 200, 0, 0.0)
    logging.getLogger("asynccluster.worker").warning("a warning")  # written at once, after what came before
    lines = read_lines(log_file)
    assert [line.split("] ", 1)[1] for line in lines] == ["access /1", "access /2", "a warning"]


def test_buffered_lines_are_written_within_the_flush_interval(worker_logging: Callable[..., Path]) -> None:
    log_file = worker_logging()
    access = AccessLog("access %(path)s", 3)
    for index in range(50):
        access.log({**SCOPE, "path": f"/{index}"}, 200, 0, 0.0)
    # Nobody flushes: the flusher thread writes them.
    wait_until(lambda: len(read_lines(log_file)) == 50, "the flusher to write the lines", 10.0)
    assert read_lines(log_file)[-1].endswith("access /49")


def test_lines_logged_before_a_reopen_go_to_the_old_file(worker_logging: Callable[..., Path]) -> None:
    log_file = worker_logging()
    access = AccessLog("access %(path)s", 3)
    access.log({**SCOPE, "path": "/before"}, 200, 0, 0.0)
    rotated = log_file.with_name("cluster.log.1")
    log_file.rename(rotated)  # logrotate moves the file, then USR1 makes us reopen it
    assert logs.reopen_log_files() == 1
    access.log({**SCOPE, "path": "/after"}, 200, 0, 0.0)
    logs.flush_buffered()
    assert [line.split("] ", 1)[1] for line in read_lines(rotated)] == ["access /before"]
    assert [line.split("] ", 1)[1] for line in read_lines(log_file)] == ["access /after"]


def test_writes_are_whole_lines_of_at_most_pipe_buf() -> None:
    lines = [f"{index:04d} {'x' * 95}\n" for index in range(100)]  # 100 bytes each
    chunks = logs._chunks([*lines, "y" * (2 * logs.WRITE_CHUNK) + "\n"])
    assert b"".join(chunks) == "".join(lines).encode() + b"y" * (2 * logs.WRITE_CHUNK) + b"\n"
    assert all(chunk.endswith(b"\n") for chunk in chunks)
    assert all(len(chunk) <= logs.WRITE_CHUNK for chunk in chunks[:-1])  # only the over-long line is alone
    assert len(chunks) > 2


def test_other_destinations_get_ordinary_records(caplog: pytest.LogCaptureFixture) -> None:
    """Without asynccluster's worker logging (tests, embedding), lines are ordinary records."""
    access = AccessLog(FIELDS_FORMAT, None)
    with caplog.at_level(logging.INFO, ACCESS_LOGGER):
        access.log(SCOPE, 201, 7, 0.0)
    (record,) = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert record.getMessage() == "10.1.2.3:4567|GET|/a%20b|x=1|1.1|201|7|-"


def test_an_invalid_format_falls_back_to_the_default(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        access = AccessLog("%(no_such_field)s", 0)
    assert access.fmt == DEFAULT_FORMAT
    assert "invalid --access-log-format" in caplog.text and "no_such_field" in caplog.text


# ---------------------------------------------------------------- a real cluster


def read_until(proc: subprocess.Popen[bytes], pattern: re.Pattern[bytes], timeout: float = 30.0) -> re.Match[bytes]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            seen += chunk
            found = pattern.search(seen)
            if found:
                return found
    raise AssertionError(f"no {pattern.pattern!r} in the output:\n{seen.decode(errors='replace')}")


@pytest.mark.skipif(sys.platform == "win32", reason="signals")
@pytest.mark.integration  # real processes (tests/conftest.py: the tiers)
def test_access_lines_reach_the_log_file_at_a_graceful_stop(tmp_path: Path) -> None:
    log_file = tmp_path / "cluster.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCCLUSTER_") and k != "WEB_CONCURRENCY"}
    command = [sys.executable, "-m", "asynccluster", "run", "examples.hello:app", "--workers", "2",
               "--port", "0", "--log-file", str(log_file), "--access-log-format", "access %(path)s %(worker)s",
               "--name", f"accesslog-{os.getpid()}"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        port = int(read_until(proc, re.compile(rb"http://127\.0\.0\.1:(\d+)")).group(1))
        read_until(proc, re.compile(rb"all 2 workers ready"))
        for index in range(20):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/r{index}", timeout=10) as response:
                assert response.status == 200
        proc.send_signal(signal.SIGTERM)  # at once: the lines may still be in the workers' buffers
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    access = [line for line in read_lines(log_file) if "] access /r" in line]
    assert sorted(int(line.split("/r")[1].split()[0]) for line in access) == list(range(20))
    assert all(re.search(r"\[worker (\d) pid \d+\] access /r\d+ \1$", line) for line in access), access
