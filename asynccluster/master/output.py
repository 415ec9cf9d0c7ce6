"""A worker's stdout and stderr, read by the master (issue 11 item 1: logs are always there).

The spawner makes two socketpairs per worker (:func:`make_output_pairs`); the worker's ends
become its file descriptors 1 and 2 (worker/main.py ``capture_output``), so everything it
writes there — its log records, its access log, an app's ``print()``, a traceback printed
by the interpreter — reaches the master, which reads it from its loop (:class:`OutputReader`,
``add_reader``: no threads) and gives it to the log buffer (master/logbuffer.py), which keeps
it and passes it on to the master's own stdout/stderr and log file.

Why socketpairs and not pipes: a socket pickles into the spawned child (multiprocessing's
DupFd), like the channel and the stacks socket already do.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

READ_SIZE = 65536
# Reads per wake-up, per stream: a worker printing in a loop cannot hold the master's loop.
MAX_READS = 8
Feed = Callable[[int, int, str, bytes], None]  # (slot, pid, "out"|"err", data; b"" at the end)


def make_output_pairs() -> tuple[list[socket.socket], list[socket.socket]]:
    """([master's out, master's err], [worker's out, worker's err])."""
    out_parent, out_child = socket.socketpair()
    try:
        err_parent, err_child = socket.socketpair()
    except OSError:
        out_parent.close()
        out_child.close()
        raise
    # A worker printing faster than the master reads waits on a full buffer, as it would on
    # a terminal; the master's side is read without blocking.
    for sock in (out_parent, err_parent):
        sock.shutdown(socket.SHUT_WR)
        sock.setblocking(False)
    for sock in (out_child, err_child):
        sock.shutdown(socket.SHUT_RD)
    return [out_parent, err_parent], [out_child, err_child]


class OutputReader:
    """Reads one worker's two output sockets from the loop until they close."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, socks: list[socket.socket], slot: int, pid: int, feed: Feed
    ) -> None:
        self._loop = loop
        self._slot = slot
        self._pid = pid
        self._feed = feed
        self._open: dict[str, socket.socket] = dict(zip(("out", "err"), socks, strict=True))
        for stream, sock in self._open.items():
            loop.add_reader(sock.fileno(), self._read, stream)

    def _read(self, stream: str) -> None:
        sock = self._open.get(stream)
        if sock is None:
            return
        for _ in range(MAX_READS):
            try:
                data = sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            self._deliver(stream, data)
            if not data:
                self._close(stream)
                return

    def _deliver(self, stream: str, data: bytes) -> None:
        try:
            self._feed(self._slot, self._pid, stream, data)
        except Exception:  # keeping lines must never break the master's loop
            pass

    def drain(self) -> None:
        """Read what is left (the worker exited) and close: its last words are kept."""
        for stream in list(self._open):
            sock = self._open[stream]
            while True:
                try:
                    data = sock.recv(READ_SIZE)
                except (BlockingIOError, InterruptedError, OSError):
                    data = b""
                self._deliver(stream, data)
                if not data:
                    break
            self._close(stream)

    def _close(self, stream: str) -> None:
        sock = self._open.pop(stream, None)
        if sock is not None:
            self._loop.remove_reader(sock.fileno())
            sock.close()


__all__ = ["OutputReader", "make_output_pairs"]
