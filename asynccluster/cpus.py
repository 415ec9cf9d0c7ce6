"""``--workers auto``: the CPUs this process may really use (issue 3).

``os.cpu_count()`` reports the machine; a container or a ``taskset`` gets less. We take the
smallest of:

- the CPU affinity mask (``os.sched_getaffinity``: taskset, cpusets),
- the cgroup v2 quota (``cpu.max``: "QUOTA PERIOD" or "max PERIOD"), checked on the
  process's cgroup and each parent (a parent's limit applies too),
- the cgroup v1 CFS quota (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; -1 = none),

a fractional quota rounded up, and at least 1. :func:`usable_cpus` also says how it got
the number, for the log.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CpuCount:
    count: int
    how: str  # one line for the log: where the number came from


def usable_cpus(root: Path = Path("/"), pid: str = "self") -> CpuCount:
    """The worker count for ``--workers auto``. ``root`` lets tests use a fake /proc and /sys."""
    affinity, affinity_how = affinity_cpus()
    quota, quota_how = cgroup_quota(root, pid)
    count = affinity
    parts = [affinity_how]
    if quota is not None:
        parts.append(quota_how)
        count = min(count, max(1, math.ceil(quota)))
    else:
        parts.append(quota_how)
    count = max(1, count)
    return CpuCount(count, f"--workers auto = {count}: " + "; ".join(parts))


def affinity_cpus() -> tuple[int, str]:
    online = os.cpu_count() or 1
    getaffinity = getattr(os, "sched_getaffinity", None)
    if getaffinity is None:
        return online, f"{online} CPUs online (no affinity API)"
    allowed = len(getaffinity(0))
    return allowed, f"CPU affinity allows {allowed} of {online} CPUs"


def cgroup_quota(root: Path, pid: str = "self") -> tuple[float | None, str]:
    """The tightest cgroup CPU quota in CPUs (e.g. 1.5), or None when unlimited."""
    try:
        lines = (root / "proc" / pid / "cgroup").read_text().splitlines()
    except OSError:
        return None, "no cgroup information"
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            v2 = cgroup_v2_quota(root / "sys" / "fs" / "cgroup", path)
            if v2[0] is not None:
                return v2
        elif "cpu" in controllers.split(","):
            return cgroup_v1_quota(root / "sys" / "fs" / "cgroup", controllers, path)
    return None, "no cgroup CPU quota"


def candidate_dirs(mount: Path, path: str) -> list[Path]:
    """The cgroup's directory and its parents up to the mount; in a cgroup namespace the
    mount root is the process's own cgroup, so it is always a candidate."""
    dirs: list[Path] = []
    current = Path(path.strip() or "/")
    while True:
        dirs.append(mount / str(current).lstrip("/"))
        if current == current.parent:
            break
        current = current.parent
    return dirs


def cgroup_v2_quota(mount: Path, path: str) -> tuple[float | None, str]:
    best: float | None = None
    where = ""
    for directory in candidate_dirs(mount, path):
        try:
            quota_text, period_text = (directory / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        if quota_text == "max":
            continue
        cpus = int(quota_text) / int(period_text)
        if best is None or cpus < best:
            best, where = cpus, f"cgroup v2 cpu.max {quota_text} {period_text} ({cpus:g} CPUs) in {directory}"
    return best, where or "cgroup v2: no cpu.max quota"


def cgroup_v1_quota(mount: Path, controllers: str, path: str) -> tuple[float | None, str]:
    best: float | None = None
    where = ""
    for name in dict.fromkeys((controllers, "cpu,cpuacct", "cpu")):
        for directory in candidate_dirs(mount / name, path):
            try:
                quota = int((directory / "cpu.cfs_quota_us").read_text())
                period = int((directory / "cpu.cfs_period_us").read_text())
            except (OSError, ValueError):
                continue
            if quota <= 0 or period <= 0:
                continue  # -1: no quota at this level
            cpus = quota / period
            if best is None or cpus < best:
                best, where = cpus, f"cgroup v1 cpu.cfs_quota_us {quota} / cfs_period_us {period} ({cpus:g} CPUs)"
        if best is not None:
            break
    return best, where or "cgroup v1: no CFS quota"
