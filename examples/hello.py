"""A plain ASGI 3 hello-world app: the app every benchmark serves.

Run it with ``asynccluster run examples.hello:app`` (or any ASGI server). It answers every
HTTP request with ``200 Hello, world!`` and acknowledges lifespan startup and shutdown, so
servers that run lifespan (``auto``/``on``) see a well-behaved app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY = b"Hello, world!"
# The header list is built once; the message dicts are made per request like a real app
# would, so no server gains from caching a message object it was handed before.
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer HTTP with a fixed greeting; acknowledge lifespan events."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)


async def lifespan(receive: Receive, send: Send) -> None:
    """Answer startup and shutdown with 'complete' until the server says shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
