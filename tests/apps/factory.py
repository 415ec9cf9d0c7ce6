"""App factories, for the factory detection tests (issue 8 item 8).

``create_app`` is a plain function returning a Starlette app (the FastAPI/Starlette idiom);
``App`` is a class whose instances are ASGI apps (called with no arguments, like uvicorn).
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

CALLS: list[str] = []  # one entry per factory call in this process


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("made by a factory")


def create_app() -> Starlette:
    CALLS.append("create_app")
    return Starlette(routes=[Route("/", hello)])


class App:
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"8")]})
        await send({"type": "http.response.body", "body": b"instance"})


async def create_app_async() -> Starlette:  # a mistake: factories are plain functions
    return Starlette()
