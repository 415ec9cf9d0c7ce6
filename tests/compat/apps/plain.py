"""A plain ASGI app for the ASGI details frameworks rely on (tests/compat/test_compat_plain.py; issue 8).

Routes (all answer JSON):
- ``/asyncio``: asyncio.timeout (one passes, one fires) around a TaskGroup, and wait_for (3.11+);
- ``/anyio``: an anyio task group and a cancel scope;
- ``/ctx``: returns the request ContextVar as it was on entry, then sets it to ``?set=``: on one
  keep-alive connection a second request must see it unset (one fresh context per request);
- ``/after-body/{id}`` (POST): reads the whole body, then calls ``receive()`` again: that call must
  wait (not return within 50 ms: no further ``http.request``), and once the response has been sent
  return ``http.disconnect``; what it saw is kept under ``id``;
- ``/until-disconnect/{id}`` (POST): reads the body, then records every further ``receive()``
  message until ``http.disconnect`` (at most 20), never answering: the client leaves;
- ``/record/{id}``: what the two routes above recorded ({} until they have);
- ``/ignore-body`` (POST): answers without reading the body;
- ``/boom``, ``/boom-midway``, ``/silent``: raises before / in the middle of its response, or
  returns without one;
- anything else: the method and path.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import sys
from typing import Any

import anyio

REQUEST_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("request_var", default="unset")
LIFESPAN_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("lifespan_var", default="unset")
RECORDS: dict[str, dict[str, Any]] = {}
Scope = dict[str, Any]
Message = dict[str, Any]


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    path: str = scope["path"]
    if path.startswith("/after-body/"):
        await after_body(path.rsplit("/", 1)[1], receive, send)
    elif path.startswith("/until-disconnect/"):
        await until_disconnect(path.rsplit("/", 1)[1], receive)
    elif path.startswith("/record/"):
        await answer(send, RECORDS.get(path.rsplit("/", 1)[1], {}))
    elif path == "/boom":
        raise RuntimeError("the app fails before its response (expected by the test)")
    elif path == "/boom-midway":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("the app fails in the middle of its response (expected by the test)")
    elif path == "/silent":
        return  # returns without a response
    elif path == "/ignore-body":
        await answer(send, {"ignored": True})
    elif path == "/ctx":
        await answer(send, context_vars(scope))
    elif path == "/asyncio":
        await answer(send, await asyncio_features())
    elif path == "/anyio":
        await answer(send, await anyio_features())
    else:
        await answer(send, {"method": scope["method"], "path": path})


async def lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            LIFESPAN_VAR.set("set in lifespan startup")  # must not leak into requests (their own context)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def answer(send: Any, payload: dict[str, Any], status: int = 200) -> None:
    body = json.dumps(payload, sort_keys=True).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client left before the body was read")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def after_body(record_id: str, receive: Any, send: Any) -> None:
    body = await read_body(receive)
    pending = asyncio.ensure_future(receive())
    # A correct receive() has nothing to return yet; a wrong one returns at once (issue 8, item 2).
    done, _ = await asyncio.wait({pending}, timeout=0.05)
    early = pending.result()["type"] if done else None
    await answer(send, {"body_size": len(body), "early": early})
    message = await asyncio.wait_for(pending, timeout=5)
    RECORDS[record_id] = {"early": early, "after_response": message["type"]}


async def until_disconnect(record_id: str, receive: Any) -> None:
    body = await read_body(receive)
    seen: list[str] = []
    RECORDS[record_id] = {"body_size": len(body), "waiting": True, "seen": seen}
    while len(seen) < 20:
        message = await receive()
        seen.append(message["type"])
        if message["type"] == "http.disconnect":
            break
    RECORDS[record_id]["waiting"] = False


def context_vars(scope: Scope) -> dict[str, Any]:
    before = REQUEST_VAR.get()
    query = dict(part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part)
    if "set" in query:
        REQUEST_VAR.set(query["set"])
    return {"request_var_on_entry": before, "lifespan_var": LIFESPAN_VAR.get(), "client_port": scope["client"][1]}


async def asyncio_features() -> dict[str, Any]:
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
    task = asyncio.current_task()
    return {
        "doubled": [t.result() for t in doubled],
        "timeout_fired": fired,
        "wait_for": waited,
        "has_task": task is not None,
    }


async def double(n: int) -> int:
    await asyncio.sleep(0)
    return 2 * n


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
    return {"results": sorted(results), "cancelled": scope.cancelled_caught}
