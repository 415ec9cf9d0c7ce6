"""The worker process's entry: loop, app, channel, heartbeat, graceful drain, exit code.

Started by the master with multiprocessing's spawn method (master/spawner.py), with its
slot's listening socket, a channel to the master and a socket for stack dumps. In order:

1. signals: INT and HUP are ignored (the master handles Ctrl-C and reloads for the whole
   group), TERM means "drain and exit"; faulthandler dumps every thread's stack on SIGUSR2
   into the stacks socket (the master logs them under this worker's name; this works while
   the loop is blocked, because the dump is written from the C signal handler), and on a
   fatal error (segfault) too;
2. the parent-death signal (Linux), so a SIGKILLed master leaves no orphan;
3. ``ASYNCCLUSTER_WORKER_ID`` / ``ASYNCCLUSTER_WORKER_INCARNATION`` before the app is
   imported, so ``asynccluster.worker_id()`` works at import time;
4. the event loop (uvloop per --loop), the app import, lifespan startup, serving, ``ready``;
5. a heartbeat every ``heartbeat_interval`` (from the master's start arguments) *from this
   loop* (so a blocked loop stops it), until ``stop`` (or SIGTERM, or the master's death)
   makes it drain (up to the stop's timeout, --graceful-timeout), then run lifespan
   shutdown (its own budget, ``shutdown_budget`` from the master, which SIGKILLs only after
   both budgets and a grace: master/policy.py Timing) and exit 0. SIGTERM and the master's
   death also arm a hard deadline (faulthandler's watchdog thread), so even a worker whose
   loop is stuck exits soon after an orphaning SIGKILL.

This module is imported by the master (it names the process target), so it imports no
HTTP code at module level.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import faulthandler
import io
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

# A plain import, not a find_spec() probe (issue 10: no imports by name of our own modules):
# metrics.py imports only the stdlib and costs ~3 ms once per worker; it is the very module
# an app imports to declare its metrics, so the heartbeat reads the same registry.
from asynccluster import exitcodes, metrics
from asynccluster.contracts.channel import Channel, send_blocking
from asynccluster.contracts.messages import (
    FROM_MASTER,
    Diagnose,
    DumpTasks,
    Heartbeat,
    MasterMessage,
    Online,
    Phase,
    Ready,
    Recycle,
    ReopenLogs,
    Stop,
    Stopping,
    WorkerMessage,
)
from asynccluster.contracts.spawn import WORKER_ID_ENV, WORKER_INCARNATION_ENV, WorkerArgs
from asynccluster.worker.resources import cpu_seconds, rss_bytes

if TYPE_CHECKING:
    from asynccluster.config import Config
    from asynccluster.observe.stats import WorkerStats
    from asynccluster.worker.diagnose import Diagnostics

logger = logging.getLogger("asynccluster.worker")

ORPHAN_DRAIN_TIMEOUT = 1.0  # the master is gone: nobody waits for us, finish quickly
MEMORY_CHECK_INTERVAL = 0.1  # seconds between two RSS reads with --max-memory (one /proc read)
ORPHAN_EXIT_MARGIN = 0.5  # then lifespan shutdown; past that, exit hard (issue 3: no orphans)
PR_SET_PDEATHSIG = 1


def worker_entry(args: WorkerArgs[Config], forked: bool = False) -> None:
    """The multiprocessing target: never returns; exits with the worker's exit code.
    ``forked``: forked by the --preload helper (worker/forkhelper.py), our parent is not the master."""
    global _forked_from
    _forked_from = os.getppid() if forked else 0
    set_up_process(args)
    code = run_worker(args)
    if sys.stdout is not None:  # None when the master was started with stdout closed (issue 9)
        try:
            sys.stdout.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say there
            pass
    sys.exit(code)


# ---------------------------------------------------------------- process setup


def set_up_process(args: WorkerArgs[Config]) -> None:
    capture_output(args.output_socks)
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(signum, signal.SIG_IGN)
    # Until the loop takes TERM over: nothing to drain yet, just leave.
    signal.signal(signal.SIGTERM, _exit_now)
    stacks_fd = args.stacks_sock.fileno()
    faulthandler.enable(file=stacks_fd, all_threads=True)
    faulthandler.register(signal.SIGUSR2, file=stacks_fd, all_threads=True, chain=False)
    if not _forked_from:  # a helper's death is not the master's: forked workers watch the channel
        set_parent_death_signal(args.master_pid)
    elif master_gone(args.master_pid):
        raise SystemExit(exitcodes.OK)
    os.environ[WORKER_ID_ENV] = str(args.slot)
    os.environ[WORKER_INCARNATION_ENV] = str(args.incarnation)
    from asynccluster.logs import setup_logging

    setup_logging(args.config, slot=args.slot)


def capture_output(socks: Sequence[Any] | None) -> None:
    """Make fds 1 and 2 the master's output sockets (issue 11: it keeps every line, an app's
    print() and the interpreter's last traceback included, and passes them on to its own
    stdout/stderr). stdout becomes line-buffered, so a print() is seen at once, as on a terminal."""
    if not socks:
        return
    for fd, sock in zip((1, 2), socks, strict=True):
        for stream in (sys.stdout, sys.stderr):
            if stream is not None and _fd_of(stream) == fd:
                stream.flush()
        os.dup2(sock.fileno(), fd)
        sock.close()
    if sys.stdout is None or sys.stderr is None:  # started with them closed (issue 9): open ours
        sys.stdout = sys.stdout or open(1, "w", closefd=False)  # noqa: SIM115 - lives as long as the process
        sys.stderr = sys.stderr or open(2, "w", closefd=False)  # noqa: SIM115
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)


def _fd_of(stream: Any) -> int:
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return -1


def _exit_now(signum: int, frame: Any) -> None:
    raise SystemExit(exitcodes.OK)


_forked_from = 0  # the --preload helper that forked us (our first parent), 0 when spawned


def master_gone(master_pid: int) -> bool:
    """Our parent is neither the master nor the helper that forked us: the master died (the
    helper dies with it). A helper's own death re-parents us to the master (its child
    subreaper, master/preload.py), so that is not taken for the master's (issue 16)."""
    return os.getppid() not in (master_pid, _forked_from or master_pid)


