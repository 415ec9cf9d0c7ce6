"""An app that counts its requests with asynccluster.metrics (tests/integration/test_control.py).

``/`` answers with the worker's pid and slot; every request increments the app's own counter
``app_hits`` (label ``path``) and sets the gauge ``app_last_pid``. ``/slow?gate=PATH`` waits
until the file PATH exists, to hold a request in flight until the test opens the gate (tests/apps/gate.py).
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qs

import asynccluster
from asynccluster import metrics
from examples.hello import lifespan
from tests.apps.gate import gate_opened

HITS = metrics.counter("app_hits", "Requests seen by the app.", labels=("path",))
LAST_PID = metrics.gauge("app_last_pid", "The pid that answered last.")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await gate_opened(parse_qs(scope["query_string"].decode())["gate"][0])
    HITS.labels(path=scope["path"]).inc()
    LAST_PID.set(os.getpid())
    body = json.dumps({"pid": os.getpid(), "worker_id": asynccluster.worker_id()}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
