"""Answers every request with its worker's pid, slot and incarnation (JSON).

``/slow?gate=PATH`` waits until the file PATH exists (a request held in flight until the test opens
the gate: tests/apps/gate.py).
``/stuck`` blocks the event loop forever (``while True: pass``) for hang detection.
``/stream`` streams a chunk every 0.1 s forever (a long-lived response for drain tests).
``BASIC_SHUTDOWN_SECONDS`` in the environment: lifespan shutdown takes that long (budget tests).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any
from urllib.parse import parse_qs

import asynccluster
from tests.apps.gate import gate_opened


def identity() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "worker_id": asynccluster.worker_id(),
        "incarnation": os.environ.get("ASYNCCLUSTER_WORKER_INCARNATION"),
    }


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                seconds = float(os.environ.get("BASIC_SHUTDOWN_SECONDS", "0"))
                if seconds:
                    await asyncio.sleep(seconds)  # e.g. flushing buffers to a database
                    logging.getLogger("tests.apps.basic").info("lifespan shutdown finished")
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/slow":
        query = parse_qs(scope["query_string"].decode())
        logging.getLogger("tests.apps.basic").info("slow request started")
        await gate_opened(query["gate"][0])
    elif path == "/stream":
        await stream_forever(send)
        return
    elif path == "/stuck":
        logging.getLogger("tests.apps.basic").info("stuck request started")
        spin_forever()
    body = json.dumps(identity()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def stream_forever(send: Any) -> None:
    """Never ends by itself: the drain must close it at the graceful timeout (issue 4)."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    logging.getLogger("tests.apps.basic").info("stream started")
    while True:
        await send({"type": "http.response.body", "body": b"tick\n", "more_body": True})
        await asyncio.sleep(0.1)


def spin_forever() -> None:
    while True:  # the hang-detection test looks for this line in the stacks
        pass
