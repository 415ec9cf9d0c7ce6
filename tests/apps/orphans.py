"""An app that abandons subprocesses, for the PID 1 test (issue 14).

- ``/orphan``: starts a helper that starts a grandchild and exits at once without waiting
  for it; the grandchild is re-parented to PID 1, waits until it has been (so it cannot be
  reaped by the helper instead), then exits. Answers ``{"pid": GRANDCHILD}`` (a pid of
  the worker's PID namespace).
- ``/zombies``: ``{"zombies": [pid, ...]}``, every zombie process in the PID namespace.
- ``/alive?pid=N``: ``{"exists": bool, "state": "Z" | "S" | ...}`` for pid N.
- anything else: 200 ``ok`` with an ``x-pid`` header (the worker's pid).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

# The grandchild: wait (bounded: 10 s) until the helper is gone and PID 1 is our parent.
GRANDCHILD = "import os, time\nfor _ in range(1000):\n    if os.getppid() == 1: break\n    time.sleep(0.01)\n"
# The helper: start the grandchild, print its pid, exit without waiting for it.
HELPER = (
    "import os, subprocess, sys\n"
    f"child = subprocess.Popen([sys.executable, '-c', {GRANDCHILD!r}])\n"
    "print(child.pid, flush=True)\n"
    "os._exit(0)\n"
)


def process_state(pid: int) -> str | None:
    """The state letter from /proc/PID/stat, or None when the pid does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[0]


def zombies() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and process_state(int(p.name)) == "Z"]


def abandon_a_grandchild() -> int:
    helper = subprocess.run([sys.executable, "-c", HELPER], capture_output=True, text=True, timeout=30, check=True)
    return int(helper.stdout.strip())


def route(path: str, query: dict[str, list[str]]) -> dict[str, Any] | None:
    if path == "/orphan":
        return {"pid": abandon_a_grandchild()}
    if path == "/zombies":
        return {"zombies": zombies()}
    if path == "/alive":
        state = process_state(int(query["pid"][0]))
        return {"exists": state is not None, "state": state}
    return None


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    result = route(scope["path"], parse_qs(scope["query_string"].decode()))
    body = b"ok\n" if result is None else json.dumps(result).encode()
    headers = [(b"content-type", b"application/json"), (b"x-pid", str(os.getpid()).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
