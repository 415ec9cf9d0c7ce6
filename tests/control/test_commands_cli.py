"""The management commands (client side) against control sockets served by fake supervisors."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from asynccluster import cli
from asynccluster.config import Config
from asynccluster.contracts.results import ReloadResult
from asynccluster.master import logbuffer
from asynccluster.master.control import start_control
from tests.control.fakes import FakeSupervisor


class LoopThread:
    """An event loop in a thread, serving control sockets while the test runs blocking commands."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.closers: list[Any] = []

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def serve(self, supervisor: FakeSupervisor, directory: Path, name: str, **settings: Any) -> None:
        config = Config(app="tests.apps.basic:app", name=name, control_dir=str(directory), **settings)
        self.closers.append(self.call(start_control(supervisor, config)))

    def stop(self) -> None:
        for close in reversed(self.closers):
            self.call(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass
class Env:
    directory: Path
    loop: LoopThread
    supervisor: FakeSupervisor
    capsys: pytest.CaptureFixture[str]

    def run(self, *argv: str) -> tuple[int, str, str]:
        parser = cli.build_parser()
        args = parser.parse_args([*argv[:1], "--control-dir", str(self.directory), *argv[1:]])
        func: Callable[[argparse.Namespace], int] = args.func
        self.capsys.readouterr()
        code = func(args)
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def env(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Env]:
    loop = LoopThread()
    supervisor = FakeSupervisor()
    directory = tmp_path / "ctl"
    loop.serve(supervisor, directory, "web", log_file=str(tmp_path / "cluster.log"))
    try:
        yield Env(directory, loop, supervisor, capsys)
    finally:
        loop.stop()


def test_ls_lists_the_running_cluster(env: Env) -> None:
    code, out, _ = env.run("ls")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["NAME", "PID", "STATE", "WORKERS", "ADDRESS", "UPTIME"]
    assert row.split()[:5] == ["web", "4242", "running", "2/2", "127.0.0.1:8000"]
    code, out, _ = env.run("ls", "--json")
    [entry] = json.loads(out)
    assert entry["name"] == "web" and entry["workers_ready"] == 2 and entry["workers_total"] == 2


def test_status_table_and_json(env: Env) -> None:
    code, out, _ = env.run("status")
    assert code == 0
    assert "cluster  web  (master pid 4242, running" in out
    assert "listener reuseport" in out and "accept-queue depth slot 0: 0, slot 1: 0" in out
    table = out.split("\n\n", 1)[1].splitlines()
    assert table[0].split()[:3] == ["SLOT", "PID", "STATE"]
    assert [line.split()[1] for line in table[1:]] == ["1000", "1001"]
    code, out, _ = env.run("status", "web", "--json")
    view = json.loads(out)
    assert view["name"] == "web" and len(view["workers"]) == 2 and "req_per_s" in view["workers"][0]


def test_operations_report_their_outcome(env: Env) -> None:
    assert env.run("reload") == (0, "reloaded 2/2 workers in 0.1 s, 0 failures\n", "")
    code, out, _ = env.run("scale", "+1", "--json")
    assert code == 0 and json.loads(out)["target"] == 3
    assert env.run("scale", "web", "-1")[0] == 0
    assert env.run("restart", "web", "1")[1] == "restarted slot 1\n"
    assert env.supervisor.calls == [("reload", None), ("scale", 3), ("scale", 1), ("restart", 1)]


def test_a_failed_reload_exits_non_zero(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken() -> ReloadResult:
        error = "reload aborted: worker 0 did not become ready (exit code 3); rolled back"
        return ReloadResult(False, 0, 2, 0.1, error=error, message=error)

    monkeypatch.setattr(env.supervisor, "reload", broken)
    code, out, err = env.run("reload")
    assert code == 1 and out == "" and "reload aborted" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("scale", "0"), "cannot scale to 0 workers"),
        (("scale", "-5"), "cannot scale to -3 workers (now 2)"),
        (("scale", "lots"), "expected N, +N or -N"),
        (("restart", "9"), "no worker in slot 9; the slots are: 0, 1"),
    ],
)
def test_bad_input_exits_2_with_a_message(env: Env, argv: tuple[str, ...], message: str) -> None:
    code, out, err = env.run(*argv)
    assert code == 2 and out == ""
    assert message in err and err.startswith(f"asynccluster {argv[0]}: error: ")  # argparse's prefix
    assert env.supervisor.calls == []


