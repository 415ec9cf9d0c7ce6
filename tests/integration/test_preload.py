"""--preload (issue 16 item 3): workers forked from a helper that imported the app once.

The app is written into a temporary directory (so the test can change it and reload); its
module body appends the importing process's pid to a file, so the test sees where and how
often the app was imported: once per helper, never in a worker, never in the master.
Respawn and reload times are the benchmark's (benchmarks/preload_bench.py), not asserted here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REPO, ClusterProcess, get_json, process_gone
from tests.waiting import wait_until

APP = """
import json
import os

VERSION = {version!r}
with open(os.environ["PRELOAD_MARKS"], "a") as marks:  # an import side effect: who imported us
    marks.write(f"{{os.getpid()}}\\n")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({{"type": "lifespan.startup.complete"}})
            elif message["type"] == "lifespan.shutdown":
                await send({{"type": "lifespan.shutdown.complete"}})
                return
    body = json.dumps({{"version": VERSION, "pid": os.getpid(), "ppid": os.getppid()}}).encode()
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]}})
    await send({{"type": "http.response.body", "body": body}})
"""


def write_app(directory: Path, version: str, extra: str = "") -> None:
    """The app module; ``extra``: code appended to its body (run at import)."""
    (directory / "preloaded_app.py").write_text(APP.format(version=version) + extra)


def marks(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def start(
    cluster_factory: Any, tmp_path: Path, workers: int = 2, *, preload: bool = True, extra: str = "",
    args: tuple[str, ...] = (),
) -> tuple[ClusterProcess, Path]:  # fmt: skip
    write_app(tmp_path, "one", extra)
    mark_file = tmp_path / "imports.txt"
    cluster = cluster_factory(
        "preloaded_app:app", *(["--preload"] if preload else []), "--workers", str(workers), "--app-dir", str(tmp_path),
        "--no-access-log", "--name", f"preload-{os.getpid()}-{tmp_path.name}", *args,
        env={"PRELOAD_MARKS": str(mark_file), "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    return cluster, mark_file


def cli(cluster: ClusterProcess, *argv: str) -> str:
    """One management command (the real CLI) against ``cluster``; its stdout."""
    control = ["--control-dir", cluster.env["ASYNCCLUSTER_CONTROL_DIR"]]
    command = [sys.executable, "-m", "asynccluster", *argv, *control]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def serves(cluster: ClusterProcess, version: str) -> dict[str, Any]:
    """A response of ``version`` (several requests: any worker answers)."""
    return wait_until(lambda: get_json(cluster.port, "/"), f"a response of {version}",
                      done=lambda body: body["version"] == version)  # fmt: skip


def test_workers_are_forked_from_one_import_and_respawn(cluster_factory: Any, tmp_path: Path) -> None:
    cluster, mark_file = start(cluster_factory, tmp_path)
    workers = cluster.wait_ready()
    helpers = marks(mark_file)
    assert len(helpers) == 1, helpers  # imported once: not per worker, not in the master
    helper = helpers[0]
    assert helper not in workers.values() and helper != cluster.pid
    assert {parent_of(pid) for pid in workers.values()} == {helper}
    body = serves(cluster, "one")
    assert body["ppid"] == helper
    # describe and status say that --preload is on and which process is the helper (issue 16).
    name = f"preload-{os.getpid()}-{tmp_path.name}"
    assert f"on, helper pid {helper}" in cli(cluster, "describe", name)
    assert f"preload  on, helper pid {helper}" in cli(cluster, "status", name)
    assert json.loads(cli(cluster, "status", name, "--json"))["preload"]["helper_pid"] == helper

    mark = cluster.mark()
    os.kill(workers[0], signal.SIGKILL)
    match = cluster.wait_for(r"worker 0 \(pid (\d+), incarnation 2\) ready", start=mark)
    new_pid = int(match.group(1))
    assert parent_of(new_pid) == helper  # forked again from the same helper
    wait_until(lambda: get_json(cluster.port, "/")["pid"] == new_pid or None, "the new worker to answer", timeout=30)
    assert marks(mark_file) == [helper]  # the respawn imported nothing
    assert cluster.stop() == 0
    wait_until(lambda: process_gone(helper), "the helper to exit with the cluster")


def test_reload_imports_new_code_once_and_a_broken_import_is_rolled_back(cluster_factory: Any, tmp_path: Path) -> None:
    cluster, mark_file = start(cluster_factory, tmp_path)
    cluster.wait_ready()
    [old_helper] = marks(mark_file)

    write_app(tmp_path, "two, reloaded")
    mark = cluster.mark()
    cluster.signal(signal.SIGHUP)
    cluster.wait_for(r"reloaded 2/2 workers", start=mark)
    body = serves(cluster, "two, reloaded")
    helpers = marks(mark_file)
    assert len(helpers) == 2 and helpers[0] == old_helper, helpers  # one import for the new code
    new_helper = helpers[1]
    assert body["ppid"] == new_helper
    workers = cluster.ready_workers()
    assert {parent_of(pid) for pid in workers.values()} == {new_helper}
    # The old helper leaves once its workers have drained.
    wait_until(lambda: process_gone(old_helper), "the old helper to exit after its workers")

    (tmp_path / "preloaded_app.py").write_text("def broken(:\n")
    mark = cluster.mark()
    cluster.signal(signal.SIGHUP)
    line = cluster.wait_for(r"reload aborted", start=mark).string
    assert "SyntaxError" in line or "could not be preloaded" in line, line
    assert cluster.ready_workers() == workers  # nothing replaced
    for _ in range(4):
        assert get_json(cluster.port, "/")["version"] == "two, reloaded"

    # After the rollback a crashed worker comes back from the helper with the code that runs.
    mark = cluster.mark()
    os.kill(workers[1], signal.SIGKILL)
    match = cluster.wait_for(r"worker 1 \(pid (\d+), incarnation \d+\) ready", start=mark)
    assert parent_of(int(match.group(1))) == new_helper
    assert get_json(cluster.port, "/")["version"] == "two, reloaded"
    assert cluster.stop() == 0


def test_a_broken_app_stops_the_start_with_the_importers_message(cluster_factory: Any, tmp_path: Path) -> None:
    (tmp_path / "preloaded_app.py").write_text("app = undefined_name\n")
    cluster = cluster_factory("preloaded_app:app", "--preload", "--app-dir", str(tmp_path), "--workers", "2")
    assert cluster.wait_exit() == 3  # the app could not be imported: once, by the helper
    assert "NameError" in cluster.output and "undefined_name" in cluster.output
    assert cluster.count(r"worker \d+ \(pid") == 0  # no worker was started


def test_a_killed_helper_is_replaced_and_its_workers_keep_serving(cluster_factory: Any, tmp_path: Path) -> None:
    """Attack finding (issue 16): kill -9 of the helper took every worker down at once (they
    took their parent's death for the master's: 1 s drain, in-flight requests cut). Now the
    master is their subreaper: they are re-parented to it and keep serving."""
    cluster, mark_file = start(cluster_factory, tmp_path)
    workers = cluster.wait_ready()
    [helper] = marks(mark_file)
    mark = cluster.mark()
    os.kill(helper, signal.SIGKILL)
    cluster.wait_for(r"workers are forked from the new preload helper", start=mark, timeout=60)
    helpers = marks(mark_file)
    assert len(helpers) == 2 and helpers[0] == helper  # the new helper imported the app again
    assert all(not process_gone(pid) and parent_of(pid) == cluster.pid for pid in workers.values())
    assert cluster.ready_workers() == workers  # none replaced
    assert not any("the master is gone" in line or "draining" in line for line in cluster.lines[mark:])
    serves(cluster, "one")
    # A respawn is forked from the new helper; the old workers' exits are still seen (pidfd, waitpid).
    os.kill(workers[0], signal.SIGKILL)
    cluster.wait_for(rf"worker 0 \(pid {workers[0]}, incarnation 1\) exited with signal SIGKILL", start=mark)
    match = cluster.wait_for(r"worker 0 \(pid (\d+), incarnation 2\) ready", start=mark)
    assert parent_of(int(match.group(1))) == helpers[1]
    assert cluster.stop() == 0
    assert process_gone(workers[1])


def test_a_hung_helper_does_not_blind_the_master(cluster_factory: Any, tmp_path: Path) -> None:
    """Attack finding (issue 16): with the helper SIGSTOPped, a worker killed meanwhile stayed
    "ready" for ever (only the helper reported exits) and the stop never finished. Its exit
    is seen through a pidfd; the hung helper is killed at its first unanswered fork and
    replaced; the stop ends within its deadline."""
    cluster, mark_file = start(cluster_factory, tmp_path, args=("--graceful-timeout", "5"))
    workers = cluster.wait_ready()
    [helper] = marks(mark_file)
    mark = cluster.mark()
    os.kill(helper, signal.SIGSTOP)
    try:
        os.kill(workers[0], signal.SIGKILL)
        cluster.wait_for(rf"worker 0 \(pid {workers[0]}, incarnation 1\) exited", start=mark)
        cluster.wait_for(rf"the preload helper \(pid {helper}\) did not answer a fork request", start=mark)
        cluster.wait_for(r"worker 0 \(pid \d+, incarnation \d+\) ready", start=mark, timeout=60)
        assert not process_gone(workers[1]) and parent_of(workers[1]) == cluster.pid  # kept serving
        assert cluster.stop(timeout=30) == 0
        assert process_gone(helper)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(helper, signal.SIGCONT)


THREAD = """
import threading

