"""A gate the test opens: a request held in flight until the test says so, instead of for N seconds.

The test apps' ``/slow?gate=PATH`` waits until the file PATH exists; the test creates it
(``gate.touch()``) once it has checked what must hold while the request is in flight. A fixed
``/slow?seconds=5`` was a bet that the checks finish within 5 s on a loaded machine (issue 10).
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import quote

LIMIT = 60.0  # seconds: a gate never opened fails the request (500) rather than hanging the test
POLL = 0.01  # seconds between two looks at the file: the file is the synchronisation, not this


async def gate_opened(path: str, limit: float = LIMIT) -> None:
    """Return once the file ``path`` exists; ``TimeoutError`` after ``limit`` seconds."""
    await asyncio.wait_for(_until_exists(path), limit)


async def _until_exists(path: str) -> None:
    while not os.path.exists(path):
        await asyncio.sleep(POLL)


def gated_path(gate: os.PathLike[str] | str) -> str:
    """The request path that waits on the file ``gate``: ``/slow?gate=<quoted path>``."""
    return f"/slow?gate={quote(os.fspath(gate))}"
