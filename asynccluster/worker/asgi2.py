"""ASGI 2 ("double callable") apps, detected and adapted to the ASGI 3 calling convention.

ASGI 2: ``app(scope)`` returns an instance, and ``await instance(receive, send)`` runs it.
ASGI 3: ``await app(scope, receive, send)``. Detection follows the rule other servers use
(a class is ASGI 2 unless its instances are awaitable; a function or callable object is
ASGI 3 when it is a coroutine function), so the same apps work here as under uvicorn.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

ASGIApp = Callable[[Any, Any, Any], Coroutine[Any, Any, None]]


def is_asgi2(app: Any) -> bool:
    """True when ``app`` looks like an ASGI 2 application."""
    if inspect.isclass(app):
        # A class whose instances are awaitable is called like ASGI 3 (Class(scope, receive, send)).
        return not hasattr(app, "__await__")
    if inspect.isfunction(app) or inspect.ismethod(app):
        return not inspect.iscoroutinefunction(app)
    call = getattr(app, "__call__", None)  # noqa: B004 - we need the method itself, not callable()
    return call is not None and not inspect.iscoroutinefunction(call)


def asgi2_to_asgi3(app: Any) -> ASGIApp:
    """Wrap an ASGI 2 app so it can be called as ``await app(scope, receive, send)``."""

    async def asgi3(scope: Any, receive: Any, send: Any) -> None:
        instance = app(scope)
        await instance(receive, send)

    asgi3.__qualname__ = f"asgi2_to_asgi3({getattr(app, '__qualname__', type(app).__name__)})"
    return asgi3


def as_asgi3(app: Any) -> ASGIApp:
    """The app itself when it is ASGI 3, else an adapter."""
    if is_asgi2(app):
        return asgi2_to_asgi3(app)
    return app
