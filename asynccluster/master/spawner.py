"""Start worker processes with multiprocessing's ``spawn`` method and watch them from the loop.

Why spawn: forking the master would copy its running event loop, its signal handlers and
every socket into the worker. A spawned worker is a fresh interpreter that imports the
app itself, so a rolling reload serves changed code (issue 4).

How the worker gets its sockets: the ``WorkerArgs`` (contracts/spawn.py) given to ``Process`` is pickled
while the process starts; ``socket.socket`` pickles through ``multiprocessing.reduction``,
whose ``DupFd`` asks the spawning Popen to pass the descriptor to the child
(``spawnv_passfds``), and the child rebuilds a socket on the same file description. No
resource-sharer thread, no copy of the listening socket's queue: the very same socket.

Each worker gets three descriptors: its slot's listening socket, a channel socketpair end
(contracts/channel.py frames holding contracts/messages.py messages) and a "stacks" socketpair
end that faulthandler writes to, so stack dumps of a blocked worker reach the master's log
under the worker's name.

Everything the master learns comes through its loop: ``add_reader`` on the process
sentinel (exit), on the channel and on the stacks socket. No threads, no polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import socket
from typing import Any

from asynccluster.contracts import messages
from asynccluster.contracts.channel import Channel
from asynccluster.contracts.spawn import WorkerArgs
from asynccluster.master import logbuffer
from asynccluster.master.fdreserve import FdReserve
from asynccluster.master.output import OutputReader, make_output_pairs
from asynccluster.master.preload import Preloader
from asynccluster.master.process import SpawnRequest, WorkerEvents, WorkerHandle

_EXIT_RECHECK = 0.02  # the sentinel closed a hair before waitpid() can see the exit


class MultiprocessingSpawner:
    def __init__(self, loop: asyncio.AbstractEventLoop, preload: Preloader | None = None) -> None:
        self._loop = loop
        self._context = multiprocessing.get_context("spawn")
        self._reserve = FdReserve()
        self.preload = preload  # --preload: workers are forked from its helper (issue 16)

    def spawn(self, request: SpawnRequest, handle: WorkerHandle, events: WorkerEvents) -> SpawnedProcess:
        """Start a worker with the descriptor reserve freed for it (fdreserve.py, issue 9)."""
        with self._reserve.released():
            return self._spawn(request, handle, events)

    def _spawn(self, request: SpawnRequest, handle: WorkerHandle, events: WorkerEvents) -> SpawnedProcess:
        if request.sock is None:
            raise ValueError("a real worker needs its listening socket")
        channel_parent, channel_child = socket.socketpair()
        stacks_parent, stacks_child = socket.socketpair()
        output_parent, output_child = make_output_pairs()
        args = WorkerArgs(
            # Only the master writes the log file (it gets every worker line): one writer, so
            # rotation is safe (issue 11). The workers write to their stdout/stderr sockets.
            config=request.config.replace(log_file=""),
            slot=request.slot,
            incarnation=request.incarnation,
            listen_sock=request.sock,
            channel_sock=channel_child,
            stacks_sock=stacks_child,
            master_pid=os.getpid(),
            heartbeat_interval=request.heartbeat_interval,
            shutdown_budget=request.shutdown_budget,
            max_requests=request.max_requests,
            output_socks=(output_child[0], output_child[1]),
        )
        try:
            process = self._start(args)
        except BaseException:
            # No worker: our ends would leak a descriptor pair per failed start (EMFILE loop).
            channel_parent.close()
            stacks_parent.close()
            for sock in output_parent:
                sock.close()
            raise
        finally:
            # The child has its own copies now; ours would keep the channel open after it dies.
            channel_child.close()
            stacks_child.close()
            for sock in output_child:
                sock.close()
        worker = SpawnedProcess(self._loop, process, channel_parent, stacks_parent, handle, events)
        worker.output = OutputReader(self._loop, output_parent, request.slot, worker.pid, logbuffer.install().feed)
        return worker

    def _start(self, args: WorkerArgs[Any]) -> Any:
        """A spawned interpreter, or with --preload a fork of the helper (master/preload.py)."""
        if self.preload is not None and self.preload.available():
            return self.preload.fork(args)
        from asynccluster.worker.main import worker_entry  # light module: no HTTP code at import

        process = self._context.Process(
            target=worker_entry, args=(args,), name=f"asynccluster-worker-{args.slot}", daemon=False
        )
        process.start()
        return process


class SpawnedProcess:
    """A worker process as the master's loop sees it: the ``WorkerProcess`` of process.py that
    :class:`MultiprocessingSpawner` returns. ``process`` is a multiprocessing Process (spawn
    mode) or, with --preload, preload.py's ``ForkedProcess`` (forked by the helper): both give
    ``pid``, ``sentinel``, ``exitcode`` and ``close()``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        process: Any,  # multiprocessing.context.SpawnProcess, or preload.ForkedProcess
        channel_sock: socket.socket,
        stacks_sock: socket.socket,
        handle: WorkerHandle,
        events: WorkerEvents,
    ) -> None:
        self.pid: int = process.pid
        self._loop = loop
        self._process = process
        self._handle = handle
        self._events = events
        self._exited = False
        self._stacks_sock = stacks_sock
        self._stacks_fd = stacks_sock.fileno()
        self._stacks_buffer = b""
        self._channel = Channel(loop, channel_sock, self._on_message, self._on_disconnect, accept=messages.FROM_WORKER)
        self.output: OutputReader | None = None  # its stdout/stderr (set by the spawner)
        stacks_sock.setblocking(False)
        loop.add_reader(self._stacks_fd, self._read_stacks)
        loop.add_reader(process.sentinel, self._on_sentinel)

    def send(self, message: messages.MasterMessage) -> bool:
        return self._channel.send(message)

    def signal(self, signum: int) -> None:
        # Only while not reaped: after waitpid() the pid may belong to someone else.
        if not self._exited:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def close(self) -> None:
        self._channel.close()
        self._close_stacks()

    def _on_message(self, message: messages.WorkerMessage) -> None:
        self._events.on_message(self._handle, message)

    def _on_disconnect(self) -> None:
        self._events.on_disconnect(self._handle)

    def _on_sentinel(self) -> None:
        exitcode = self._process.exitcode  # waitpid(WNOHANG): reaps, so no zombie
        if exitcode is None:
            self._loop.remove_reader(self._process.sentinel)
            self._loop.call_later(_EXIT_RECHECK, self._on_sentinel)
            return
        self._loop.remove_reader(self._process.sentinel)
        self._exited = True
        # What the worker said just before exiting (its reason, its stacks) is still in the
        # sockets: read it first so the exit is logged with it.
        self._drain_channel()
        self._read_stacks(final=True)
        if self.output is not None:
            self.output.drain()  # its traceback, its last print()
        self._process.close()
        self.close()
        self._events.on_exit(self._handle, exitcode)

    def _drain_channel(self) -> None:
        self._channel.drain()

    def _read_stacks(self, final: bool = False) -> None:
        while self._stacks_sock.fileno() >= 0:
            try:
                data = self._stacks_sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                final = True
                self._close_stacks()
                break
            self._stacks_buffer += data
        text, newline, rest = self._stacks_buffer.rpartition(b"\n")
        if final:
            text, rest = self._stacks_buffer, b""
        elif not newline:
            return
        self._stacks_buffer = rest
        if text.strip():
            self._events.on_stacks(self._handle, text.decode("utf-8", "replace"))

    def _close_stacks(self) -> None:
        if self._stacks_sock.fileno() >= 0:
            self._loop.remove_reader(self._stacks_fd)
            self._stacks_sock.close()