def set_parent_death_signal(master_pid: int) -> None:
    """Linux: the kernel sends us SIGTERM when the master dies (even by SIGKILL).

    The channel's EOF is the first line of defence (it works everywhere); this one also
    covers a worker whose loop is blocked. If the master died before the prctl, we are
    already orphaned: leave.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != master_pid:
        raise SystemExit(exitcodes.OK)


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    if choice in ("uvloop", "auto"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_worker(args: WorkerArgs[Config]) -> int:
    try:
        loop = new_event_loop(args.config.loop)
    except ImportError:
        send_blocking(args.channel_sock, Stopping("--loop uvloop: uvloop is not installed"))
        return exitcodes.ERROR
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(WorkerRuntime(args, loop).run())
    finally:
        # We are exiting cleanly already: a SIGTERM from here on (a whole process group
        # signalled by systemd's KillMode=control-group, `timeout`, `kill -- -PGID`, while the
        # master also tells this worker to stop) must not reach a handler that schedules on a
        # loop being closed. Ignored before the close, and again after it, since closing the
        # loop restores TERM's default action.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def format_tasks(tasks: set[asyncio.Task[Any]]) -> str:
    """Each task's await chain, outermost first, in faulthandler's line format.

    Task.get_stack() gives only the outer frame of a suspended coroutine; following
    ``cr_await`` reaches the innermost one, where it actually waits.
    """
    lines = []
    for task in sorted(tasks, key=lambda t: t.get_name()):
        lines.append(f"Task {task.get_name()} (most recent call last):")
        awaited: Any = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is None:
                break
            lines.append(f'  File "{frame.f_code.co_filename}", line {frame.f_lineno} in {frame.f_code.co_name}')
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return "\n".join(lines) + "\n"


def app_metrics_snapshot() -> dict[str, Any] | None:
    """The app's own metrics (asynccluster.metrics), None if it declared none (a lighter beat)."""
    return metrics.snapshot() or None


# ---------------------------------------------------------------- the worker on its loop


