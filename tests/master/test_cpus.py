"""--workers auto against fake /proc and /sys trees (cgroup v1 and v2) and real affinity."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from asynccluster import cpus


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "affinity_cpus", lambda: (8, "CPU affinity allows 8 of 8 CPUs"))


def test_cgroup_v2_quota_rounds_up(tmp_path: Path, affinity: None) -> None:
    root = tree(tmp_path, {"proc/self/cgroup": "0::/app.slice\n", "sys/fs/cgroup/app.slice/cpu.max": "150000 100000\n"})
    result = cpus.usable_cpus(root)
    assert result.count == 2
    assert "cpu.max" in result.how


def test_cgroup_v2_parent_limit_applies(tmp_path: Path, affinity: None) -> None:
    root = tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/a/b\n",
            "sys/fs/cgroup/a/b/cpu.max": "max 100000\n",
            "sys/fs/cgroup/a/cpu.max": "300000 100000\n",
        },
    )
    assert cpus.usable_cpus(root).count == 3


def test_cgroup_v1_cfs_quota(tmp_path: Path, affinity: None) -> None:
    root = tree(
        tmp_path,
        {
            "proc/self/cgroup": "4:memory:/x\n3:cpu,cpuacct:/docker/abc\n",
            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
        },
    )
    result = cpus.usable_cpus(root)
    assert result.count == 1  # half a CPU: at least 1
    assert "cfs_quota_us" in result.how


def test_no_quota_means_affinity(tmp_path: Path, affinity: None) -> None:
    root = tree(tmp_path, {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "max 100000\n"})
    assert cpus.usable_cpus(root).count == 8


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity")
def test_real_affinity_is_honoured() -> None:
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        assert cpus.affinity_cpus()[0] == 1
    finally:
        os.sched_setaffinity(0, before)
