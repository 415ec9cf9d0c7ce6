"""--preload (issue 16 item 3): import the app once in a helper process, fork the workers from it.

Without --preload each worker is a spawned interpreter that imports the app itself (~0.4 s
for a FastAPI app before it is ready, and its own copy of every module). With it, a helper
process (worker/forkhelper.py) imports the app module once and forks each worker: a respawn
costs a fork plus lifespan startup, and the imported code is shared copy-on-write.

Why our own helper and not ``multiprocessing.get_context("forkserver")`` with
``set_forkserver_preload``: checked on 3.10.13, 3.11.7, 3.12.1 and 3.13.0 (the module is the
same in all four, plus an atexit change in 3.13):

- it is one server per process (``forkserver._forkserver``); a reload needs two at once (the
  new code's for the candidates, the old one's until its workers have drained and for the
  rollback), and ``popen_forkserver`` only talks to the module-level one;
- ``_stop()`` exists in all four but is private and blocks in ``waitpid`` until the server
  exits, and the server exits only when every worker forked from it has (each one holds the
  "alive" pipe): a reload would freeze the master's loop for the whole drain;
- its preload is ``__import__(name)`` with ImportError swallowed and anything else killing
  the server with a traceback on stderr: no message for a reload to report, no way to tell
  "the new code does not import" from "the server died", and --app-dir is not on its path;
- the server ignores only SIGINT, so a group-wide SIGTERM (systemd) kills it, and its workers
  take their parent's death for the master's.

The helper we own is ~200 lines: a spawned process (clean: never a fork of this loop) that
reports the import's outcome in the importer's words, forks on request and reports each
exit. One :class:`ForkHelper` per generation of code; :class:`Preloader` keeps the current
one, the one a reload is staging, and retired ones until their last worker exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import pickle
import select
import signal
import socket
import time
from typing import Any

from asynccluster.config import Config
from asynccluster.contracts.spawn import WorkerArgs
from asynccluster.exitcodes import APP_IMPORT, OK
from asynccluster.master.forked import EXIT_UNKNOWN, ForkedProcess, pickle_with_fds, set_child_subreaper
from asynccluster.master.process import describe_exit

logger = logging.getLogger("asynccluster.master")

# Seconds the helper gets to answer a fork request (it answers in ~1 ms; a fork of a
# 1 GB app copies its page tables: ~20 ms). The master's loop is blocked meanwhile, so short:
# a helper that does not answer in time is hung (SIGSTOP, a deadlock) and is replaced.
FORK_TIMEOUT = 2.0
REAP_RECHECK = 0.02  # seconds: the helper closed its socket a hair before waitpid can see it
MAX_MESSAGE = 1 << 16  # bytes of one message from the helper (small tuples)
RETRY_FIRST = 1.0  # seconds before the first re-preload after a failed one
RETRY_CAP = 60.0  # seconds: the longest wait between re-preloads while the code on disk is broken
STILL_FAILING_EVERY = 60.0  # seconds between "still failing" lines of one failure streak
HELPER_EXIT_TIMEOUT = 2.0  # seconds retired helpers get to exit at stop before SIGKILL


def retry_delay(failures: int) -> float:
    """Seconds before the next re-preload after ``failures`` (>= 1) failed ones in a row:
    1, 2, 4 ... capped at 60 (each try re-imports the app: a CPU-second for FastAPI)."""
    return min(RETRY_CAP, RETRY_FIRST * 2 ** min(max(failures - 1, 0), 16))


class PreloadError(RuntimeError):
    """The helper cannot fork a worker now (not running, not answering)."""


class ForkHelper:
    """One helper process: one generation of imported code."""

    def __init__(self, loop: asyncio.AbstractEventLoop, config: Config, generation: int) -> None:
        self.loop = loop
        self.config = config
        self.generation = generation
        self.ready: asyncio.Future[str] = loop.create_future()  # "" or why it cannot serve
        self.alive = False
        self.retired = False
        self.on_gone: Any = None  # called with this helper once its process has exited
        self.processes: dict[int, ForkedProcess] = {}
        self._replies: dict[int, ForkedProcess | str] = {}  # token -> the new worker, or why not
        self._token = 0
        self._control: socket.socket | None = None
        self._process: Any = None  # multiprocessing.context.SpawnProcess
        self.pid = 0

    def start(self) -> None:
        from asynccluster.worker.forkhelper import helper_entry  # imports the worker: not in the master

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        context = multiprocessing.get_context("spawn")
        self._process = context.Process(
            target=helper_entry,
            args=(theirs, self.config.replace(log_file=""), os.getpid()),
            name=f"asynccluster-preload-{self.generation}",
            daemon=False,
        )
        try:
            self._process.start()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.pid = self._process.pid
        self.alive = True
        self._control = ours
        ours.setblocking(False)
        self.loop.add_reader(ours.fileno(), self._on_readable)

    # -- forking

    def fork(self, args: WorkerArgs[Any]) -> ForkedProcess:
        """Ask for a worker; blocks the loop until the helper answers (a fork: ~1 ms)."""
        if not self.alive or self._control is None or not self.ready.done() or self.ready.result():
            raise PreloadError("the preload helper is not running")
        self._token += 1
        token = self._token
        # master_pid stays ours: the worker watches the master, not its parent the helper,
        # whose death costs only new forks (worker/forkhelper.py, attack finding issue 16).
        payload, fds = pickle_with_fds(args)
        data = pickle.dumps(("fork", token, payload), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            socket.send_fds(self._control, [data], fds)
        except OSError as exc:
            raise PreloadError(f"the preload helper is not reachable: {exc}") from exc
        reply = self._wait_reply(token)
        if isinstance(reply, str):
            raise PreloadError(reply)
        return reply

    def _wait_reply(self, token: int) -> ForkedProcess | str:
        deadline = time.monotonic() + FORK_TIMEOUT
        while token not in self._replies:
            remaining = deadline - time.monotonic()
            if not self.alive or self._control is None:
                raise PreloadError("the preload helper exited before answering the fork request")
            if remaining <= 0:
                logger.error("the preload helper (pid %d) did not answer a fork request in %g s: killed (its "
                             "workers keep serving)", self.pid, FORK_TIMEOUT)  # fmt: skip
                self.kill()  # hung: its EOF and reap follow (Preloader._on_gone)
                self.alive = False  # forks go to a new helper (Preloader.available) from now on
                raise PreloadError(f"the preload helper did not answer the fork request in {FORK_TIMEOUT:g} s")
            poller = select.poll()  # not select(): the master may hold descriptors above 1023
            poller.register(self._control.fileno(), select.POLLIN)
            poller.poll(remaining * 1000)
            self._on_readable()
        return self._replies.pop(token)

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds (blocking) for the process to exit and reap it, so
        multiprocessing's atexit join has nothing left to wait for; True once it is gone."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with contextlib.suppress(ValueError):  # ValueError: already closed by _reap
            while self._process is not None and self._process.exitcode is None:  # waitpid(WNOHANG)
                if time.monotonic() >= deadline:
                    return False
                time.sleep(REAP_RECHECK)  # not join(): its sentinel waits for our workers too (_reap)
        return True

    def force_kill(self) -> None:
        """SIGKILL whatever state it is in (a stopped process dies too), by pid, while unreaped."""
        with contextlib.suppress(ValueError, ProcessLookupError):
            if self._process is not None and self._process.exitcode is None:
                os.kill(self.pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL (an import that hangs): its exit is reaped like any other."""
        if self.alive and self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def retire(self) -> None:
        """Fork no more; the helper exits once its last worker has (so those keep their parent)."""
        self.retired = True
        if self._control is not None and self.alive:
            with contextlib.suppress(OSError):
                self._control.send(pickle.dumps(("retire",)))

    # -- what the helper says

    def _on_readable(self) -> None:
        while self._control is not None:
            try:
                data = self._control.recv(MAX_MESSAGE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._on_eof()
                return
            self._dispatch(pickle.loads(data))

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "exit":
            process = self.processes.pop(int(message[1]), None)
            if process is not None:
                process.exited(int(message[2]))
        elif kind == "forked":
            # Registered now: its exit may be the very next message, before fork() returns.
            process = self.processes[int(message[2])] = ForkedProcess(int(message[2]))
            self._replies[int(message[1])] = process
        elif kind == "fork-failed":
            self._replies[int(message[1])] = str(message[2])
        elif kind == "ready" and not self.ready.done():
            logger.info("preloaded %s in %.2f s (helper pid %d)", self.config.app, message[1], self.pid)
            self.ready.set_result("")
        elif kind == "failed" and not self.ready.done():
            self.ready.set_result(str(message[1]))

    def _on_eof(self) -> None:
        """The helper exits (retired and done, failed, or killed): reap it."""
        assert self._control is not None
        self.loop.remove_reader(self._control.fileno())
        self._control.close()
        self._control = None
        self.alive = False
        for process in self.processes.values():
            if not process.watched:  # a pidfd sees its real exit (it is ours now: subreaper)
                process.exited(EXIT_UNKNOWN)
        self.processes.clear()
        self._reap()

    def _reap(self) -> None:
        """Polled, not multiprocessing's sentinel: the helper's forked workers inherited that
        pipe's write end, so it reads EOF only when the last of them exited too, and a killed
        helper with live workers would stay "alive" until then. The EOF of our socket means
        it is exiting now (it closes the socket last), so the poll is short."""
        exitcode = self._process.exitcode  # waitpid(WNOHANG)
        if exitcode is None:
            self.loop.call_later(REAP_RECHECK, self._reap)
            return
        self._process.close()
        if not self.ready.done():
            self.ready.set_result(
                f"the preload helper (pid {self.pid}) exited with {describe_exit(exitcode)} while importing"
            )
        if self.on_gone is not None:
            self.on_gone(self, exitcode)


class Preloader:
    """The helpers' lifecycle: the current generation, a staged one during a reload, and
    retired ones until their workers have drained (DESIGN.md §4's reload, with code imported
    once per generation)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, config: Config) -> None:
        self.loop = loop
        self.config = config
        self.current: ForkHelper | None = None
        self.staged: ForkHelper | None = None
        self.helpers: set[ForkHelper] = set()  # every helper process not yet reaped
        self._generation = 0
        self._restarting: asyncio.Task[str] | None = None
        self.closed = False
        self.streak = FailureStreak()  # failed re-preloads in a row (the code on disk is broken)
        # Now, before the cluster starts its reaper (master/reaper.py): a subreaper reaps orphans.
        set_child_subreaper()  # a helper's orphaned workers become ours (ForkedProcess)

    async def start(self) -> int:
        """The first helper (startup): OK (0) once it imported the app; else the error is
        logged once for the cluster, as a worker's failed import is, and APP_IMPORT returned."""
        helper = await self._new_helper()
        if helper is not None:
            self.current = helper
            return OK
        logger.error("error: %s", self._last_error.rstrip())
        return APP_IMPORT

    async def stage(self) -> str:
        """A reload: a helper with the code on disk now. "" when it imported it (new workers
        are then forked from it); else why not, and nothing changed."""
        helper = await self._new_helper()
        if helper is None:
            return f"the new code could not be preloaded: {self._last_error}"
        self.staged = helper
        return ""

    def commit(self) -> None:
        """The reload succeeded: the staged helper is the current one; the old one retires."""
        if self.staged is None:
            return
        if self.current is not None:
            self.current.retire()
        self.current, self.staged = self.staged, None
        self._succeeded()

    def rollback(self) -> None:
        """The reload failed: its helper retires (its candidates drain); the old one stays."""
        if self.staged is not None:
            self.staged.retire()
            self.staged = None

    def available(self) -> bool:
        """Can a helper fork now? If not (it died: OOM killer, kill -9), a new one is started and
        the spawner spawns workers the slow way meanwhile: a slot is never left empty waiting."""
        helper = self.staged or self.current
        if helper is not None and helper.alive:
            return True
        self._restart()
        return False

    def fork(self, args: WorkerArgs[Any]) -> ForkedProcess:
        """A worker from the staged helper (a reload's candidates) or else the current one."""
        helper = self.staged or self.current
        if helper is None or not helper.alive:
            self._restart()
            raise PreloadError("the preload helper is not running (starting a new one)")
        return helper.fork(args)

    def info(self) -> dict[str, Any]:
        """For status and describe: ``helper_pid`` (0 while none can fork), ``generation`` (1 at
        start, +1 per helper started), ``failures`` (failed re-preloads in a row) and
        ``retry_in`` (seconds to the next try, None when none is waiting)."""
        helper = self.staged or self.current
        timer = self.streak.timer
        return {
            "helper_pid": helper.pid if helper is not None and helper.alive else 0,
            "generation": helper.generation if helper is not None else 0,
            "failures": self.streak.failures,
            "retry_in": round(max(0.0, timer.when() - self.loop.time()), 1) if timer is not None else None,
        }

    def pids(self) -> set[int]:
        """The helper processes (the PID 1 reaper must leave them to us)."""
        return {helper.pid for helper in self.helpers if helper.pid}

    def close(self) -> None:
        """The cluster stopped: every helper retires (they have no workers left, so they exit).

        Then waits (blocking, the loop is done) up to HELPER_EXIT_TIMEOUT seconds for them
        and SIGKILLs the rest: a hung (SIGSTOPped) helper or one stuck in its import (a stop
        during a reload) must not hold the master in multiprocessing's atexit join for ever
        (attack finding, issue 16)."""
        self.closed = True
        for helper in list(self.helpers):
            helper.retire()
        if self._restarting is not None:
            self._restarting.cancel()
        self.streak.cancel()
        deadline = time.monotonic() + HELPER_EXIT_TIMEOUT
        for helper in list(self.helpers):
            if not helper.join(deadline - time.monotonic()):
                logger.warning("the preload helper (pid %d) did not exit; killed", helper.pid)
                helper.force_kill()
                helper.join(HELPER_EXIT_TIMEOUT)

    # -- helpers

    _last_error = ""

    async def _new_helper(self) -> ForkHelper | None:
        self._generation += 1
        helper = ForkHelper(self.loop, self.config, self._generation)
        helper.on_gone = self._on_gone
        try:
            helper.start()
        except (OSError, ValueError) as exc:
            self._last_error = f"could not start the preload helper: {exc}"
            return None
        self.helpers.add(helper)
        try:
            error = await asyncio.wait_for(asyncio.shield(helper.ready), self.config.ready_timeout)
        except asyncio.TimeoutError:  # an import that hangs (a network call at import time)
            helper.kill()
            error = (
                f"the app's import in the preload helper took more than --ready-timeout {self.config.ready_timeout:g} s"
            )
        if error:
            self._last_error = error
            helper.retire()
            return None
        return helper

    def _on_gone(self, helper: ForkHelper, exitcode: int) -> None:
        self.helpers.discard(helper)
        if helper.retired or self.closed or helper.ready.result():  # failed imports are reported by start/stage
            return
        logger.error("the preload helper (pid %d) exited with %s; its workers keep serving, new ones are spawned "
                     "(each imports the app from disk) until a new helper has imported it",
                     helper.pid, describe_exit(exitcode))  # fmt: skip
        if helper is self.staged:
            self.staged = None
        if helper is self.current:
            self.current = None
            self._restart()

    def _restart(self) -> None:
        """A new current helper in the background; forks fail (and are retried by the
        supervisor's respawn backoff) until it is ready. After a failed re-preload the next
        try waits for the streak's timer: asking spawns must not re-import a broken app."""
        if self._restarting is not None or self.closed or self.streak.timer is not None:
            return
        self._restarting = self.loop.create_task(self._replace_current())

    async def _replace_current(self) -> str:
        try:
            helper = await self._new_helper()
            if helper is None:
                self._failed_again()
                return self._last_error
            if self.current is None or not self.current.alive:  # (not yet reaped: the same)
                self.current = helper
                logger.info("workers are forked from the new preload helper (pid %d)", helper.pid)
            else:
                helper.retire()
            self._succeeded()
            return ""
        finally:
            self._restarting = None

    def _failed_again(self) -> None:
        """One more failed re-preload: back off (retry_delay) and say so without a flood: the
        error once per streak (again if it changes), then at most one line a minute."""
        streak, now = self.streak, self.loop.time()
        streak.failures += 1
        delay = retry_delay(streak.failures)
        streak.timer = self.loop.call_later(delay, self._retry)
        if streak.failures == 1 or self._last_error != streak.error:
            streak.error, streak.logged_at = self._last_error, now
            if streak.failures == 1:
                streak.since = now
            logger.error("error: could not preload the app again (workers are spawned from disk meanwhile; "
                         "next try in %.0f s): %s", delay, self._last_error.rstrip())  # fmt: skip
        elif now - streak.logged_at >= STILL_FAILING_EVERY:
            streak.logged_at = now
            logger.warning("the app still cannot be preloaded (%d tries in %.0f s, same error); next try in %.0f s",
                           streak.failures, now - streak.since, delay)  # fmt: skip

    def _retry(self) -> None:
        self.streak.timer = None
        if not self.closed and (self.current is None or not self.current.alive):
            self._restart()

    def _succeeded(self) -> None:
        """A helper imported the app (a re-preload or a reload): the streak is over."""
        if self.streak.failures:
            logger.info("the app is preloaded again after %d failed tries", self.streak.failures)
        self.streak.cancel()
        self.streak = FailureStreak()


@dataclasses.dataclass
class FailureStreak:
    """Failed re-preloads in a row: ``failures``, the last ``error`` logged, when the streak
    began and was last logged (loop.time() seconds), and the timer of the next try."""

    failures: int = 0
    error: str = ""
    since: float = 0.0
    logged_at: float = 0.0
    timer: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def preloaded(preload: Preloader | None) -> set[int]:
    """The helpers' pids (for the PID 1 reaper, which must leave them to us)."""
    return preload.pids() if preload is not None else set()
