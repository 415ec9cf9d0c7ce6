"""A Starlette app whose lifespan startup raises: Starlette sends the whole formatted traceback
as the ``lifespan.startup.failed`` message (issue 11 item 7: not a bare "Traceback" header)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette


async def connect_database() -> None:
    raise RuntimeError("database unreachable")


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    await connect_database()
    yield


app = Starlette(lifespan=lifespan)
