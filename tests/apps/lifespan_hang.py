"""An app whose lifespan startup never completes (a database that never answers)."""

from __future__ import annotations

import asyncio
from typing import Any


async def wait_for_database() -> None:
    await asyncio.Event().wait()  # never set


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "lifespan":
        return
    await receive()
    await wait_for_database()
