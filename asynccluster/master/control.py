"""The control socket: how ``asynccluster status/reload/scale/restart/stop/top`` reach a master.

Where (issue 5): one Unix socket per running cluster, ``<dir>/<name>.sock``, where ``<dir>``
is ``--control-dir``, else ``$XDG_RUNTIME_DIR/asynccluster``, else ``/tmp/asynccluster-<uid>``.
The directory must be ours and mode 0700 (checked with lstat, so a symlink or another user's
directory planted in /tmp is refused); the socket is mode 0600; and every connection's
SO_PEERCRED uid must equal ours, or it gets one error line and is closed. There is no
network control port.

Names: ``--name``, else the app path, sanitised to ``[A-Za-z0-9_.-]``. A second cluster
started with the name of a *running* one gets the first free suffix (``web-2``, ``web-3``...)
and logs it: starting must not fail because of a name, and the suffixed name is what ``ls``
and ``status`` show. A socket nobody listens on (a cluster killed by SIGKILL) is stale: it is
removed here on start and by ``asynccluster ls``.

Protocol: newline-delimited JSON, any number of requests per connection, one response per
request, in order: ``{"cmd": "scale", "args": {"count": "+1"}}`` ->
``{"ok": true, "result": {...}}`` or ``{"ok": false, "error": "why", "usage": bool}``.
``reload``, ``scale`` and ``restart`` answer when the operation finished. ``stop`` answers
at once and the connection then stays open until the master exits, so a client can wait
for the end by reading until EOF.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from asynccluster.config import Config
from asynccluster.contracts.control import (
    SLOT,
    SUFFIX,
    ControlError,
    control_dir,
    parse_scale,
    remove_stale,
    sanitise_name,
)
from asynccluster.contracts.results import OperationResult, scale_refusal
from asynccluster.master import describe, logbuffer
from asynccluster.master.diagnose import control_handlers
from asynccluster.master.supervisor import Supervisor
from asynccluster.observe.aggregate import Monitor, acquire_monitor, release_monitor
from asynccluster.observe.streams import ACCEPT_BACKLOG, Connections, connection_cap

log = logging.getLogger("asynccluster.control")

CloseFn = Callable[[], Awaitable[None]]
MAX_REQUEST = 64 * 1024
MAX_SUFFIX = 100
# Open control connections at most (issue 9); at the limit the oldest idle one is closed.
MAX_CONNECTIONS = 16
# A connection waiting for its next request this long is closed (a "stop" client, which
# waits for EOF, is exempt). `asynccluster top` asks every second.
IDLE_TIMEOUT = 60.0
REFUSAL = b'{"ok": false, "error": "too many control connections; try again", "usage": false}\n'


# ---------------------------------------------------------------- where the sockets live
# (naming, the private directory, probe and remove_stale: asynccluster/contracts/control.py)


def bind_control_socket(directory: Path, name: str) -> tuple[socket.socket, str, Path]:
    """Bind ``<name>.sock``, or ``<name>-2.sock``... if a running cluster has that name."""
    base = sanitise_name(name)
    for index in range(1, MAX_SUFFIX + 1):
        candidate = base if index == 1 else f"{base}-{index}"
        path = directory / (candidate + SUFFIX)
        if os.path.lexists(path) and not remove_stale(path):
            continue  # alive, or not ours to judge
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                continue  # another master took it between our check and bind
            raise ControlError(f"cannot create the control socket {path}: {exc.strerror or exc}") from None
        # The directory is 0700 already; 0600 on the socket as well (issue 5).
        os.chmod(path, 0o600)
        sock.listen(16)
        sock.setblocking(False)
        return sock, candidate, path
    raise ControlError(f"more than {MAX_SUFFIX} clusters named {base!r} are running")


# ---------------------------------------------------------------- peer credentials


def peer_uid(sock: Any) -> int | None:
    """The uid of the process at the other end (Linux SO_PEERCRED); None where unsupported."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None or sock is None:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


# ---------------------------------------------------------------- requests


