"""The chaos suite's app (tests/chaos, issue 9): a normal answer, a poison request, a metric bomb.

- ``/``: the worker's pid (JSON).
- ``/crash``: the worker exits at once (``os._exit(1)``): a request that kills whoever serves it.
- ``/bomb?n=N``: increments a counter labelled by N distinct made-up paths (unbounded cardinality).
- ``/leak?mb=N``: keeps N MiB more for good, then answers 0.15 s later (a steady leak).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any
from urllib.parse import parse_qs

from asynccluster import metrics

LEAKED: list[bytes] = []
BY_PATH = metrics.counter("chaos_hits", "Hits by path (a cardinality bomb).", labels=("path",))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/crash":
        os._exit(1)
    if scope["path"] == "/bomb":
        count = int(parse_qs(scope["query_string"].decode()).get("n", ["1"])[0])
        for index in range(count):
            BY_PATH.labels(path=f"/bomb/{os.getpid()}/{index}/{'x' * 200}").inc()
    if scope["path"] == "/leak":
        megabytes = int(parse_qs(scope["query_string"].decode()).get("mb", ["1"])[0])
        LEAKED.append(b"x" * (megabytes << 20))  # written, so resident
        await asyncio.sleep(0.15)
    body = json.dumps({"pid": os.getpid()}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
