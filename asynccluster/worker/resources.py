"""This process's resident memory and CPU time: what the heartbeat and ``diagnose memory``
report, and what --max-memory watches (one /proc read each; no psutil needed for two numbers).

A leaf module of its own so that the worker's entry (worker/main.py) and the diagnose ops
(worker/diagnose_ops.py) both use it without importing each other (issue 10: no cycles).
"""

from __future__ import annotations

import os
import resource
import sys

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Current resident set size in bytes (Linux /proc), else the peak from getrusage."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def cpu_seconds() -> float:
    """User + system CPU seconds this process has used since it started."""
    times = os.times()
    return times.user + times.system
