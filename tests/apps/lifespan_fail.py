"""An app whose lifespan startup raises: the cluster must stop with exit code LIFESPAN.

Like Starlette's router does for a startup handler that raises: report
``lifespan.startup.failed`` with the error, then re-raise.
"""

from __future__ import annotations

from typing import Any


async def connect_database() -> None:
    raise RuntimeError("database unreachable")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "lifespan":
        return
    await receive()
    try:
        await connect_database()
    except RuntimeError as exc:
        await send({"type": "lifespan.startup.failed", "message": f"RuntimeError: {exc}"})
        raise
