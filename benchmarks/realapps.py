"""The real-app workloads of benchmarks/apps_bench.py (issue 16): the same apps for every server.

- ``fastapi_app``: ``GET /json``, a pydantic response model (what most FastAPI endpoints are);
- ``fastapi_mw_app``: the same app plus one ``@app.middleware("http")`` (BaseHTTPMiddleware);
- ``starlette_app``: ``GET /plaintext``, ``POST /echo`` (the body read and sent back),
  ``GET /stream`` (1 MiB as a StreamingResponse in 64 KiB chunks) and ``GET /file`` (a
  50 KiB FileResponse);
- ``django_app``: ``GET /django``, an async view returning JSON (Django configured here on
  first use, no database).

Serve one with any ASGI server, e.g. ``uvicorn benchmarks.realapps:fastapi_app``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

STREAM_CHUNK = b"x" * 65536
STREAM_CHUNKS = 16  # 1 MiB
FILE_SIZE = 50 * 1024


class Item(BaseModel):
    id: int
    name: str
    price: float
    tags: list[str]
    in_stock: bool


ITEM = {"id": 42, "name": "widget", "price": 9.99, "tags": ["a", "b", "c"], "in_stock": True}


def _fastapi() -> FastAPI:
    app = FastAPI()

    @app.get("/json", response_model=Item)
    async def item() -> dict[str, Any]:
        return ITEM

    return app


fastapi_app = _fastapi()
fastapi_mw_app = _fastapi()


@fastapi_mw_app.middleware("http")
async def add_header(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    response = await call_next(request)
    response.headers["x-bench"] = "1"
    return response


def _bench_file() -> Path:
    """A 50 KiB file, made once per process in the temp dir (same content for every server)."""
    path = Path(tempfile.gettempdir()) / f"asynccluster-bench-{FILE_SIZE}.bin"
    if not path.exists() or path.stat().st_size != FILE_SIZE:
        partial = path.with_suffix(f".{os.getpid()}")
        partial.write_bytes(bytes(range(256)) * (FILE_SIZE // 256))
        partial.replace(path)
    return path


BENCH_FILE = _bench_file()


async def plaintext(request: Request) -> Response:
    return PlainTextResponse("Hello, world!")


async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/octet-stream")


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(STREAM_CHUNKS):
            yield STREAM_CHUNK

    return StreamingResponse(chunks(), media_type="application/octet-stream")


async def file(request: Request) -> Response:
    return FileResponse(BENCH_FILE)


starlette_app = Starlette(
    routes=[
        Route("/plaintext", plaintext),
        Route("/echo", echo, methods=["POST"]),
        Route("/stream", stream),
        Route("/file", file),
    ]
)


def _django() -> Any:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF=__name__,
            SECRET_KEY="benchmark-only",
            MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
            INSTALLED_APPS=[],
            USE_TZ=True,
        )
        django.setup()
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


def _urlpatterns() -> list[Any]:
    from django.http import JsonResponse
    from django.urls import path

    async def view(request: Any) -> JsonResponse:
        return JsonResponse(ITEM)

    return [path("django", view)]


def __getattr__(name: str) -> Any:
    """Django is set up only when a server asks for ``django_app`` (and Django for its URLs)."""
    if name == "django_app":
        value = _django()
    elif name == "urlpatterns":
        value = _urlpatterns()
    else:
        raise AttributeError(name)
    globals()[name] = value
    return value