class WorkerRuntime:
    def __init__(self, args: WorkerArgs[Config], loop: asyncio.AbstractEventLoop) -> None:
        self.args = args
        self.config = args.config
        self.loop = loop
        self.stop_future: asyncio.Future[tuple[float, str]] = loop.create_future()
        self.stats: WorkerStats | None = None
        self.channel: Channel[MasterMessage] | None = None
        self.diagnostics: Diagnostics | None = None  # issue 15: errors, slow requests, measurements

    async def run(self) -> int:
        from asynccluster.importer import AppImportError, load_app

        self.channel = Channel(self.loop, self.args.channel_sock, self.on_message, self.on_master_gone, FROM_MASTER)
        self.send(Online(pid=os.getpid(), incarnation=self.args.incarnation))
        # signal.signal, not loop.add_signal_handler: a Python handler runs between bytecodes
        # even while the loop is blocked (a stuck request), so the hard deadline gets armed.
        signal.signal(signal.SIGTERM, self.on_sigterm)
        try:
            # A factory given without --factory is used with a warning (issue 8 item 8); one
            # worker says so, not all of them.
            warn = logger.warning if self.args.slot == 0 else logger.debug
            app = load_app(self.config.app, factory=self.config.factory, app_dir=self.config.app_dir, warn=warn)
        except AppImportError as exc:
            return self.fail(str(exc), exitcodes.APP_IMPORT)
        return await self.serve(app)

    async def serve(self, app: Any) -> int:
        from asynccluster.observe.stats import WorkerStats
        from asynccluster.worker.lifespan import LifespanFailure
        from asynccluster.worker.server import Server
        from asynccluster.worker.tls import TLSConfigError

        self.stats = WorkerStats()
        server = Server(self.config, app, stats=self.stats, worker_id=self.args.slot)
        # Lifespan shutdown runs after the drain with a budget of its own (not what the drain
        # left over); the master kills only after drain + this + a grace.
        server.lifespan.shutdown_timeout = self.args.shutdown_budget
        try:
            server.load_tls()  # read now, at each worker start: a reload picks up renewed certificates
        except TLSConfigError as exc:
            return self.fail(str(exc), exitcodes.TLS)
        self.send(Phase("lifespan startup"))
        try:
            await server.startup()
        except LifespanFailure as exc:
            reason = str(exc) if str(exc).startswith("lifespan") else f"lifespan startup failed: {exc}"
            return self.fail(reason, exitcodes.LIFESPAN)
        if self.stop_future.done():  # told to stop while starting: nothing was served yet
            await server.shutdown()
            return exitcodes.OK
        from asynccluster.worker import diagnose

        self.diagnostics = diagnose.install(
            self.loop, self.send, server, self.config.slow_request_threshold, self.config.slow_request_stacks
        )
        await server.start_serving([self.args.listen_sock])
        self.send(Ready(pid=os.getpid()))
        self.send_heartbeat(0.0)
        heartbeat = self.loop.create_task(self.heartbeat())
        limits = self.watch_limits()
        timeout, reason = await self.stop_future
        limits.cancel()
        self.send(Stopping(reason, draining=True))
        drain = self.loop.create_task(server.drain(timeout))
        await asyncio.sleep(0)  # drain() closes the listeners in its first step: say so after it
        logger.info("draining (%s; up to %g s): no longer accepting", reason, timeout)
        forced = await drain
        await server.shutdown()  # heartbeats go on meanwhile: a slow shutdown is not a hang
        heartbeat.cancel()
        logger.info("stopped%s", f" ({forced} connections force-closed)" if forced else "")
        diagnose.flush()  # the last errors and slow requests, before the channel closes
        # The last word to the master: it logs the count on this worker's exit line (issue 4).
        self.send(Stopping(reason, draining=True, forced=forced))
        self.close_channel()
        return exitcodes.OK

    def fail(self, reason: str, code: int) -> int:
        """Before ready: tell the master why (it logs it once for the cluster) and exit."""
        self.send(Stopping(reason))
        self.close_channel()
        return code

    # -- recycling limits, checked here (issue 9 item 7, issue 11), not once per heartbeat

    def watch_limits(self) -> asyncio.Task[None]:
        """--max-requests at exactly N (a hook in WorkerStats), --max-memory every 100 ms."""
        assert self.stats is not None
        if self.args.max_requests > 0:
            limit = self.args.max_requests
            self.stats.request_limit = limit
            self.stats.on_limit = lambda: self.ask_recycle(f"max-requests: served {limit} requests (limit {limit})")
        return self.loop.create_task(self.watch_memory(self.config.max_memory))

    async def watch_memory(self, limit: int) -> None:
        if limit <= 0:
            return
        while True:
            await asyncio.sleep(MEMORY_CHECK_INTERVAL)
            rss = rss_bytes()
            if rss > limit:
                self.ask_recycle(f"max-memory: RSS {rss / 2**20:.1f} MiB > {limit / 2**20:.1f} MiB")
                return

    def ask_recycle(self, reason: str) -> None:
        """Ask the master for a replacement, once: it starts one, then drains us (readiness-gated)."""
        if self.stats is not None:
            self.stats.on_limit = None
        self.send(Recycle(reason))

    # -- the channel

    def send(self, message: WorkerMessage) -> None:
        if self.channel is not None:
            self.channel.send(message)

    def close_channel(self) -> None:
        if self.channel is not None:
            self.channel.flush_blocking()
            self.channel.close()

    def on_message(self, message: MasterMessage) -> None:
        if isinstance(message, Stop):
            self.request_stop(message.timeout, message.reason or "stop requested by the master")
        elif isinstance(message, DumpTasks):
            self.args.stacks_sock.sendall(format_tasks(asyncio.all_tasks(self.loop)).encode())
        elif isinstance(message, Diagnose):
            if self.diagnostics is not None:  # None until serving: the master asks ready workers only
                self.diagnostics.on_request(message)
        elif isinstance(message, ReopenLogs):
            from asynccluster.logs import reopen_log_files

            reopen_log_files()

    def on_master_gone(self) -> None:
        """Channel EOF: the master died (or closed us off). Finish quickly; no orphans."""
        self.arm_hard_deadline(ORPHAN_DRAIN_TIMEOUT + ORPHAN_EXIT_MARGIN)
        self.request_stop(min(ORPHAN_DRAIN_TIMEOUT, self.config.graceful_timeout), "the master is gone")

    def on_sigterm(self, signum: int, frame: Any) -> None:
        """SIGTERM: from an operator, or the parent-death signal when the master died."""
        if master_gone(self.args.master_pid):
            timeout, reason = min(ORPHAN_DRAIN_TIMEOUT, self.config.graceful_timeout), "the master is gone"
            deadline = timeout + ORPHAN_EXIT_MARGIN
        else:
            # An operator's SIGTERM: the drain, then lifespan shutdown's own budget.
            timeout, reason = self.config.graceful_timeout, "SIGTERM"
            deadline = timeout + self.args.shutdown_budget + ORPHAN_EXIT_MARGIN
        if self.loop.is_closed():
            return  # the worker is past its loop: it exits on its own
        self.arm_hard_deadline(deadline)
        self.loop.call_soon_threadsafe(self.request_stop, timeout, reason)

    def arm_hard_deadline(self, seconds: float) -> None:
        """If this process still runs in ``seconds`` (its loop is blocked, so the graceful
        path cannot run), faulthandler's own thread dumps the stacks and exits the process."""
        faulthandler.dump_traceback_later(seconds, exit=True, file=self.args.stacks_sock.fileno())

    def request_stop(self, timeout: float, reason: str) -> None:
        if not self.stop_future.done():
            self.stop_future.set_result((timeout, reason))

    # -- the heartbeat: from this loop, so a blocked loop stops it (DESIGN.md §3)

    async def heartbeat(self) -> None:
        interval = self.args.heartbeat_interval
        expected = self.loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, expected - self.loop.time()))
            now = self.loop.time()
            lag = max(0.0, now - expected)
            expected = now + interval
            self.send_heartbeat(lag)

    def send_heartbeat(self, lag: float) -> None:
        try:
            app_metrics = app_metrics_snapshot()
        except Exception:  # an app's metric must never stop the heartbeat
            logger.exception("asynccluster.metrics.snapshot() failed")
            app_metrics = None
        message = Heartbeat(
            stats=self.stats.snapshot() if self.stats is not None else {},
            loop_lag=round(lag, 6),
            rss=rss_bytes(),
            cpu=cpu_seconds(),
            time=time.time(),
            app_metrics=app_metrics,
        )
        if self.channel is not None and not self.channel.send(message) and not self.channel.closed:
            # Too large for a frame (the channel logged it): the heartbeat still goes, without
            # the app's metrics, so the worker is not taken for hung (issue 9).
            self.channel.send(dataclasses.replace(message, app_metrics=None))
