"""A real Starlette app: JSON, streaming, a request body, and a lifespan that stores state.

    asynccluster run examples.starlette_app:app --workers 2

Routes:

- ``GET /``            JSON: a greeting, the worker id, the process id, the startup time
- ``GET /items/{n}``   JSON item from the in-memory store built at startup (404 if missing)
- ``POST /echo``       echoes the JSON body back with its size
- ``GET /stream``      a streamed (chunked) plain-text response, ``?count=N`` lines
- ``GET /state``       how many requests this worker's lifespan state has seen

The lifespan opens a "store" (here a dict; in a real app a DB pool) once per worker process
and yields it as lifespan state; each request sees it as ``request.state.store``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from asynccluster import worker_id  # the worker's slot inside a cluster, None elsewhere


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    """Startup: build the store once per worker. Shutdown: close it."""
    store = {"items": {str(n): {"id": n, "name": f"item {n}"} for n in range(1, 11)}, "hits": 0}
    yield {"store": store, "started_at": time.time()}
    store.clear()


async def home(request: Request) -> JSONResponse:
    request.state.store["hits"] += 1
    return JSONResponse(
        {
            "hello": "world",
            "worker": worker_id(),
            "pid": os.getpid(),
            "started_at": request.state.started_at,
        }
    )


async def item(request: Request) -> JSONResponse:
    found = request.state.store["items"].get(request.path_params["n"])
    if found is None:
        return JSONResponse({"error": "no such item"}, status_code=404)
    return JSONResponse(found)


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    data = await request.json() if body else None
    return JSONResponse({"received": data, "bytes": len(body)})


async def stream(request: Request) -> StreamingResponse:
    count = min(int(request.query_params.get("count", "5")), 1000)

    async def lines() -> AsyncIterator[bytes]:
        for n in range(count):
            yield f"line {n}\n".encode()
            await asyncio.sleep(0)  # let other requests run between chunks

    return StreamingResponse(lines(), media_type="text/plain")


async def state(request: Request) -> JSONResponse:
    return JSONResponse({"hits": request.state.store["hits"]})


app = Starlette(
    routes=[
        Route("/", home),
        Route("/items/{n}", item),
        Route("/echo", echo, methods=["POST"]),
        Route("/stream", stream),
        Route("/state", state),
    ],
    lifespan=lifespan,
)
