"""A Litestar app: a route, JSON, a POST body (tests/compat/test_compat_litestar.py; issue 8)."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, get, post


@get("/")
async def index() -> str:
    return "hello from litestar"


@get("/json")
async def json_route(name: str = "world") -> dict[str, Any]:
    return {"framework": "litestar", "name": name}


@post("/echo")
async def echo(request: Request[Any, Any, Any]) -> dict[str, Any]:
    body = await request.body()
    return {"size": len(body), "head": body[:8].decode("latin-1")}


@post("/json-echo", status_code=200)
async def json_echo(data: dict[str, Any]) -> dict[str, Any]:
    return {"got": data}


app = Litestar(route_handlers=[index, json_route, echo, json_echo])
