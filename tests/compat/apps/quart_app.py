"""A Quart app: a route, JSON, a POST body, a WebSocket echo (tests/compat/test_compat_quart.py; issue 8)."""

from __future__ import annotations

from typing import Any

from quart import Quart, request, websocket

app = Quart(__name__)


@app.route("/")
async def index() -> str:
    return "hello from quart"


@app.route("/json")
async def json_route() -> dict[str, Any]:
    return {"framework": "quart", "args": request.args.to_dict()}


@app.route("/echo", methods=["POST"])
async def echo() -> dict[str, Any]:
    body = await request.get_data()
    return {"size": len(body), "head": body[:8].decode("latin-1")}


@app.route("/json-echo", methods=["POST"])
async def json_echo() -> dict[str, Any]:
    return {"got": await request.get_json()}


@app.websocket("/ws")
async def echo_ws() -> None:
    while True:
        text = await websocket.receive()
        if text == "bye":
            await websocket.close(1000, "done")
            return
        await websocket.send(f"echo: {text}")
