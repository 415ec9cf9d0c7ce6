"""sse-starlette's EventSourceResponse: a finite stream and one that runs until the client leaves.

``/events``: five events, then the stream ends. ``/forever/{id}``: an event every 20 ms until
the client disconnects (sse-starlette watches ``receive()`` for ``http.disconnect`` in a task
group: issue 8, "an sse-starlette stream hangs the worker"); ``/ended/{id}`` says whether that
generator has been closed. Tests: tests/compat/test_compat_sse.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ENDED: set[str] = set()


async def events(request: Request) -> EventSourceResponse:
    async def five() -> AsyncIterator[dict[str, Any]]:
        for n in range(5):
            await asyncio.sleep(0)
            yield {"event": "tick", "id": str(n), "data": f"event {n}"}

    return EventSourceResponse(five())


async def forever(request: Request) -> EventSourceResponse:
    stream_id = request.path_params["stream_id"]

    async def endless() -> AsyncIterator[dict[str, Any]]:
        n = 0
        try:
            while True:
                yield {"data": f"event {n}"}
                n += 1
                await asyncio.sleep(0.02)
        finally:
            ENDED.add(stream_id)

    return EventSourceResponse(endless())


async def ended(request: Request) -> JSONResponse:
    return JSONResponse({"ended": request.path_params["stream_id"] in ENDED})


app = Starlette(
    routes=[
        Route("/events", events),
        Route("/forever/{stream_id}", forever),
        Route("/ended/{stream_id}", ended),
        Route("/ping", lambda request: JSONResponse({"pong": True})),
    ]
)
