"""Answers every request with its worker's pid, slot and incarnation (JSON).

``/slow?seconds=S`` waits S seconds first (a long in-flight request for drain tests).
``/stuck`` blocks the event loop forever (``while True: pass``) for hang detection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any
from urllib.parse import parse_qs

import asynccluster


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
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/slow":
        query = parse_qs(scope["query_string"].decode())
        logging.getLogger("tests.apps.basic").info("slow request started")
        await asyncio.sleep(float(query.get("seconds", ["1"])[0]))
    elif path == "/stuck":
        logging.getLogger("tests.apps.basic").info("stuck request started")
        spin_forever()
    body = json.dumps(identity()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def spin_forever() -> None:
    while True:  # the hang-detection test looks for this line in the stacks
        pass
