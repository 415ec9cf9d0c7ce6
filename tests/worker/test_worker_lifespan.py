"""Lifespan: startup/shutdown per --lifespan, state shared into requests, failures reported."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from asynccluster import exitcodes
from asynccluster.config import Config
from asynccluster.worker.lifespan import LifespanFailure
from asynccluster.worker.server import Server
from tests.worker.apps import hello
from tests.worker.conftest import StartServer

REPO = Path(__file__).resolve().parents[2]


def lifespan_app(events: list[str], *, fail_startup: str | None = None, raise_startup: bool = False) -> Any:
    """Records lifespan events; stores state; answers requests with the state it sees."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    if raise_startup:
                        raise RuntimeError("database unreachable")
                    if fail_startup is not None:
                        await send({"type": "lifespan.startup.failed", "message": fail_startup})
                        return
                    scope["state"]["db"] = "connected"
                    scope["state"]["counter"] = [0]
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        else:
            state = scope["state"]
            state["counter"][0] += 1  # shared object: visible to later requests
            state["per_request"] = scope["path"]  # top-level key: this request's copy only
            body = f"{state['db']} {state['counter'][0]} {sorted(state)}".encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})

    return app


async def test_state_is_shared_into_requests_and_shutdown_runs(start_server: StartServer) -> None:
    events: list[str] = []
    running = await start_server(lifespan_app(events), lifespan="on")
    assert events == ["lifespan.startup"]
    async with httpx.AsyncClient() as client:
        first = await client.get(running.url + "/1")
        second = await client.get(running.url + "/2")
    assert first.text == "connected 1 ['counter', 'db', 'per_request']"
    assert second.text == "connected 2 ['counter', 'db', 'per_request']"
    assert "per_request" not in running.server.lifespan.state  # a shallow copy per request
    await running.server.drain(1.0)
    await running.server.shutdown()
    assert events == ["lifespan.startup", "lifespan.shutdown"]


async def test_startup_failed_message_raises_lifespan_failure() -> None:
    server = Server(Config(lifespan="auto"), lifespan_app([], fail_startup="no database"))
    with pytest.raises(LifespanFailure, match="no database"):
        await server.startup()


async def test_exception_in_startup_is_fatal_with_lifespan_on(caplog: pytest.LogCaptureFixture) -> None:
    server = Server(Config(lifespan="on"), lifespan_app([], raise_startup=True))
    with caplog.at_level(logging.ERROR), pytest.raises(LifespanFailure, match="database unreachable"):
        await server.startup()
    assert "Traceback" in caplog.text


async def test_exception_after_taking_startup_is_fatal_in_auto_mode(caplog: pytest.LogCaptureFixture) -> None:
    """It received lifespan.startup and raised before startup.complete: it speaks lifespan and
    failed to start (not "lifespan unsupported")."""
    server = Server(Config(lifespan="auto"), lifespan_app([], raise_startup=True))
    with caplog.at_level(logging.ERROR), pytest.raises(LifespanFailure) as failure:
        await server.startup()
    first, where = str(failure.value).split("\n")  # the message, then where it was raised (issue 11)
    assert first == "lifespan startup failed: the app raised RuntimeError: database unreachable"
    assert where.startswith(f"  at {__file__}:") and where.endswith('raise RuntimeError("database unreachable")')
    assert "Traceback" in caplog.text and "database unreachable" in caplog.text
    assert not server.lifespan.supported


async def test_exception_before_receive_means_unsupported_in_auto_mode(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def http_only(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"  # raises for the lifespan scope before any receive()
        await hello(scope, receive, send)

    with caplog.at_level(logging.INFO):
        running = await start_server(http_only, lifespan="auto")
    (record,) = [r for r in caplog.records if "lifespan" in r.getMessage()]
    assert record.levelno == logging.INFO
    assert "does not support the ASGI lifespan protocol (it raised AssertionError" in record.getMessage()
    assert not running.server.lifespan.supported
    async with httpx.AsyncClient() as client:
        assert (await client.get(running.url)).text == "hello /"


async def test_http_only_app_reading_first_is_served_in_auto_mode(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An http-only app that reads its "request" before answering takes lifespan.startup, then
    answers it with http.response.start: it does not speak lifespan, it did not fail."""

    async def reads_first(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await hello({"type": "http", "path": scope.get("path", "?")}, receive, send)

    with caplog.at_level(logging.INFO):
        running = await start_server(reads_first, lifespan="auto")
    assert "'http.response.start'" in caplog.text and "serving without lifespan" in caplog.text
    async with httpx.AsyncClient() as client:
        assert (await client.get(running.url)).text == "hello /"


async def test_wrong_lifespan_message_is_a_failure_in_auto_mode() -> None:
    async def confused(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

    with pytest.raises(LifespanFailure, match=r"'lifespan\.shutdown\.complete' out of order"):
        await Server(Config(lifespan="auto"), confused).startup()


@pytest.mark.integration  # real processes (tests/conftest.py: the tiers)
def test_a_worker_whose_startup_raises_exits_with_the_lifespan_code() -> None:
    """The real entry point: one message with the exception, exit code LIFESPAN (4), no respawn."""
    command = [sys.executable, "-m", "asynccluster", "run", "tests.worker.apps:lifespan_raises_after_startup",
               "--port", "0", "--workers", "1", "--name", f"lifespan-raises-{os.getpid()}"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCCLUSTER_") and k != "WEB_CONCURRENCY"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == exitcodes.LIFESPAN, output
    assert output.count("lifespan startup failed: the app raised RuntimeError: database unreachable") == 1, output


async def test_app_without_lifespan_support_fails_with_lifespan_on() -> None:
    async def http_only(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"

    with pytest.raises(LifespanFailure, match="AssertionError"):
        await Server(Config(lifespan="on"), http_only).startup()


async def test_lifespan_off_never_calls_the_app() -> None:
    events: list[str] = []
    server = Server(Config(lifespan="off"), lifespan_app(events))
    await server.startup()
    await server.shutdown()
    assert events == []


async def test_shutdown_failure_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.failed", "message": "could not flush"})

    server = Server(Config(lifespan="on"), app)
    await server.startup()
    with caplog.at_level(logging.ERROR):
        await server.shutdown()
    assert "could not flush" in caplog.text