threading.Thread(target=threading.Event().wait, name="app-thread", daemon=False).start()  # never ends
"""


def test_a_non_daemon_thread_started_at_import_holds_neither_a_reload_nor_the_stop(
    cluster_factory: Any, tmp_path: Path
) -> None:
    """Attack finding (issue 16): the helper (a non-daemon multiprocessing Process) never
    exited when the app started a non-daemon thread at import: each reload left its retired
    helper behind and the master hung in multiprocessing's atexit join after "stopped"."""
    cluster, mark_file = start(cluster_factory, tmp_path, workers=1, extra=THREAD)
    cluster.wait_ready()
    [old_helper] = marks(mark_file)
    mark = cluster.mark()
    cluster.signal(signal.SIGHUP)
    cluster.wait_for(r"reloaded 1/1 workers", start=mark)
    wait_until(lambda: process_gone(old_helper), "the retired helper to exit after its worker")
    [_, new_helper] = marks(mark_file)
    assert cluster.stop(timeout=30) == 0
    assert process_gone(new_helper)


def test_a_stop_during_a_reload_whose_import_hangs_ends(cluster_factory: Any, tmp_path: Path) -> None:
    """Attack finding (issue 16): the staging helper stuck in the import held the master
    after "stopped"; it is killed once the stop's wait for the helpers is over."""
    cluster, mark_file = start(cluster_factory, tmp_path, workers=1)
    workers = cluster.wait_ready()
    write_app(tmp_path, "hangs", "\nimport threading\nthreading.Event().wait()  # an import that never ends\n")
    cluster.signal(signal.SIGHUP)
    [_, staging] = wait_until(lambda: marks(mark_file), "the new helper to start importing",
                              done=lambda pids: len(pids) == 2)  # fmt: skip
    assert cluster.stop(timeout=30) == 0
    assert all(process_gone(pid) for pid in [staging, *workers.values()])


