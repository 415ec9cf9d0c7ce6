"""An app with known faults for the diagnose tests (issue 15).

``/fail/value``, ``/fail/key``, ``/fail/json``: three distinct unhandled exceptions (500s);
``/slow``: answers after an ``await`` of 0.4 s in :func:`wait_for_upstream`;
``/leak``: keeps 16 KiB per request forever, allocated on the line marked LEAK-LINE;
``/spin?ms=N``: burns CPU for N ms in :func:`spin_in_known_function`;
anything else: ``ok``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

KEPT: list[bytes] = []


async def wait_for_upstream() -> None:
    await asyncio.sleep(0.4)


def spin_in_known_function(ms: float) -> int:
    deadline = time.perf_counter() + ms / 1000.0
    total = 0
    while time.perf_counter() < deadline:
        total += sum(range(200))
    return total


def fail(kind: str) -> None:
    if kind == "value":
        raise ValueError("bad value 42")
    if kind == "key":
        raise KeyError("missing")
    json.loads("{not json")  # raises inside the stdlib: grouped at this line


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path.startswith("/fail/"):
        fail(path.removeprefix("/fail/"))
    elif path == "/slow":
        await wait_for_upstream()
    elif path == "/leak":
        KEPT.append(bytes(16384) + path.encode())  # LEAK-LINE
    elif path == "/spin":
        query = scope["query_string"].decode()
        spin_in_known_function(float(query.partition("=")[2] or 50))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})
