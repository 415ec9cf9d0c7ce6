"""The control socket's client half: where sockets live, what a request and a response are,
and the one client that sends a request and reads its reply (issue 5; split out by issue 10).

The server (``asynccluster/master/control.py``) and the command line (``asynccluster/cli/``)
both import this module; the command line never imports the server.

Where: one Unix socket per running cluster, ``<dir>/<name>.sock``; ``<dir>`` is
``--control-dir``, else ``$XDG_RUNTIME_DIR/asynccluster``, else ``/tmp/asynccluster-<uid>``,
and must be ours and mode 0700 (checked with lstat). Names are ``[A-Za-z0-9_.-]``, at most
64 characters (``sun_path`` holds 108 bytes, the directory needs its share).

Protocol: newline-delimited JSON, one response per request, in order::

    {"cmd": "scale", "args": {"count": "+1"}}
    -> {"ok": true, "result": {...}}  or  {"ok": false, "error": "why", "usage": bool}

``usage`` marks bad input (the CLI exits 2 for it, 1 for any other refusal). ``stop`` answers
at once and the master then keeps the connection open until it exits: read until EOF to wait.
This module imports only the standard library (tests/test_architecture.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from asynccluster.contracts.results import scale_refusal

SUFFIX = ".sock"
MAX_NAME = 64
CONNECT_TIMEOUT = 5.0  # seconds: connecting, and any request not told otherwise
COUNT = re.compile(r"[+-]?[0-9]{1,9}")  # scale's N, +N, -N: ASCII digits only (issue 9)
SLOT = re.compile(r"[0-9]{1,9}")


class ControlError(Exception):
    """A control problem with a message meant for the operator; ``usage``: bad input (exit 2)."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


# ---------------------------------------------------------------- where the sockets live


def sanitise_name(name: str) -> str:
    """A cluster name made safe for a socket file name: ``[A-Za-z0-9_.-]``, at most 64 chars."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-")
    return cleaned[:MAX_NAME] or "asynccluster"


def default_control_dir() -> Path:
    """``$XDG_RUNTIME_DIR/asynccluster`` when that runtime directory exists, else ``/tmp/asynccluster-<uid>``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "asynccluster"
    return Path("/tmp") / f"asynccluster-{os.getuid()}"


def control_dir(configured: str = "", *, create: bool = False) -> Path:
    """The per-user directory of control sockets, checked to be private (created if asked).

    Raises ControlError when it cannot be created or is not private.
    """
    path = Path(configured) if configured else default_control_dir()
    if create:
        try:
            path.mkdir(mode=0o700, parents=bool(configured))
        except FileExistsError:
            pass
        except OSError as exc:
            raise ControlError(f"cannot create the control directory {path}: {exc.strerror}") from None
    check_private_dir(path)
    return path


def check_private_dir(path: Path) -> None:
    """Refuse a directory another user could have planted or can write into (ControlError)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return  # nothing there yet: no cluster runs
    except PermissionError:
        raise ControlError(f"cannot access the control directory {path}: permission denied") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ControlError(f"control directory {path} is not a directory (a symlink?); remove it")
    if info.st_uid != os.getuid():
        raise ControlError(
            f"control directory {path} belongs to uid {info.st_uid}, not to us (uid {os.getuid()}): "
            "its clusters are another user's"
        )
    if info.st_mode & 0o077:
        raise ControlError(
            f"control directory {path} has mode {stat.S_IMODE(info.st_mode):04o}; it must be private: chmod 700 {path}"
        )


def probe(path: Path, timeout: float = 1.0) -> bool | None:
    """True: a master listens there; False: stale (nobody listens); None: cannot tell."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError:
            return None
    return True


def remove_stale(path: Path) -> bool:
    """Unlink ``path`` if it is a socket nobody listens on; True if it was removed.

    Both halves need it: a master starting (its name may be free again) and ``asynccluster ls``.
    """
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode) or probe(path) is not False:
            return False
        path.unlink()
    except FileNotFoundError:
        return False
    return True


# ---------------------------------------------------------------- request arguments


