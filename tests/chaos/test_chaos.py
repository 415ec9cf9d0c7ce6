"""Chaos with real processes (issue 9): the cluster never empties itself.

Each test is bounded in count and time, on 127.0.0.1 only. Ready workers are read from the
master's own view (``--admin`` /status), the log from the cluster's output.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ClusterProcess, get

pytestmark = pytest.mark.chaos
APP = "tests.chaos.app:app"


def admin_port(cluster: ClusterProcess) -> int:
    return int(cluster.wait_for(r"admin endpoint on http://127\.0\.0\.1:(\d+)/").group(1))


def ready_pids(port: int) -> list[int]:
    status, _, body = get(port, "/status")
    assert status == 200
    return [w["pid"] for w in json.loads(body)["workers"] if w["state"] == "ready"]


def request_ok(port: int) -> bool:
    try:
        return get(port, "/", timeout=10)[0] == 200
    except OSError:
        return False


def test_repeated_kill_9_never_leaves_the_cluster_without_a_ready_worker(cluster_factory: Any) -> None:
    """The issue's run: kill -9 of a worker every 0.5 s left 0 workers for ~16 s (backoff)."""
    cluster = cluster_factory(APP, "--workers", "2", "--admin", "127.0.0.1:0")
    cluster.wait_ready()
    admin = admin_port(cluster)
    kills, samples, failed, requests = 0, [], 0, 0
    deadline = time.monotonic() + 60
    while kills < 12 and time.monotonic() < deadline:
        ready = ready_pids(admin)
        samples.append(len(ready))
        requests += 1
        failed += not request_ok(cluster.port)
        if len(ready) >= 2:  # kill one while the other serves: replacements must keep up
            mark = cluster.mark()
            with contextlib.suppress(ProcessLookupError):  # already gone: the master will see it
                os.kill(ready[0], signal.SIGKILL)
                kills += 1
            cluster.wait_for(r"ready in", timeout=10, start=mark)
    assert kills == 12, f"only {kills} kills in 60 s: workers were not replaced (samples {samples})"
    assert min(samples) >= 1, samples
    assert failed <= 3, f"{failed}/{requests} requests failed"
    # Every death within the budget was replaced at once; a slot past it backs off briefly.
    assert "exits before ready" not in cluster.output
    assert cluster.stop() == 0


def test_a_poison_request_every_half_second_causes_no_outage(cluster_factory: Any) -> None:
    cluster = cluster_factory(APP, "--workers", "2", "--admin", "127.0.0.1:0")
    cluster.wait_ready()
    admin = admin_port(cluster)
    outage_samples = 0
    for _ in range(10):
        with contextlib.suppress(OSError):
            # The worker dies under it: no response. 30 s: a crash request left queued by a
            # client time-out would strike during the stop below.
            get(cluster.port, "/crash", timeout=30)
        assert request_ok(cluster.port)  # queued behind the crash, served by a replacement
        outage_samples += get(admin, "/readyz")[0] != 200
    assert outage_samples <= 1
    cluster.wait_for(r"worker slot \d crashed \d+ times in 60 s .*last exit: .*exit code 1", timeout=10)
    # The stop's status is not this test's subject: a poison request still on its way when the
    # stop begins (its client already saw a reset from the worker it first reached) can kill
    # the replacement during the stop, which the exit status reports as 1 by design (README,
    # exit status). The cluster must stop, not hang or be forced (7).
    mark = cluster.mark()
    assert cluster.stop() in (0, 1), cluster.output_tail(cluster.mark() - mark + 20)


def test_connection_floods_under_a_low_fd_limit_leave_the_master_working(cluster_factory: Any) -> None:
    name = f"chaos-flood-{os.getpid()}"
    cluster = cluster_factory(APP, "--workers", "2", "--admin", "127.0.0.1:0", "--name", name,
                              prefix=["prlimit", "--nofile=256:256"])  # fmt: skip
    workers = cluster.wait_ready()
    admin = admin_port(cluster)
    control_path = Path(cluster.env["ASYNCCLUSTER_CONTROL_DIR"]) / f"{name}.sock"
    before = cluster.mark()
    flood: list[socket.socket] = []
    try:
        for _ in range(300):  # more than the master's whole descriptor limit
            flood.append(socket.create_connection(("127.0.0.1", admin)))
        for _ in range(100):
            unix = socket.socket(socket.AF_UNIX)
            unix.connect(str(control_path))
            flood.append(unix)
        assert get(admin, "/livez", timeout=10)[0] == 200  # the oldest idle ones made room
        os.kill(workers[0], signal.SIGKILL)
        cluster.wait_for(r"worker 0 \(pid \d+, incarnation 2\) ready", timeout=20, start=before)
        assert get(admin, "/livez", timeout=10)[0] == 200
    finally:
        for sock in flood:
            sock.close()
    flood_lines = cluster.mark() - before
    assert flood_lines < 30, cluster.output_tail(flood_lines)
    assert "Traceback" not in cluster.output  # EMFILE, if any, is one summary line per interval
    assert cluster.stop() == 0


