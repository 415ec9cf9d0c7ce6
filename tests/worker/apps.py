"""Small ASGI apps the worker tests serve."""

from __future__ import annotations

import asyncio
import contextvars
import json
from typing import Any

Scope = dict[str, Any]

TEXT = [(b"content-type", b"text/plain")]


async def hello(scope: Scope, receive: Any, send: Any) -> None:
    """'hello <path>' with a Content-Length."""
    if scope["type"] != "http":
        return
    body = f"hello {scope['path']}".encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [*TEXT, (b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


async def echo_scope(scope: Scope, receive: Any, send: Any) -> None:
    """The scope (JSON-able parts) and the whole request body, as JSON."""
    body = b""
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        body += message["body"]
        if not message["more_body"]:
            break
    data = {
        key: value
        for key, value in scope.items()
        if key not in ("headers", "raw_path", "query_string", "state", "extensions")
    }
    data["raw_path"] = scope["raw_path"].decode("latin-1")
    data["query_string"] = scope["query_string"].decode("latin-1")
    data["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
    data["state"] = sorted(scope.get("state", {}))
    data["extensions"] = sorted(scope.get("extensions", {}))
    data["body"] = body.decode("latin-1")
    payload = json.dumps(data).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def slow_path(scope: Scope, receive: Any, send: Any) -> None:
    """Paths like /sleep/0.05 suspend before answering (forces the Task path); others answer now."""
    path = scope["path"]
    if path.startswith("/sleep/"):
        await asyncio.sleep(float(path.rsplit("/", 1)[1]))
    elif path.startswith("/yield"):
        await asyncio.sleep(0)
    await hello(scope, receive, send)


async def streaming(scope: Scope, receive: Any, send: Any) -> None:
    """A chunked response (no Content-Length) in three pieces, suspending between them."""
    await send({"type": "http.response.start", "status": 200, "headers": TEXT})
    for piece in (b"one ", b"two ", b"three"):
        await send({"type": "http.response.body", "body": piece, "more_body": True})
        await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def status_app(status: int, headers: list[tuple[bytes, bytes]] | None = None, body: bytes = b"") -> Any:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers or []})
        await send({"type": "http.response.body", "body": body})

    return app


request_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_var", default="unset")


async def contextvar_app(scope: Scope, receive: Any, send: Any) -> None:
    """Reports the contextvar as seen on entry, then sets it (must not leak to the next request)."""
    seen = request_var.get()
    request_var.set(scope["path"])
    if scope["path"].startswith("/suspend"):
        await asyncio.sleep(0.01)
    after = request_var.get()
    body = f"{seen} {after}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def lifespan_raises_after_startup(scope: Scope, receive: Any, send: Any) -> None:
    """Takes lifespan.startup, then raises (no startup.failed): a startup failure in every mode."""
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("database unreachable")
    await hello(scope, receive, send)