def parse_scale(count: Any, current: int) -> int:
    """``N``, ``+N`` or ``-N`` -> the target worker count; ControlError(usage) below 1 or malformed.

    A relative change is text with its sign ("+2", "-1"); a JSON number is always an absolute
    count, so ``-1`` as a number is refused like ``0`` rather than read as "one fewer".
    """
    if isinstance(count, bool) or not isinstance(count, (int, str)):
        raise ControlError(f"scale: expected N, +N or -N, got {type(count).__name__}", usage=True)
    if isinstance(count, int):
        refusal = scale_refusal(count, current=current)
        if refusal:
            raise ControlError(refusal, usage=True)
        return count
    text = count.strip()
    # ASCII digits only (issue 9: "\\d" also takes other scripts' digits, which int() accepts),
    # and few enough of them that int() stays cheap; --max-workers bounds the rest.
    if not COUNT.fullmatch(text):
        raise ControlError(f"scale: expected N, +N or -N (at most 9 digits 0-9), got {text[:40]!r}", usage=True)
    target = current + int(text) if text[0] in "+-" else int(text)
    refusal = scale_refusal(target, current=current)  # the one rule (contracts/results.py)
    if refusal:
        raise ControlError(refusal, usage=True)
    return target


# ---------------------------------------------------------------- the wire


@dataclasses.dataclass(frozen=True)
class Request:
    """One request: a command name and its arguments (a JSON object)."""

    cmd: str
    args: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def encode(self) -> bytes:
        """The request's line: JSON and a newline."""
        return json.dumps({"cmd": self.cmd, "args": dict(self.args)}).encode() + b"\n"


@dataclasses.dataclass(frozen=True)
class Response:
    """One response: ``ok`` with a ``result``, or not ``ok`` with an ``error`` and ``usage``."""

    ok: bool
    result: Any = None
    error: str = ""
    usage: bool = False

    def encode(self) -> bytes:
        """The response's line; values JSON cannot hold are written as their str()."""
        body: dict[str, Any] = (
            {"ok": True, "result": self.result} if self.ok else {"ok": False, "error": self.error, "usage": self.usage}
        )
        return json.dumps(body, default=str).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> Response:
        """Parse a response line; ControlError if it is not a JSON object."""
        try:
            body = json.loads(line)
        except ValueError:
            raise ControlError(f"the master answered something that is not JSON: {line[:80]!r}") from None
        if not isinstance(body, dict):
            raise ControlError(f"the master answered a JSON {type(body).__name__}, not an object")
        if body.get("ok"):
            return cls(ok=True, result=body.get("result"))
        return cls(ok=False, error=str(body.get("error")), usage=bool(body.get("usage")))

    def unwrap(self) -> Any:
        """The result; ControlError with the master's message (and its usage flag) if refused."""
        if not self.ok:
            raise ControlError(self.error, usage=self.usage)
        return self.result


class ControlClient:
    """One connection to a master's control socket (blocking; the CLI has no event loop).

    Raises ControlError when the socket cannot be reached.
    """

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(CONNECT_TIMEOUT)
        try:
            self.sock.connect(str(path))
        except OSError as exc:
            self.sock.close()
            raise ControlError(f"cannot reach cluster {name!r} at {path}: {exc.strerror or exc}") from None
        self.file = self.sock.makefile("rb")

    def request(self, cmd: str, timeout: float | None = CONNECT_TIMEOUT, **args: Any) -> Any:
        """Send one request and return its result (``timeout`` in seconds, None: wait for it);
        ControlError with the master's message if refused, or if the connection is lost."""
        self.sock.settimeout(timeout)
        try:
            try:
                self.sock.sendall(Request(cmd, args).encode())
            except BrokenPipeError:
                pass  # the master refused us before reading (another user): its reason is readable
            line = self.file.readline()
        except OSError as exc:
            raise ControlError(f"lost the connection to cluster {self.name!r}: {exc}") from None
        if not line:
            raise ControlError(f"cluster {self.name!r} closed the connection (it stopped?)")
        return Response.decode(line).unwrap()

    def wait_closed(self, timeout: float | None) -> bool:
        """Read until the master closes the connection (it exits); False on timeout."""
        self.sock.settimeout(timeout)
        try:
            while self.file.readline():
                pass
        except TimeoutError:
            return False
        except OSError:
            pass
        return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