def test_scale_far_too_large_is_refused(cluster_factory: Any) -> None:
    name = f"chaos-scale-{os.getpid()}"
    cluster = cluster_factory(APP, "--workers", "1", "--name", name, "--max-workers", "4")
    cluster.wait_ready()
    path = Path(cluster.env["ASYNCCLUSTER_CONTROL_DIR"]) / f"{name}.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(b'{"cmd": "scale", "args": {"count": "100000"}}\n')
        answer = json.loads(sock.makefile().readline())
    assert answer["ok"] is False and answer["usage"] is True  # `asynccluster scale` exits 2
    assert "cannot scale to 100000 workers: the limit is 4" in answer["error"]
    assert request_ok(cluster.port) and len(cluster.ready_workers()) == 1
    assert cluster.stop() == 0


def test_a_second_cluster_on_the_same_port_exits_5(cluster_factory: Any) -> None:
    first = cluster_factory(APP, "--workers", "1")
    first.wait_ready()
    second = cluster_factory(APP, "--workers", "1", port=str(first.port))
    assert second.wait_exit(30) == 5
    assert "address already in use" in second.output
    assert request_ok(first.port) and first.stop() == 0


def test_a_cardinality_bomb_is_capped_and_the_worker_survives(cluster_factory: Any) -> None:
    cluster = cluster_factory(APP, "--workers", "1", "--admin", "127.0.0.1:0")
    pid = cluster.wait_ready()[0]
    admin = admin_port(cluster)
    assert get(cluster.port, "/bomb?n=60000", timeout=30)[0] == 200
    cluster.wait_for(r"metric 'chaos_hits' has 1000 series, the limit", timeout=10)
    deadline = time.monotonic() + 15
    series = 0
    while series < 1000 and time.monotonic() < deadline:  # the next heartbeats carry them
        cluster.wait_for(r"GET /bomb", timeout=5)
        series = get(admin, "/metrics")[2].count(b"chaos_hits_total{")
    assert series == 1000
    assert ready_pids(admin) == [pid]  # the same worker: not dropped, not respawned
    assert "the master is gone" not in cluster.output
    assert cluster.stop() == 0


def test_a_closed_stdout_still_stops_cleanly(cluster_factory: Any) -> None:
    cluster = cluster_factory(APP, "--workers", "2", prefix=["sh", "-c", 'exec "$@" >&-', "sh"])
    cluster.wait_ready()
    assert request_ok(cluster.port)
    assert cluster.stop() == 0
    assert "exited with exit code 1" not in cluster.output


def test_max_requests_is_asked_for_at_exactly_n(cluster_factory: Any) -> None:
    """Issue 11: checked once per heartbeat, a recycle came requests after the limit."""
    cluster = cluster_factory(APP, "--workers", "1", "--max-requests", "5", "--no-access-log")
    cluster.wait_ready()
    for _ in range(40):
        assert request_ok(cluster.port)
        if cluster.count(r"recycling worker 0"):
            break
    line = cluster.wait_for(r"recycling worker 0 .*max-requests: served (\d+) requests", timeout=10)
    assert line.group(1) == "5"
    cluster.wait_for(r"replaced worker 0 .*recycle", timeout=20)
    assert cluster.stop() == 0


def test_max_memory_is_checked_in_the_worker_with_a_bounded_overshoot(cluster_factory: Any) -> None:
    """Issue 9 item 7: a leaking app reached 706 MB against its limit (checked once per heartbeat)."""
    cluster = cluster_factory(APP, "--workers", "1", "--max-memory", "160M", "--no-access-log")
    cluster.wait_ready()
    for _ in range(30):  # 20 MiB per request, 0.15 s apart
        assert get(cluster.port, "/leak?mb=20")[0] == 200
        if cluster.count(r"recycling worker 0"):
            break
    line = cluster.wait_for(r"recycling worker 0 .*max-memory: RSS ([\d.]+) MiB > ([\d.]+) MiB", timeout=10)
    overshoot = float(line.group(1)) - float(line.group(2))
    assert 0 < overshoot <= 40, line.group(0)  # at most about one 20 MiB step past the limit
    cluster.wait_for(r"replaced worker 0 .*recycle", timeout=20)
    assert cluster.stop() == 0