def test_unknown_name_lists_the_known_ones(env: Env) -> None:
    code, _, err = env.run("status", "nope")
    assert code == 1 and "no cluster named 'nope'; running: web" in err


def test_name_is_needed_only_when_several_run(env: Env) -> None:
    env.loop.serve(FakeSupervisor(), env.directory, "api")
    code, _, err = env.run("status")
    assert code == 1 and "several clusters are running (api, web)" in err
    assert env.run("status", "api")[0] == 0
    assert len(env.run("ls")[1].splitlines()) == 3


def test_stale_sockets_are_reported_and_cleaned(env: Env) -> None:
    ghost = env.directory / "ghost.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(ghost))
    dead.close()
    code, _, err = env.run("status", "ghost")
    assert code == 1 and "cluster 'ghost' is not running" in err and "removed its stale control socket" in err
    assert not ghost.exists()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(ghost))
    dead.close()
    code, out, err = env.run("ls")
    assert code == 0 and "ghost" not in out and "removed the stale control socket of 'ghost'" in err
    assert not ghost.exists()


def test_no_cluster_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = Env(tmp_path / "empty", LoopThread(), FakeSupervisor(), capsys)
    try:
        assert env.run("ls") == (0, f"no cluster is running (control directory {tmp_path / 'empty'})\n", "")
        code, _, err = env.run("status")
        assert code == 1 and "no cluster is running" in err
    finally:
        env.loop.stop()


@pytest.fixture
def buffer() -> Iterator[logbuffer.LogBuffer]:
    """This process's log buffer (the "master" of these tests), detached afterwards: an
    installed buffer is a handler on the asynccluster logger that later tests must not see."""
    yield logbuffer.install()
    logbuffer.uninstall()


def feed_lines(marker: str) -> list[str]:
    """Worker lines into this process's log buffer (the "master" of these tests), as a worker writes them."""
    lines = [
        f"2024-01-01 10:00:01,000 INFO    [worker 0 pid 1000] GET /{marker}/1 200",
        f"2024-01-01 10:00:02,000 INFO    [worker 1 pid 1001] GET /{marker}/2 200",
        f"2024-01-01 10:00:03,000 WARNING [worker 0 pid 1000] slow /{marker}/3",
        f"2024-01-01 10:00:04,000 INFO    [worker 0 pid 1000] GET /{marker}/4 200",
    ]
    buffer = logbuffer.install()
    for line in lines:
        slot, pid = (0, 1000) if "worker 0" in line else (1, 1001)
        buffer.feed(slot, pid, "err", (line + "\n").encode())
    buffer.feed(1, 1001, "out", f"printed {marker}\n".encode())
    return lines


def test_logs_shows_the_last_lines_filtered_by_worker(env: Env, buffer: logbuffer.LogBuffer) -> None:
    lines = feed_lines("filtered")
    code, out, _ = env.run("logs", "--lines", "2")
    assert (
        code == 0
        and out.splitlines()[0] == lines[3]
        and out.splitlines()[1].endswith("OUT     [worker 1 pid 1001] printed filtered")
    )
    # The filter first, then the last N (issue 11: "--worker 1 -n 2" printed nothing).
    code, out, _ = env.run("logs", "--worker", "0", "-n", "2", "--json")
    items = [json.loads(line) for line in out.splitlines()]
    assert [item["text"] for item in items] == [lines[2], lines[3]]
    assert {(item["cluster"], item["slot"], item["pid"]) for item in items} == {("web", 0, 1000)}


def test_logs_err_only_and_since(env: Env, buffer: logbuffer.LogBuffer) -> None:
    lines = feed_lines("errors")
    code, out, _ = env.run("logs", "--err", "-n", "1")
    assert code == 0 and out.splitlines() == [lines[2]]
    code, out, _ = env.run("logs", "--since", "1h", "-n", "100")
    assert lines[0] in out.splitlines()
    code, _, err = env.run("logs", "--since", "yesterday")
    assert code == 2 and "--since: expected a duration like 90s" in err


def test_stop_asks_the_master_and_waits_for_it(env: Env) -> None:
    code, out, err = env.run("stop", "--timeout", "0.2")
    assert env.supervisor.calls == [("stop", False)]
    assert out.startswith("stopping web (pid ")
    # The fake "master" is this very process, so it does not exit: reported, non-zero.
    assert code == 1 and "is still running" in err


def test_top_json_refreshes(env: Env) -> None:
    code, out, _ = env.run("top", "--json", "--iterations", "2", "--interval", "0.01")
    assert code == 0
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["web", "web"]
