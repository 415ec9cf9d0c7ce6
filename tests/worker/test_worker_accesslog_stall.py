"""The access log never stalls serving: a reader that stops reading costs lines, not requests (issue 16).

A worker process logs its access lines to stderr, which here is a pipe nobody reads: once
its 64 KiB are full, every write to it blocks. Before issue 16 the event loop wrote the
log itself (or waited for the flusher thread's lock) and stopped answering there. Now the
lines queue for a writer thread (asynccluster/worker/logqueue.py), the loop keeps serving,
and the lines that do not fit are dropped and counted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # a real process (tests/conftest.py: the tiers)
REPO = Path(__file__).resolve().parents[2]
REQUESTS = 3000

# Runs in its own process: fd 2 is replaced before logging is set up.
SCRIPT = r"""
import asyncio, json, os, sys
read_end, write_end = os.pipe()
os.dup2(write_end, 2)  # stderr: a pipe nobody reads (blocking writes once it is full)

from asynccluster.config import Config
from asynccluster.logs import setup_logging
from asynccluster.worker import logqueue
from asynccluster.worker.server import Server
from tests.worker.conftest import listening_socket

logqueue.CAPACITY = 200  # a small queue, so that a few thousand requests overflow it
REQUESTS = int(sys.argv[1])

async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})

async def main():
    config = Config(access_log=True, lifespan="off", graceful_timeout=1.0)
    setup_logging(config, slot=0)
    server = Server(config, app)
    await server.startup()
    sock = listening_socket()
    await server.start_serving([sock])
    reader, writer = await asyncio.open_connection(*sock.getsockname())
    request = b"GET /x?q=1 HTTP/1.1\r\nhost: t\r\n\r\n"
    answered = 0
    data = b""
    for start in range(0, REQUESTS, 50):
        writer.write(request * min(50, REQUESTS - start))
        while answered < min(start + 50, REQUESTS):
            data += await asyncio.wait_for(reader.read(65536), 10)
            answered = data.count(b"HTTP/1.1 200 ")
    writer.close()
    os.write(1, json.dumps({"answered": answered, "dropped": server.state.access_log.dropped}).encode())
    os._exit(0)  # the writer thread is blocked on the pipe for good: no exit flush

asyncio.run(main())
"""


def test_a_stuck_log_reader_drops_lines_and_never_stalls_requests() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(REQUESTS)],
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    result = json.loads(completed.stdout)
    assert result["answered"] == REQUESTS
    # The pipe holds a few hundred lines, the queue 200: the rest were dropped, and counted.
    assert result["dropped"] > 0
