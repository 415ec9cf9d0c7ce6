"""A Starlette app: BaseHTTPMiddleware, StaticFiles, FileResponse, GZipMiddleware (tests/compat; issue 8).

Files served come from tests/compat/apps/static/ (hello.txt, index.html).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).with_name("static")
BIG_TEXT = "".join(f"line {n}: the quick brown fox jumps over the lazy dog\n" for n in range(200))


class Tag(BaseHTTPMiddleware):
    """Adds ``x-middleware: starlette`` and the request method it saw."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers["x-middleware"] = "starlette"
        response.headers["x-seen-method"] = request.method
        return response


async def file(request: Request) -> FileResponse:
    return FileResponse(STATIC / "hello.txt", filename="greeting.txt")


async def big(request: Request) -> PlainTextResponse:
    return PlainTextResponse(BIG_TEXT)


async def small(request: Request) -> PlainTextResponse:
    return PlainTextResponse("tiny")


async def big_stream(request: Request) -> StreamingResponse:
    async def lines() -> AsyncIterator[str]:
        for line in BIG_TEXT.splitlines(keepends=True):
            yield line

    return StreamingResponse(lines(), media_type="text/plain")


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"size": len(body), "head": body[:16].decode("latin-1")})


app = Starlette(
    routes=[
        Route("/file", file),
        Route("/big", big),
        Route("/small", small),
        Route("/big-stream", big_stream),
        Route("/echo", echo, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC, html=True), name="static"),
    ],
    middleware=[Middleware(GZipMiddleware, minimum_size=500), Middleware(Tag)],
)
