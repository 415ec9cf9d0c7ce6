"""An app that talks on stdout and stderr, for the log buffer's tests (issue 11 item 1).

``/print?text=T`` prints T (stdout); ``/warn?text=T`` logs a warning; ``/crash`` raises an
exception the server logs with its traceback; ``/die`` crashes the worker process (a
segmentation fault: faulthandler's report reaches the master).
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Any
from urllib.parse import parse_qs


class WorkerCrash(BaseException):
    """Not an Exception: no server catches it, so it ends the worker process."""


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    text = parse_qs(scope["query_string"].decode()).get("text", [""])[0]
    if scope["path"] == "/print":
        print(f"app says {text} from pid {os.getpid()}")
    elif scope["path"] == "/warn":
        logging.getLogger("tests.apps.chatty").warning("app warns %s", text)
    elif scope["path"] == "/crash":
        raise WorkerCrash(f"crashed on purpose {text}")
    elif scope["path"] == "/die":
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
