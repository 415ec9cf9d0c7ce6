"""Descriptors held back for spawning workers (issue 9: "the master reserves what it needs").

A local user holding connections to the master (admin port, control socket) used to take
the last descriptors, and the master could no longer respawn ("Too many open files"). The
connection caps (observe/streams.py) bound that; this reserve makes the spawn itself safe:
the master keeps ``SPAWN_FDS`` descriptors open on /dev/null and closes them just before
it starts a worker (socketpairs, the spawn pipes, the sentinel), then takes them back.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

logger = logging.getLogger("asynccluster.master")

# A spawn needs two socketpairs, multiprocessing's two pipes, the sentinel and the child's
# copies until exec: about ten. With margin.
SPAWN_FDS = 16


class FdReserve:
    def __init__(self, size: int = SPAWN_FDS) -> None:
        self.size = size
        self._fds: list[int] = []
        self._short_logged = False
        self.refill()

    @property
    def held(self) -> int:
        return len(self._fds)

    def refill(self) -> None:
        """Take descriptors back up to ``size``; short (and said once) if the process is out."""
        while len(self._fds) < self.size:
            try:
                self._fds.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            except OSError as exc:
                if not self._short_logged:
                    logger.warning("descriptor reserve for spawning holds %d of %d: %s",
                                   len(self._fds), self.size, exc.strerror)  # fmt: skip
                    self._short_logged = True
                return

    def release(self) -> None:
        while self._fds:
            with contextlib.suppress(OSError):
                os.close(self._fds.pop())

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """Free the reserve for what runs inside (a spawn), then take it back."""
        self.release()
        try:
            yield
        finally:
            self.refill()