class ControlServer:
    """Answers one connection's requests; knows the supervisor, the monitor and our name.

    The verbs are the supervisor's own methods (reload, scale, scale_by, restart, stop): the
    same ones signals, the dashboard and ``Cluster`` call. Their results (contracts/results.py)
    are sent as ``to_dict()`` plus ``elapsed`` (seconds, this request's wall time).
    """

    def __init__(
        self, supervisor: Supervisor, monitor: Monitor, name: str, connections: Connections | None = None
    ) -> None:
        self.connections = connections or Connections()
        self.supervisor = supervisor
        self.monitor = monitor
        self.name = name
        self._stop_task: asyncio.Task[Any] | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "ping": self.ping,
            "status": self.status,
            "reload": self.reload,
            "scale": self.scale,
            "restart": self.restart,
            "stop": self.stop,
            "logs": self.logs,
            "events": self.events,
            "describe": self.describe,
        }
        self._handlers.update(control_handlers(supervisor, name))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not self._peer_allowed(writer):
                await _send(writer, {"ok": False, "error": "permission denied: this cluster belongs to another user"})
                return
            stopping = False
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), None if stopping else IDLE_TIMEOUT)
                except (ValueError, asyncio.LimitOverrunError):
                    await _send(writer, {"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"})
                    return
                if not line:
                    return
                self.connections.busy(writer)
                answer = await self.answer(line)
                await _send(writer, answer)
                # A "stop" client reads until EOF (the master's exit): never idle, never evicted.
                stopping = stopping or self._stop_task is not None
                self.connections.busy(writer, stopping)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass  # the client went away; an operation it started still completes
        finally:
            writer.close()

    def _peer_allowed(self, writer: asyncio.StreamWriter) -> bool:
        uid = peer_uid(writer.get_extra_info("socket"))
        if uid is None or uid == os.getuid():
            return True
        log.warning("control: refused a connection from uid %d (we are uid %d)", uid, os.getuid())
        return False

    async def answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                raise ControlError('a request is a JSON object like {"cmd": "status"}', usage=True)
            handler = self._handlers.get(request["cmd"])
            if handler is None:
                raise ControlError(
                    f"unknown command {request['cmd']!r}; known: {', '.join(self._handlers)}", usage=True
                )
            args = request.get("args")
            if args is None:
                args = {}
            if not isinstance(args, dict):
                raise ControlError(f"'args' must be a JSON object, like {{\"count\": 2}}; got {args!r:.60}", usage=True)
            return {"ok": True, "result": await handler(args)}
        except ControlError as exc:
            return {"ok": False, "error": str(exc), "usage": exc.usage}
        except json.JSONDecodeError as exc:
            return {"ok": False, "error": f"not JSON: {exc}", "usage": True}
        except (ValueError, RuntimeError, LookupError) as exc:
            # The supervisor's refusals ("a reload is already running", "no slot 7").
            return {"ok": False, "error": str(exc), "usage": False}
        except Exception as exc:
            log.exception("control: request failed: %r", line[:200])
            return {"ok": False, "error": f"internal error: {exc!r}", "usage": False}

    async def ping(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"name": self.name, "pid": os.getpid()}

    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.monitor.view()

    async def reload(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self._timed(self.supervisor.reload())

    async def scale(self, args: dict[str, Any]) -> dict[str, Any]:
        count = args.get("count", "")
        current = self.supervisor.desired
        target = parse_scale(count, current)  # the form: N, +N or -N (a JSON number: N)
        text = count.strip() if isinstance(count, str) else str(count)
        refusal = scale_refusal(target, current=current, limit=self.supervisor.max_workers)
        if refusal is not None:
            # A usage error (exit 2), before anything starts (issue 9); the supervisor applies
            # the same rule again to the count when the verb runs.
            raise ControlError(refusal, usage=True)
        if text[0] not in "+-":
            result = await self._timed(self.supervisor.scale(target))
            return {"previous": current, "target": target, **result}
        # +N / -N: relative to the count when the operation holds the supervisor's lock, not
        # to the count read here, so two concurrent "scale +1" make two workers more.
        delta = int(text)
        result = await self._timed(self.supervisor.scale_by(delta))
        before = int(result["before"])
        return {"previous": before, "target": before + delta, **result}

    async def restart(self, args: dict[str, Any]) -> dict[str, Any]:
        slot = args.get("slot")
        if isinstance(slot, str) and SLOT.fullmatch(slot.strip()):
            slot = int(slot)
        if not isinstance(slot, int) or isinstance(slot, bool):
            raise ControlError(f"restart: expected a slot number, got {slot!r}", usage=True)
        slots = sorted(
            {w.get("slot") for w in self.supervisor.status().get("workers", []) if w.get("slot") is not None}
        )
        if slot not in slots:
            known = ", ".join(str(s) for s in slots) or "none"
            raise ControlError(f"no worker in slot {slot}; the slots are: {known}", usage=True)
        return await self._timed(self.supervisor.restart(slot))

    async def stop(self, args: dict[str, Any]) -> dict[str, Any]:
        force = bool(args.get("force", False))
        if self._stop_task is None:
            # Not awaited here: stopping ends this process, and the client learns of it by EOF.
            self._stop_task = asyncio.get_running_loop().create_task(self.supervisor.stop(force=force))
        return {"message": f"stopping {self.name} (pid {os.getpid()})", "pid": os.getpid(), "force": force}

    async def logs(self, args: dict[str, Any]) -> dict[str, Any]:
        """The log buffer's lines (master/logbuffer.py, issue 11), tagged with our name."""
        buffer = logbuffer.current()
        if buffer is None:  # a supervisor without Cluster.serve() (tests): nothing kept
            return {"cluster": self.name, "items": [], "seq": 0, "lost": False}
        return {"cluster": self.name, **await logbuffer.query(buffer, args)}

    async def events(self, args: dict[str, Any]) -> dict[str, Any]:
        """The supervisor's lifecycle events after ``after`` (a seq): reload/scale progress (issue 11)."""
        ring = getattr(self.supervisor, "events", None)
        if ring is None:
            return {"items": [], "seq": 0}
        after = args.get("after")
        items = ring.since(after) if isinstance(after, int) and not isinstance(after, bool) else []
        return {"items": items, "seq": ring.seq}

    async def describe(self, args: dict[str, Any]) -> dict[str, Any]:
        """One cluster in detail: settings and their origins, paths, restarts (issue 11)."""
        view = self.monitor.view()
        return describe.describe(self.supervisor, view, str(view.get("control_socket", "")))

    async def _timed(self, verb: Awaitable[OperationResult]) -> dict[str, Any]:
        started = time.monotonic()
        result = (await verb).to_dict()
        result["elapsed"] = round(time.monotonic() - started, 3)
        return result


async def _send(writer: asyncio.StreamWriter, response: dict[str, Any]) -> None:
    writer.write(json.dumps(response, default=str).encode() + b"\n")
    await writer.drain()


# ---------------------------------------------------------------- the entry point for the master


async def start_control(supervisor: Supervisor, config: Config) -> CloseFn:
    """Serve the control socket for ``supervisor``; returns the coroutine function that closes it."""
    directory = control_dir(config.control_dir, create=True)
    sock, name, path = bind_control_socket(directory, config.cluster_name)
    identity = os.stat(path).st_ino
    if name != sanitise_name(config.cluster_name):
        log.warning("a cluster named %r is already running; this one is %r", config.cluster_name, name)

    def unlink() -> None:
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == identity:  # don't remove a successor's socket
                path.unlink()

    monitor = acquire_monitor(supervisor)
    monitor.extra.update(
        name=name,
        control_socket=str(path),
        log_file=os.path.abspath(config.log_file) if config.log_file else None,
    )
    connections = Connections(connection_cap(MAX_CONNECTIONS), "control", REFUSAL)
    handler = ControlServer(supervisor, monitor, name, connections)
    try:
        server = await asyncio.start_unix_server(
            connections.track(handler.handle), sock=sock, limit=MAX_REQUEST, backlog=ACCEPT_BACKLOG
        )
    except BaseException:
        sock.close()
        unlink()
        await release_monitor(supervisor)
        raise
    log.info("control socket %s (asynccluster status %s)", path, name)

    async def close() -> None:
        server.close()
        # A "stop" client reads until EOF: this is its EOF, the master is about to exit.
        await connections.close()
        unlink()
        await release_monitor(supervisor)

    return close
