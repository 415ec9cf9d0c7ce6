"""The management commands, the admin endpoint and the live view against real clusters (issue 5).

Each cluster is a real ``python -m asynccluster run`` on 127.0.0.1 (OS-assigned ports for the
app and for ``--admin 127.0.0.1:0``) with its own private ``--control-dir``, so clusters of
other tests running at the same time are not seen. The commands are the real CLI, run as
subprocesses. Numbers reach the master in the workers' once-a-second heartbeat, so the tests
wait for them with a deadline (polling ``status --json``), never with a sleep.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from asynccluster import cli
from tests.apps.gate import gated_path
from tests.control.asuser import run_as
from tests.integration.conftest import REPO, ClusterProcess, default_sigint, get, process_gone
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SO_PEERCRED, /proc and pty are Linux here")

APP = "tests.control.metrics_app:app"
DEADLINE = 20.0
NOBODY = 65534


# ---------------------------------------------------------------- helpers


def asynccluster(control_dir: Path, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run one management command (the real CLI) against the clusters of ``control_dir``."""
    command = [sys.executable, "-m", "asynccluster", argv[0], "--control-dir", str(control_dir), *argv[1:]]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)


def status(control_dir: Path, name: str) -> dict[str, Any]:
    done = asynccluster(control_dir, "status", name, "--json")
    assert done.returncode == 0, done.stderr
    view: dict[str, Any] = json.loads(done.stdout)
    return view


def admin_get(view: dict[str, Any], path: str) -> tuple[int, str]:
    host, port = view["admin"].rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def send_requests(port: int, count: int) -> Counter[int]:
    """``count`` requests on fresh connections; responses per worker slot."""
    slots: Counter[int] = Counter()
    for _ in range(count):
        code, _, body = get(port, "/")
        assert code == 200
        slots[json.loads(body)["worker_id"]] += 1
    return slots


def table_column(table: str, name: str) -> dict[int, int]:
    """slot -> the number in column ``name`` of the ready rows of the ``status`` table.

    Found by the header's position (the numbers end under it), not by splitting on blanks:
    LAST EXIT holds "exit code 0 after ..." once a worker was replaced by an earlier test."""
    lines = table.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("SLOT"))
    end = header.index(name) + len(name)
    ready = [line for line in lines if re.match(r"\s*\d+\s+\d+\s+ready", line)]
    return {int(line.split()[0]): int(line[:end].split()[-1]) for line in ready}


def requests_by_slot(view: dict[str, Any]) -> dict[int, int]:
    """Requests counted by each slot's ready worker. A worker still draining after an earlier
    test's reload is left out: it takes no new requests and leaves the view when it exits, so
    counting it would make the sum drop under the test (seen with a shuffled order)."""
    by_slot: Counter[int] = Counter()
    for worker in view["workers"]:
        if worker["state"] == "ready":
            by_slot[worker["slot"]] += worker["requests"]
    return dict(by_slot)


def start(tmp: Path, name: str, *args: str) -> ClusterProcess:
    cluster = ClusterProcess(
        [APP, "--port", "0", "--name", name, "--control-dir", str(tmp / "ctl"), "--admin", "127.0.0.1:0", *args]
    )
    cluster.wait_ready()
    return cluster


