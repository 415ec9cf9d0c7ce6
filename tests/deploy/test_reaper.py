"""The PID 1 reaper's pieces (asynccluster/master/reaper.py, issue 14) with real processes.

The end-to-end proof (the master as PID 1 of a PID namespace) is
tests/integration/test_deploy_pid1.py; here: the /proc parsing, and that a known pid is
never waited for while an unknown zombie is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from asynccluster.master.reaper import describe_status, reap_orphans, zombie_children
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def fake_stat(proc: Path, pid: int, comm: str, state: str, ppid: int) -> None:
    (proc / str(pid)).mkdir()
    (proc / str(pid) / "stat").write_text(f"{pid} ({comm}) {state} {ppid} 1 1 0 -1\n")


def test_zombie_children_reads_state_and_parent_after_the_last_parenthesis(tmp_path: Path) -> None:
    fake_stat(tmp_path, 10, "worker", "Z", 1)
    fake_stat(tmp_path, 11, "a) Z 1 (tricky", "S", 1)  # a comm that looks like fields
    fake_stat(tmp_path, 12, "other parent", "Z", 7)
    fake_stat(tmp_path, 13, "running", "R", 1)
    (tmp_path / "self").mkdir()
    assert sorted(zombie_children(1, tmp_path)) == [10]


def zombie(command: list[str]) -> subprocess.Popen[bytes]:
    """A child of ours that has exited and is not waited for yet."""
    child = subprocess.Popen(command)
    wait_until(lambda: child.pid in set(zombie_children(os.getpid())), "the child to exit", 10)
    return child


def test_known_pids_are_left_alone_and_unknown_zombies_are_reaped() -> None:
    child = zombie([sys.executable, "-c", "raise SystemExit(3)"])
    others = set(zombie_children(os.getpid())) - {child.pid}  # never touch another test's children
    assert reap_orphans({child.pid} | others) == []
    assert child.pid in set(zombie_children(os.getpid()))  # still there: its owner will wait for it
    reaped = reap_orphans(others)
    assert [pid for pid, _ in reaped] == [child.pid]
    assert describe_status(reaped[0][1]) == "exit code 3"
    assert child.pid not in set(zombie_children(os.getpid()))


def test_describe_status_names_the_signal() -> None:
    child = zombie([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    others = set(zombie_children(os.getpid())) - {child.pid}
    (reaped,) = reap_orphans(others)
    assert describe_status(reaped[1]) == "signal SIGKILL"
