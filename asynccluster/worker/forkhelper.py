"""The --preload helper process: imports the app once, then forks workers on request (issue 16).

The master starts this process with multiprocessing's *spawn* method (a fresh interpreter,
never a fork of the master's running loop) and talks to it over one ``SOCK_SEQPACKET``
socketpair (master/preload.py is the other end). In order:

1. signals: INT, HUP, TERM, TTIN, TTOU, USR1 are ignored (a group-wide SIGTERM from
   systemd must reach the workers, which drain, not kill their parent); the helper dies with
   the master (``PR_SET_PDEATHSIG`` SIGKILL); its workers see the master's death by their
   channel's EOF, not by their parent's (the helper's death is not the master's);
2. the app module (``module`` of ``module:attribute``, with --app-dir on sys.path) and the
   worker's own modules are imported; ``("ready", seconds)`` or ``("failed", message)`` goes
   to the master, the message in the importer's words (issue 3);
3. ``gc.freeze()``: the imported objects leave the collector's generations, so a worker's
   collections do not write to (and un-share) the pages they live on;
4. a selector loop: ``("fork", token, payload)`` with the worker's descriptors (SCM_RIGHTS)
   forks a worker and answers ``("forked", token, pid)``; SIGCHLD (through the wakeup fd)
   reaps workers and reports ``("exit", pid, exitcode)`` (negative: killed by that signal,
   as multiprocessing reports it); ``("retire",)`` or the master's EOF: fork no more, exit
   when the last worker has been reaped.

The forked child unpickles its ``WorkerArgs`` itself (the helper's memory stays as imported)
with each socket rebuilt on its descriptor, and runs the same ``worker_entry`` as a spawned
worker, ``forked=True``: its ``master_pid`` is the master's, whose death it watches (channel
EOF), not this helper's; the helper's death costs only new forks, its workers are re-parented
to the master (a child subreaper, master/preload.py) and keep serving.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import logging
import os
import pickle
import selectors
import signal
import socket
import sys
import time
import traceback
from typing import Any

from asynccluster.importer import AppImportError, import_from_string
from asynccluster.worker.main import worker_entry

MAX_MESSAGE = 1 << 20  # bytes: a pickled WorkerArgs is a few KB (its Config)
MAX_FDS = 16  # a worker gets 5 descriptors
PR_SET_PDEATHSIG = 1
_IGNORED = ("SIGINT", "SIGHUP", "SIGTERM", "SIGTTIN", "SIGTTOU", "SIGUSR1", "SIGUSR2")

Message = tuple[Any, ...]


def helper_entry(control: socket.socket, config: Any, master_pid: int) -> None:
    """The multiprocessing target (``config`` is the cluster's Config): leaves when retired.

    Always through os._exit after flushing: a non-daemon thread the app started at import
    would otherwise keep the helper alive after its loop ended, and the master in
    multiprocessing's atexit join of it (attack finding, issue 16)."""
    set_up_helper(master_pid)
    started = time.monotonic()
    error = preload(config)
    if error:
        send(control, ("failed", error))
        _flush_and_exit(0)
    gc.freeze()
    send(control, ("ready", round(time.monotonic() - started, 4)))
    ForkLoop(control).run()
    _flush_and_exit(0)


def set_up_helper(master_pid: int) -> None:
    for name in _IGNORED:
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != master_pid:  # the master died before the prctl
        raise SystemExit(0)


def preload(config: Any) -> str:
    """Import what every worker imports; "" on success, else the message for the user."""
    app_dir = config.app_dir
    if app_dir and app_dir not in sys.path:
        sys.path.insert(0, app_dir)  # as load_app does in the worker
    try:
        # The attribute is looked up (a typo fails the reload here) but not called: a factory
        # builds per-process state, so each worker calls it (load_app, worker/main.py).
        import_from_string(config.app)
    except AppImportError as exc:
        return str(exc)
    try:
        _import_worker_modules(config.loop)
    except Exception:  # only a head start: each worker imports (and reports) them itself
        pass
    return ""


def _import_worker_modules(loop: str) -> None:
    """What a worker imports after the app (worker/main.py serve()): once here, not per fork."""
    # By module name: no edge to the packages' __init__ in anyone's import graph.
    import asynccluster.contracts.spawn  # WorkerArgs' class, for the child's unpickling
    import asynccluster.logs
    import asynccluster.metrics
    import asynccluster.observe.stats
    import asynccluster.worker.diagnose
    import asynccluster.worker.lifespan
    import asynccluster.worker.server
    import asynccluster.worker.tls  # noqa: F401

    if loop in ("uvloop", "auto"):
        with contextlib.suppress(ImportError):
            import uvloop  # noqa: F401


def send(control: socket.socket, message: Message, fds: list[int] | None = None) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    with contextlib.suppress(OSError):  # the master is gone: nobody to tell
        if fds:
            socket.send_fds(control, [data], fds)
        else:
            control.send(data)


class SocketUnpickler(pickle.Unpickler):
    """Rebuilds each socket the master's pickler replaced by ``("fd", index)`` (master/forked.py)."""

    def __init__(self, file: io.BytesIO, fds: list[int]) -> None:
        super().__init__(file)
        self.fds = fds
        self.sockets: dict[int, socket.socket] = {}  # one socket per descriptor, however often named

    def persistent_load(self, pid: Any) -> socket.socket:
        kind, index = pid
        if kind != "fd":
            raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")
        if index not in self.sockets:
            self.sockets[index] = socket.socket(fileno=self.fds[index])
        return self.sockets[index]


class ForkLoop:
    """The helper after the import: forks and reaps, one message at a time."""

    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.children: set[int] = set()
        self.retiring = False
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    def run(self) -> None:
        signal.signal(signal.SIGCHLD, _no_op)
        signal.set_wakeup_fd(self.wake_w)
        self.selector.register(self.control, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        while not (self.retiring and not self.children):
            for key, _ in self.selector.select():
                if key.fileobj == self.wake_r:
                    self.reap()
                else:
                    self.on_control()
        self.control.close()

    def on_control(self) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.control, MAX_MESSAGE, MAX_FDS)
        except OSError:
            data, fds = b"", []
        message: Message = pickle.loads(data) if data else ("retire",)  # EOF: the master is gone
        if message[0] == "fork":
            self.fork(message[1], message[2], fds)
            return
        for fd in fds:
            os.close(fd)
        if message[0] == "retire":  # fork no more; report the workers' exits until the last
            self.retiring = True
            self.selector.unregister(self.control)

    def fork(self, token: int, payload: bytes, fds: list[int]) -> None:
        try:
            pid = os.fork()
        except OSError as exc:
            send(self.control, ("fork-failed", token, f"fork() failed: {exc}"))
            pid = -1
        if pid == 0:
            self.in_child(payload, fds)  # never returns
        for fd in fds:  # the child has its copies
            os.close(fd)
        if pid > 0:
            self.children.add(pid)
            send(self.control, ("forked", token, pid))

    def in_child(self, payload: bytes, fds: list[int]) -> None:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self.selector.close()
            self.control.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            args = SocketUnpickler(io.BytesIO(payload), fds).load()
            worker_entry(args, forked=True)  # exits through SystemExit
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            _flush_and_exit(code)

    def reap(self) -> None:
        with contextlib.suppress(OSError):
            os.read(self.wake_r, 4096)
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            send(self.control, ("exit", pid, os.waitstatus_to_exitcode(status)))


def _no_op(signum: int, frame: Any) -> None:
    """SIGCHLD must have a handler for the wakeup fd to see it (SIG_DFL discards it)."""


def _flush_and_exit(code: int) -> None:
    """A forked worker leaves with os._exit: the helper's atexit handlers are not its own."""
    with contextlib.suppress(Exception):
        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.flush()
    os._exit(code)