@pytest.fixture(scope="module")
def shared_tmp() -> Iterator[Path]:
    # Directly in /tmp and traversable, so another user can reach <tmp>/ctl — and be stopped there.
    path = Path(tempfile.mkdtemp(prefix="ac-control-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def web(shared_tmp: Path) -> Iterator[ClusterProcess]:
    """One 2-worker cluster named "web" shared by the read-mostly tests of this module."""
    cluster = start(shared_tmp, "web", "--workers", "2", "--log-file", str(shared_tmp / "web.log"))
    yield cluster
    cluster.kill_group()


# ---------------------------------------------------------------- ls, status, /metrics


def test_ls_status_and_metrics_agree_with_the_requests_sent(web: ClusterProcess, shared_tmp: Path) -> None:
    ctl = shared_tmp / "ctl"
    listing = asynccluster(ctl, "ls")
    assert listing.returncode == 0, listing.stderr
    row = listing.stdout.splitlines()[1].split()
    assert row[:4] == ["web", str(web.pid), "running", "2/2"]

    before = requests_by_slot(status(ctl, "web"))
    sent = send_requests(web.port, 40)
    # At least these: a worker reports its count in its heartbeat, so requests an earlier test
    # sent just before may reach ``before`` late (seen with a shuffled order). Once every sent
    # request is counted, the figures are settled: nothing else sends to this cluster.
    floor = {slot: before.get(slot, 0) + sent.get(slot, 0) for slot in (0, 1)}

    def counted() -> dict[str, Any] | None:
        view = status(ctl, "web")
        settled = all(w["state"] == "ready" for w in view["workers"])  # earlier reload drained
        counts = requests_by_slot(view)
        return view if settled and all(counts.get(slot, 0) >= n for slot, n in floor.items()) else None

    view = wait_until(counted, f"status to count at least {floor}")
    expected = requests_by_slot(view)
    assert set(expected) == {0, 1}
    assert view["totals"]["requests"] == sum(expected.values())
    assert {w["slot"] for w in view["workers"]} == {0, 1}
    assert all(w["state"] == "ready" and w["rss"] > 0 for w in view["workers"])
    assert view["listener"] and view["address"].endswith(f":{web.port}")
    assert set(view["accept_queue"]) == {"0", "1"}

    table = asynccluster(ctl, "status").stdout  # NAME is optional: one cluster runs here
    assert f"master pid {web.pid}" in table
    assert table_column(table, "REQUESTS") == expected

    # /metrics: one scrape, every worker; per-worker series summing to what was sent.
    code, text = admin_get(view, "/metrics")
    assert code == 200
    families = {family.name: family for family in text_string_to_metric_families(text)}
    served = {int(s.labels["worker"]): s.value for s in families["asynccluster_requests"].samples
              if s.name == "asynccluster_requests_total"}  # fmt: skip
    assert served == expected
    counts = {int(s.labels["worker"]): s.value for s in families["asynccluster_request_duration_seconds"].samples
              if s.name.endswith("_count")}  # fmt: skip
    assert counts == expected
    ok = sum(s.value for s in families["asynccluster_responses"].samples if s.labels["code"] == "200")
    assert ok == sum(expected.values())
    # The app's own counter (asynccluster.metrics), merged from both workers by the master.
    hits: Counter[int] = Counter()
    for sample in families["app_hits"].samples:
        hits[int(sample.labels["worker"])] += int(sample.value)
    assert dict(hits) == expected
    assert {s.labels["worker"] for s in families["app_last_pid"].samples} == {"0", "1"}

    code, body = admin_get(view, "/status")
    assert code == 200 and json.loads(body)["name"] == "web"
    assert admin_get(view, "/livez")[0] == 200 and admin_get(view, "/readyz")[0] == 200


# ---------------------------------------------------------------- operations


def test_restart_scale_reload_report_their_outcome(web: ClusterProcess, shared_tmp: Path) -> None:
    ctl = shared_tmp / "ctl"
    pids = {w["slot"]: w["pid"] for w in status(ctl, "web")["workers"]}

    done = asynccluster(ctl, "restart", "web", "1")
    assert done.returncode == 0, done.stderr
    assert re.search(rf"replaced worker 1 \(pid {pids[1]} -> \d+\)", done.stdout)
    after = {w["slot"]: w["pid"] for w in status(ctl, "web")["workers"] if w["state"] == "ready"}
    assert after[0] == pids[0] and after[1] != pids[1]

    bad = asynccluster(ctl, "restart", "web", "7")
    assert bad.returncode == 2 and "no worker in slot 7; the slots are: 0, 1" in bad.stderr
    for count, message in (("0", "cannot scale to 0"), ("-2", "cannot scale to 0 workers (now 2)")):
        bad = asynccluster(ctl, "scale", "web", count)
        assert bad.returncode == 2 and message in bad.stderr

    done = asynccluster(ctl, "scale", "web", "+1", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    assert status(ctl, "web")["totals"]["workers_total"] == 3
    done = asynccluster(ctl, "scale", "web", "-1")
    assert done.returncode == 0 and "3 -> 2" in done.stdout

    before = {w["slot"]: w["pid"] for w in status(ctl, "web")["workers"]}
    done = asynccluster(ctl, "reload", "web")
    assert done.returncode == 0, done.stderr
    reloaded_line = r"reloaded 2/2 workers, 0 failures: new workers ready in [\d.]+ s, then the old ones drain"
    assert re.search(reloaded_line, done.stdout)
    reloaded = {w["slot"]: w["pid"] for w in status(ctl, "web")["workers"] if w["state"] == "ready"}
    assert set(reloaded) == {0, 1} and not set(reloaded.values()) & set(before.values())

    unknown = asynccluster(ctl, "status", "nope")
    assert unknown.returncode == 1 and "no cluster named 'nope'; running: web" in unknown.stderr


# ---------------------------------------------------------------- logs


def test_logs_tail_and_follow_every_worker(web: ClusterProcess, shared_tmp: Path) -> None:
    ctl = shared_tmp / "ctl"
    # Lines of its own from both workers (access-log lines): run alone, nothing else made any.
    history_marker = f"/history-{os.getpid()}-{time.monotonic_ns()}"
    answered: set[int] = set()

    def both_answered() -> bool:
        answered.add(json.loads(get(web.port, history_marker)[2])["worker_id"])
        return answered == {0, 1}

    wait_until(both_answered, "both workers to answer")
    tagged = [re.compile(rf"\[worker {slot} pid \d+\].*{re.escape(history_marker)}") for slot in (0, 1)]

    def history() -> str:
        done = asynccluster(ctl, "logs", "web", "--no-follow", "--lines", "500")
        assert done.returncode == 0, done.stderr
        return done.stdout

    text = wait_until(history, "both workers' lines in 'logs'", done=lambda out: all(t.search(out) for t in tagged))
    assert re.search(r"\[master \d+\]", text)

    follower = subprocess.Popen(
        [sys.executable, "-m", "asynccluster", "logs", "web", "--control-dir", str(ctl), "--lines", "0", "--follow"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint,
    )  # fmt: skip
    try:
        marker = f"/follow-{os.getpid()}-{time.monotonic_ns()}"
        seen: list[str] = []
        reader = threading.Thread(target=lambda: seen.extend(iter(follower.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
        reader.start()
        # Keep asking until the follower printed our access-log line (it may start after the first).
        wait_until(
            lambda: get(web.port, marker)[0] == 200 and any(marker in line for line in seen), "the followed line"
        )
        tagged = next(line for line in seen if marker in line)
        assert re.search(r"\[worker \d pid \d+\]", tagged)
    finally:
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 0


# ---------------------------------------------------------------- top in a pseudo-terminal


@pytest.mark.parametrize("key", [b"q", b"\x03"], ids=["q", "ctrl-c"])
def test_top_in_a_pty_refreshes_and_quits_cleanly(web: ClusterProcess, shared_tmp: Path, key: bytes) -> None:
    # Ctrl-C in the pty is a real SIGINT from the line discipline (cbreak keeps ISIG).
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child becomes the CLI in the pty
        default_sigint()  # Ctrl-C must reach it even if the runner ignores SIGINT
        os.chdir(REPO)
        os.execv(sys.executable, [sys.executable, "-m", "asynccluster", "top", "web",
                                  "--control-dir", str(shared_tmp / "ctl"), "--interval", "0.3"])  # fmt: skip
    screen = io.BytesIO()
    try:
        read_until(fd, screen, lambda data: data.count(b"q or Ctrl-C: quit") >= 3, "three refreshes")
        text = screen.getvalue().decode(errors="replace")
        assert "\x1b[?1049h" in text  # the alternate screen
        assert "SLOT" in text and "P99" in text and f"master {web.pid}" in text
        os.write(fd, key)
        read_until(fd, screen, lambda data: b"\x1b[?1049l" in data, "the terminal restored")
        _, code = wait_child(pid)
        assert code == 0
        assert screen.getvalue().rstrip(b"\r\n").endswith(b"\x1b[?25h\x1b[?1049l")  # cursor back, main screen
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)


def read_until(fd: int, sink: io.BytesIO, done: Callable[[bytes], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not done(sink.getvalue()):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {what} in the pty: {sink.getvalue()[-2000:]!r}")
        if select.select([fd], [], [], remaining)[0]:
            try:
                sink.write(os.read(fd, 65536))
            except OSError:  # EIO: the child closed the pty
                if not done(sink.getvalue()):
                    raise AssertionError(f"the pty closed before {what}: {sink.getvalue()[-2000:]!r}") from None
                return


def wait_child(pid: int) -> tuple[int, int]:
    """(pid, exit code) of our child ``pid`` once it exited."""
    waited, status_word = wait_until(lambda: os.waitpid(pid, os.WNOHANG), "top to exit after the key", DEADLINE,
                                     done=lambda result: result[0] != 0)  # fmt: skip
    return waited, os.waitstatus_to_exitcode(status_word)


# ---------------------------------------------------------------- another user


def raw_status_request(path: Path) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        try:
            sock.connect(str(path))
        except OSError as exc:
            return f"connect: {exc.strerror}".encode()
        with contextlib.suppress(BrokenPipeError):
            sock.sendall(b'{"cmd": "status"}\n')
        return sock.makefile("rb").readline()


def cli_status(control_dir: Path) -> bytes:
    # asynccluster.cli is imported at the top, by root: as nobody, the interpreter's own
    # directories may be unreadable (ModuleNotFoundError: getpass), so nothing is imported here.
    out = io.StringIO()
    with contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
        parser = cli.build_parser()
        args = parser.parse_args(["status", "web", "--control-dir", str(control_dir)])
        code = args.func(args)
    return f"{code} {out.getvalue()}".encode()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_another_users_connection_is_refused(web: ClusterProcess, shared_tmp: Path) -> None:
    ctl = shared_tmp / "ctl"
    sock_path = ctl / "web.sock"
    assert oct(ctl.stat().st_mode & 0o777) == "0o700" and oct(sock_path.stat().st_mode & 0o777) == "0o600"

    # The command line, as nobody: the directory is not theirs, nothing is asked.
    answer = run_as(NOBODY, lambda: cli_status(ctl)).decode()
    assert answer.startswith("1 ") and "belongs to uid 0, not to us (uid 65534)" in answer
    # The socket, as nobody: the 0700 directory stops the connection.
    assert run_as(NOBODY, lambda: raw_status_request(sock_path)) == b"connect: Permission denied"

    # Open the directory and the socket to everyone: now only SO_PEERCRED stands in the way.
    os.chmod(ctl, 0o711)
    os.chmod(sock_path, 0o666)
    try:
        refused = json.loads(run_as(NOBODY, lambda: raw_status_request(sock_path)))
        assert refused == {"ok": False, "error": "permission denied: this cluster belongs to another user"}
        mine = json.loads(run_as(0, lambda: raw_status_request(sock_path)))
        assert mine["ok"] is True and mine["result"]["name"] == "web"
    finally:
        os.chmod(ctl, 0o700)
        os.chmod(sock_path, 0o600)
    web.wait_for(r"refused a connection from uid 65534")


# ---------------------------------------------------------------- stop, SIGTERM and /readyz


def test_stop_waits_for_the_master_to_exit(tmp_path: Path) -> None:
    cluster = start(tmp_path, "stopme", "--workers", "1")
    try:
        done = asynccluster(tmp_path / "ctl", "stop")
        assert done.returncode == 0, done.stderr
        assert re.search(rf"stopped stopme \(pid {cluster.pid}\) in [\d.]+ s", done.stdout)
        assert cluster.wait_exit(DEADLINE) == 0
        assert not (tmp_path / "ctl" / "stopme.sock").exists()
        gone = asynccluster(tmp_path / "ctl", "status", "stopme")
        assert gone.returncode == 1 and "no cluster named 'stopme'" in gone.stderr
    finally:
        cluster.kill_group()


def test_readyz_flips_to_503_as_soon_as_sigterm_arrives(tmp_path: Path) -> None:
    cluster = start(tmp_path, "ready", "--workers", "1", "--graceful-timeout", "20")
    try:
        view = status(tmp_path / "ctl", "ready")
        assert admin_get(view, "/readyz") == (200, "ready\n")
        slow: dict[str, Any] = {}
        gate = tmp_path / "gate"  # the request is held in flight until the test creates this file
        thread = threading.Thread(target=lambda: slow.update(result=get(cluster.port, gated_path(gate))))
        thread.start()
        # The slow request is in the worker (its in-flight gauge says so) before the SIGTERM.
        wait_until(lambda: status(tmp_path / "ctl", "ready")["totals"]["in_flight"] >= 1, "the slow request")
        cluster.signal(signal.SIGTERM)
        wait_until(lambda: admin_get(view, "/readyz")[0] == 503, "/readyz to turn 503")
        assert "result" not in slow  # the gate is shut: 503 came while the request was still in flight
        assert admin_get(view, "/livez")[0] == 200  # alive while it drains
        gate.touch()
        thread.join(DEADLINE)
        assert slow["result"][0] == 200
        assert cluster.wait_exit(DEADLINE) == 0
        assert process_gone(cluster.pid)
    finally:
        cluster.kill_group()
