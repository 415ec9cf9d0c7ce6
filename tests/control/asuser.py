"""Run code as another user in a forked child (the tests run as root): for the control
socket's refusal of other users (issue 5)."""

from __future__ import annotations

import os
from collections.abc import Callable


def run_as(uid: int, job: Callable[[], bytes]) -> bytes:
    """Fork, drop to ``uid``, run ``job``; what it returned. (Python under /root is not
    executable by another user, so the child runs code this interpreter already loaded.)"""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            result = job()
        except BaseException as exc:
            result = f"{type(exc).__name__}: {exc}".encode()
        os.write(write_end, result)
        os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return b"".join(chunks)
