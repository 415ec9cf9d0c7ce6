"""The cluster as PID 1 of a fresh PID namespace, as in a container with no init (issue 14).

``unshare --pid --fork --mount-proc asynccluster run ...`` is what ``docker run`` does to an
exec-form CMD: the master becomes PID 1, gets no default signal handlers, and every
process an app abandons is re-parented to it. The test shows that SIGTERM (sent from
outside the namespace, like ``docker stop``) stops it with exit 0, that an abandoned
grandchild is reaped (no zombie left), that a bounded load sees 0 failed requests while
orphans come and go, and that the reaper never takes a worker's exit status (each worker's
"stopped: exit code 0" line needs multiprocessing to have seen that status itself).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from asynccluster import exitcodes
from tests.integration.conftest import ClusterProcess, get
from tests.loadgen import run_load
from tests.waiting import wait_until

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]
DEADLINE = 20.0


def can_unshare_pid() -> str | None:
    """None if ``unshare --pid`` works here, else the reason to skip."""
    if not sys.platform.startswith("linux"):
        return "PID namespaces are Linux-only"
    if shutil.which("unshare") is None:
        return "util-linux unshare is not installed"
    try:
        probe = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare failed: {exc}"
    if probe.returncode != 0:
        return f"cannot create a PID namespace here (needs root or user namespaces): {probe.stderr.strip()}"
    return None


SKIP_REASON = can_unshare_pid()
pytestmark = [pytest.mark.deploy, pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")]


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (host pids), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        if f"\nPPid:\t{pid}\n" in status:
            found.append(int(entry.name))
    return found


def namespace_init(unshare: ClusterProcess) -> int:
    """The host pid of the master, which is PID 1 inside the namespace ``unshare`` made."""
    pids = wait_until(lambda: children(unshare.pid), "unshare to start the master")
    status = Path(f"/proc/{pids[0]}/status").read_text()
    nspid = next(line for line in status.splitlines() if line.startswith("NSpid:")).split()
    assert nspid[-1] == "1", f"the master is not PID 1 of its namespace: {nspid}"
    return pids[0]


def get_json(port: int, path: str) -> dict[str, Any]:
    status, _, body = get(port, path)
    assert status == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


def test_pid1_stops_on_sigterm_reaps_orphans_and_serves_without_failures(cluster_factory: Any) -> None:
    cluster = cluster_factory("tests.apps.orphans:app", "--workers", "2", prefix=UNSHARE)
    cluster.wait_ready()
    master = namespace_init(cluster)
    cluster.wait_for(r"running as PID 1: reaping orphaned processes")

    orphan = get_json(cluster.port, "/orphan")["pid"]
    wait_until(lambda: not get_json(cluster.port, f"/alive?pid={orphan}")["exists"], f"orphan {orphan} to be reaped")

    async def load_while_abandoning() -> Any:
        load = asyncio.ensure_future(run_load("127.0.0.1", cluster.port, max_requests=3000, duration=10.0))
        for _ in range(5):  # orphans end (SIGCHLD) while the workers serve
            await asyncio.to_thread(get, cluster.port, "/orphan")
        return await load

    result = asyncio.run(load_while_abandoning())
    assert result.failed == 0, result.summary()
    assert result.ok > 0
    wait_until(lambda: get_json(cluster.port, "/zombies")["zombies"] == [], "no zombie left in the namespace")

    os.kill(master, signal.SIGTERM)  # from outside the namespace, like `docker stop`
    assert cluster.wait_exit(DEADLINE) == 0, cluster.output_tail()
    # Each worker's exit status reached multiprocessing (the reaper left it alone), once.
    for slot in (0, 1):
        assert cluster.count(rf"worker {slot} \(pid \d+, incarnation 1\) stopped: exit code 0") == 1, cluster.output
    assert cluster.count(r"received SIGTERM: stop") == 1
    # Nothing forwarded twice: each worker was told to drain once (over its channel).
    for slot in (0, 1):
        assert cluster.count(rf"\[worker {slot} pid \d+\] draining") == 1, cluster.output


def test_pid1_first_sigint_is_a_graceful_stop(cluster_factory: Any) -> None:
    """Ctrl-C in ``docker run -it``: PID 1 has no default SIGINT action either."""
    cluster = cluster_factory("tests.apps.orphans:app", "--workers", "1", prefix=UNSHARE)
    cluster.wait_ready()
    os.kill(namespace_init(cluster), signal.SIGINT)
    assert cluster.wait_exit(DEADLINE) == 0, cluster.output_tail()
    assert cluster.count(r"received SIGINT: stop") == 1


def test_pid1_exits_with_the_documented_code_when_the_app_cannot_be_imported(cluster_factory: Any) -> None:
    cluster = cluster_factory("tests.apps.no_such_module:app", "--workers", "1", prefix=UNSHARE)
    assert cluster.wait_exit(DEADLINE) == exitcodes.APP_IMPORT, cluster.output_tail()
