"""The ASGI Path Send extension (``http.response.pathsend``, issue 16): a file as the body.

Offered only with ``--pathsend`` (Starlette's GZipMiddleware does not compress such responses).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.worker.conftest import StartServer
from tests.worker.h11check import read_responses
from tests.worker.test_worker_http import get

CONTENT = bytes(range(256)) * 2000  # 512000 bytes: more than one read piece (cycle.PATHSEND_CHUNK)


def file_app(path: Any, length: int) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert "http.response.pathsend" in scope["extensions"]
        headers = [(b"content-length", b"%d" % length), (b"content-type", b"application/octet-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": path})

    return app


async def test_the_file_is_the_body(start_server: StartServer, tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(CONTENT)
    running = await start_server(file_app(str(path), len(CONTENT)), pathsend=True)
    reader, writer = await running.connect()
    writer.write(get("/a") + get("/b"))  # keep-alive: the next response follows the file
    responses, _ = await read_responses(reader, ["GET", "GET"])
    writer.close()
    assert [r.status for r in responses] == [200, 200]
    assert responses[0].body == CONTENT and responses[1].body == CONTENT


async def test_an_empty_file_completes_the_response(start_server: StartServer, tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    running = await start_server(file_app(str(path), 0), pathsend=True)
    reader, writer = await running.connect()
    writer.write(get("/"))
    (response,), _ = await read_responses(reader, ["GET"])
    writer.close()
    assert response.status == 200 and response.body == b""


async def test_a_missing_file_or_a_relative_path_is_a_500(start_server: StartServer, tmp_path: Path) -> None:
    for path in (str(tmp_path / "missing"), "relative/path"):
        running = await start_server(file_app(path, 10), pathsend=True)
        reader, writer = await running.connect()
        writer.write(get("/"))
        (response,), _ = await read_responses(reader, ["GET"])
        writer.close()
        assert response.status == 500, path  # nothing of the response had left: the 500 replaces it


async def test_starlette_file_response_uses_it_only_when_offered(start_server: StartServer, tmp_path: Path) -> None:
    from starlette.responses import FileResponse

    path = tmp_path / "page.html"
    path.write_bytes(b"<p>hello</p>" * 1000)
    sent: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def spy(message: dict[str, Any]) -> None:
            sent.append(message["type"])
            await send(message)

        await FileResponse(path)(scope, receive, spy)

    for offered, messages in ((True, ["http.response.pathsend"]), (False, ["http.response.body"])):
        sent.clear()
        running = await start_server(app, pathsend=offered)
        reader, writer = await running.connect()
        writer.write(get("/"))
        (response,), _ = await read_responses(reader, ["GET"])
        writer.close()
        assert response.body == path.read_bytes()
        assert sent == ["http.response.start", *messages]  # without --pathsend: read in chunks by Starlette
