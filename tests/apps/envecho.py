"""Answers with the values of the environment variables named in the query: ``/?names=A,B``
(issue 11: an apps file's env and env-file reach the workers)."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qs


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    names = parse_qs(scope["query_string"].decode()).get("names", [""])[0].split(",")
    body = json.dumps({name: os.environ.get(name) for name in names if name} | {"cwd": os.getcwd()}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
