"""A FastAPI app using what real apps use (tests/compat/test_compat_fastapi.py; issue 8).

An ``@app.middleware("http")`` on every route (it is a BaseHTTPMiddleware: anyio task groups),
sync and async endpoints, BackgroundTasks, StreamingResponse, an SSE loop on
``request.is_disconnected()``, UploadFile, a WebSocket echo, lifespan state, asyncio.timeout,
TaskGroup, an anyio task group and ``asyncio.current_task()``. State written by background tasks
and by the SSE loop lives in this process (one worker) and is read back by later requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
from fastapi import BackgroundTasks, FastAPI, File, Form, Request, Response, UploadFile, WebSocket
from fastapi.responses import StreamingResponse
from starlette.websockets import WebSocketDisconnect

WRITTEN: dict[str, list[str]] = {}  # key -> what the background tasks wrote, in order
SSE_ENDED: dict[str, int] = {}  # stream id -> events sent before the loop saw the disconnect


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    yield {"greeting": "hello from lifespan"}


app = FastAPI(lifespan=lifespan)


@app.middleware("http")
async def tag(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    response = await call_next(request)
    response.headers["x-middleware"] = "fastapi"
    return response


@app.get("/sync")
def sync_endpoint() -> dict[str, Any]:
    # FastAPI runs a sync endpoint in anyio's thread pool: not the event loop's thread.
    return {"kind": "sync", "in_worker_thread": threading.current_thread() is not threading.main_thread()}


@app.get("/async")
async def async_endpoint(q: str = "none") -> dict[str, Any]:
    return {"kind": "async", "q": q}


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    return {"item_id": item_id}


def write_sync(key: str) -> None:
    WRITTEN.setdefault(key, []).append("sync")


async def write_async(key: str) -> None:
    await asyncio.sleep(0)
    WRITTEN.setdefault(key, []).append("async")


@app.post("/background/{key}")
async def background(key: str, tasks: BackgroundTasks) -> dict[str, str]:
    tasks.add_task(write_sync, key)
    tasks.add_task(write_async, key)
    return {"queued": key}


@app.get("/background/{key}")
async def background_written(key: str) -> dict[str, list[str]]:
    return {"written": WRITTEN.get(key, [])}


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for index in range(5):
            await asyncio.sleep(0)
            yield f"chunk {index}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


@app.get("/sse/{stream_id}")
async def sse(stream_id: str, request: Request) -> StreamingResponse:
    async def events() -> AsyncIterator[str]:
        sent = 0
        try:
            while not await request.is_disconnected():
                yield f"data: event {sent}\n\n"
                sent += 1
                await asyncio.sleep(0.02)
        finally:
            SSE_ENDED[stream_id] = sent

    return StreamingResponse(events(), media_type="text/event-stream")


@app.get("/sse-ended/{stream_id}")
async def sse_ended(stream_id: str) -> dict[str, bool]:
    return {"ended": stream_id in SSE_ENDED}


@app.post("/upload")
async def upload(note: Annotated[str, Form()], file: Annotated[UploadFile, File()]) -> dict[str, Any]:
    data = await file.read()
    return {
        "note": note,
        "filename": file.filename,
        "content_type": file.content_type,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


@app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            if text == "bye":
                await websocket.close(code=4001, reason="bye bye")
                return
            await websocket.send_text(f"echo: {text}")
    except WebSocketDisconnect:
        pass


@app.websocket("/ws-refused")
async def refused(websocket: WebSocket) -> None:
    await websocket.close(code=1008)  # before accept: the handshake is refused with an HTTP 403


@app.get("/state")
async def state(request: Request) -> dict[str, str]:
    return {"greeting": request.state.greeting}


@app.get("/task")
async def current_task() -> dict[str, bool]:
    task = asyncio.current_task()
    return {"has_task": task is not None, "not_done": task is not None and not task.done()}


@app.get("/asyncio")
async def asyncio_features() -> dict[str, Any]:
    """asyncio.timeout (one that passes, one that fires) around a TaskGroup (Python >= 3.11)."""
    if sys.version_info < (3, 11):
        return {"skipped": "python < 3.11"}
    async with asyncio.timeout(5), asyncio.TaskGroup() as group:
        doubled = [group.create_task(double(n)) for n in range(3)]
    fired = False
    try:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(5)
    except TimeoutError:
        fired = True
    waited = await asyncio.wait_for(double(21), timeout=5)
    return {"doubled": [task.result() for task in doubled], "timeout_fired": fired, "wait_for": waited}


async def double(n: int) -> int:
    await asyncio.sleep(0)
    return 2 * n


@app.get("/anyio")
async def anyio_features() -> dict[str, Any]:
    results: list[int] = []

    async def add(n: int) -> None:
        await anyio.sleep(0)
        results.append(n)

    async with anyio.create_task_group() as group:
        for n in range(3):
            group.start_soon(add, n)
    with anyio.move_on_after(0.01) as scope:
        await anyio.sleep(5)
    in_thread = await anyio.to_thread.run_sync(lambda: threading.current_thread() is not threading.main_thread())
    return {"results": sorted(results), "cancelled": scope.cancelled_caught, "in_thread": in_thread}