def test_the_helper_and_its_workers_leave_with_a_killed_master(cluster_factory: Any, tmp_path: Path) -> None:
    cluster, mark_file = start(cluster_factory, tmp_path)
    workers = cluster.wait_ready()
    [helper] = marks(mark_file)
    os.kill(cluster.pid, signal.SIGKILL)  # no stop: the helper's parent-death signal, then the workers'
    cluster.wait_exit()
    wait_until(lambda: all(process_gone(pid) for pid in [helper, *workers.values()]), "helper and workers to exit")


BROKEN = """
import multiprocessing
import os

with open({path!r}, "a") as marks:  # who tried to import the broken code
    marks.write(multiprocessing.current_process().name + "\\n")
raise RuntimeError("broken on disk")
"""


def broken_tries(path: Path) -> list[str]:
    """The processes that imported the broken code: preload helpers and spawned workers."""
    return path.read_text().split() if path.exists() else []


def test_a_helper_lost_while_the_code_on_disk_is_broken_is_retried_with_backoff(
    cluster_factory: Any, tmp_path: Path
) -> None:
    """Issue 16 (newcomer's run): the re-preload of a broken app was retried about once a
    second, each try logged and re-importing the app. Now: 1, 2, 4 ... 60 s apart, the error
    logged once per streak, the streak ends when the code on disk imports again."""
    cluster, mark_file = start(cluster_factory, tmp_path, workers=1)
    cluster.wait_ready()
    [helper] = marks(mark_file)
    tries_file = tmp_path / "broken-tries.txt"
    (tmp_path / "preloaded_app.py").write_text(BROKEN.format(path=str(tries_file)))
    mark = cluster.mark()
    os.kill(helper, signal.SIGKILL)
    cluster.wait_for(r"the preload helper \(pid \d+\) exited with signal SIGKILL", start=mark)

    def helper_tries() -> list[str]:
        return [name for name in broken_tries(tries_file) if name.startswith("asynccluster-preload")]

    # Three failed re-preloads: at about 0, 1 and 3 s (the next one waits 4 s).
    wait_until(lambda: len(helper_tries()) >= 3 or None, "three re-preload tries", timeout=60)
    errors = [line for line in cluster.lines[mark:] if "could not preload the app again" in line]
    assert len(errors) == 1, errors  # once per streak, not once per try
    assert "next try in 1 s" in errors[0] and "broken on disk" in errors[0], errors[0]
    assert not any("a request that crashes" in line for line in cluster.lines[mark:])
    text = cli(cluster, "status", f"preload-{os.getpid()}-{tmp_path.name}")
    assert re.search(r"preload  on, no helper \(\d+ failed tries, next in \d+s\)", text), text

    write_app(tmp_path, "fixed")  # the code on disk imports again: the next try ends the streak
    cluster.wait_for(r"the app is preloaded again after \d+ failed tries", start=mark, timeout=60)
    cluster.wait_for(r"workers are forked from the new preload helper", start=mark, timeout=60)
    # The worker kept serving the code it had throughout; its successor is forked from the new helper.
    [worker] = cluster.ready_workers().values()
    assert serves(cluster, "one")["pid"] == worker
    os.kill(worker, signal.SIGKILL)
    cluster.wait_for(r"worker 0 \(pid \d+, incarnation 2\) ready", start=mark)
    serves(cluster, "fixed")
    assert cluster.stop() == 0


@pytest.mark.parametrize("preload", [True, False], ids=["preload", "spawn"])
def test_a_reload_onto_a_syntax_error_names_its_file_and_line(
    cluster_factory: Any, tmp_path: Path, preload: bool
) -> None:
    """Issue 16 (newcomer): the start says where a SyntaxError is; a reload said only
    "SyntaxError: invalid syntax". Both modes now carry the file and line."""
    cluster, _ = start(cluster_factory, tmp_path, workers=1, preload=preload)
    cluster.wait_ready()
    (tmp_path / "preloaded_app.py").write_text("x = 1\ndef broken(:\n")
    mark = cluster.mark()
    cluster.signal(signal.SIGHUP)
    line = cluster.wait_for(r"reload aborted", start=mark, timeout=60).string
    assert "SyntaxError" in line and f"{tmp_path / 'preloaded_app.py'}:2" in line, line
    assert cluster.stop() == 0
