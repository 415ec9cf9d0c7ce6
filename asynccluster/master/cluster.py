"""Cluster: the embeddable master, usable from async code (issue 3, "Embedding").

::

    cluster = Cluster(app="myapp:app", workers=4, port=8000)
    cluster.on("exit", lambda worker: print("worker", worker.slot, "exited", worker.exitcode))
    code = await cluster.serve()           # until stopped; from another task:
    await cluster.reload(); await cluster.scale(8); await cluster.stop()

Events are named after Node's cluster module: ``online`` (the process runs), ``listening``
(ready: lifespan done and accepting), ``disconnect`` (its channel closed), ``exit``. A
callback receives a :class:`~asynccluster.master.process.WorkerInfo` (slot, pid,
incarnation, exitcode, signal, reason); it may be a coroutine function.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from asynccluster import exitcodes
from asynccluster.config import Config, config_from_settings, parse_value
from asynccluster.contracts.results import ReloadResult, RestartResult, ScaleResult
from asynccluster.cpus import usable_cpus
from asynccluster.master import accepterrors, logbuffer
from asynccluster.master.control import start_control
from asynccluster.master.cron import start_cron
from asynccluster.master.policy import worker_limit
from asynccluster.master.preload import Preloader, preloaded
from asynccluster.master.process import WorkerInfo
from asynccluster.master.reaper import start_reaper
from asynccluster.master.signals import SignalRouter
from asynccluster.master.spawner import MultiprocessingSpawner
from asynccluster.master.supervisor import Supervisor
from asynccluster.master.watch import start_watch
from asynccluster.observe.admin import start_admin
from asynccluster.sockets import BindError, Listeners, create_listeners

logger = logging.getLogger("asynccluster.master")

EVENTS = ("online", "listening", "disconnect", "exit")
CloseFn = Callable[[], Awaitable[None]]


def resolve_workers(config: Config) -> int:
    if config.workers == "auto":
        cpus = usable_cpus()
        logger.info("%s", cpus.how)
        return cpus.count
    return int(config.workers)


def warn_if_root() -> None:
    """The app runs as root in every worker (issue 9): legitimate in a container, worth a line."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        logger.warning(
            "running as root: the app and every worker run with full privileges; "
            "use an unprivileged user (ports below 1024: CAP_NET_BIND_SERVICE or a proxy)"
        )


class Cluster:
    """An embeddable cluster: a master (this process) and its worker processes.

    ``Cluster(app="myapp:app", workers=4)`` takes the settings of ``asynccluster run`` as
    keywords (layered over env > pyproject > defaults, checked like the CLI's), or a
    :class:`~asynccluster.config.Config` (keywords then override its fields). ``serve()``
    runs it until stopped; from another task, ``reload()``, ``scale()``, ``restart()`` and
    ``stop()`` call the master's verbs, the very ones signals and ``asynccluster reload``
    reach, and return their results (asynccluster/contracts/results.py). With
    ``handle_signals`` (and in the main thread) TERM/INT/HUP/TTIN/TTOU/USR1 are handled as
    ``asynccluster run`` handles them. Raises ConfigError for bad settings.
    """

    def __init__(self, config: Config | None = None, *, handle_signals: bool = True, **settings: Any) -> None:
        if config is None:
            # Keyword settings are layered and checked like the CLI's: > env > pyproject > defaults.
            config = config_from_settings(settings)
        elif settings:
            config = config.replace(**{name: parse_value(name, value) for name, value in settings.items()})
        self.config = config
        self.handle_signals = handle_signals
        self.supervisor: Supervisor | None = None
        self.listeners: Listeners | None = None
        self._callbacks: dict[str, list[Callable[[WorkerInfo], Any]]] = {event: [] for event in EVENTS}

    def on(self, event: str, callback: Callable[[WorkerInfo], Any]) -> None:
        """Call ``callback(WorkerInfo)`` on ``event`` (one of :data:`EVENTS`); it may be a
        coroutine function (awaited as a task, given a bounded grace at the end of serve()).
        ValueError for an unknown event."""
        if event not in self._callbacks:
            raise ValueError(f"unknown event {event!r}; the events are: {', '.join(EVENTS)}")
        self._callbacks[event].append(callback)

    async def serve(self) -> int:
        """Bind, start the workers, supervise until stopped; returns the exit code."""
        logbuffer.install()  # from the first line on, every line is kept (issue 11)
        try:
            return await self._serve()
        finally:
            logbuffer.uninstall()  # an embedding program's logging as it was

    async def _serve(self) -> int:
        loop = asyncio.get_running_loop()
        accepterrors.install(loop)
        warn_if_root()
        workers = resolve_workers(self.config)
        if self.config.http == "2" and importlib.util.find_spec("h2") is None:  # issue 13
            logger.error("error: --http 2 needs the h2 package: pip install 'asynccluster[http2]'")
            return exitcodes.USAGE
        limit = worker_limit(self.config, usable_cpus().count)
        if workers > limit:
            logger.error("error: --workers %d is above the limit of %d workers (--max-workers)", workers, limit)
            return exitcodes.USAGE
        try:
            self.listeners = create_listeners(self.config, workers)
        except BindError as exc:
            logger.error("error: %s", exc)
            return exitcodes.BIND
        logger.info(
            "listening on %s (%s listener, %d worker%s)",
            # With --ssl-certfile every worker serves HTTPS (worker/tls.py).
            self.listeners.address.replace("http://", "https://", 1)
            if self.config.ssl_certfile
            else self.listeners.address,
            self.listeners.mode,
            workers,
            "" if workers == 1 else "s",
        )
        preload = Preloader(loop, self.config) if self.config.preload else None  # --preload (issue 16)
        supervisor = self.supervisor = Supervisor(
            self.config, MultiprocessingSpawner(loop, preload), self.listeners, workers=workers,
            on_event=self._dispatch, preload=preload,
        )  # fmt: skip
        router = SignalRouter(supervisor)
        closers: list[CloseFn] = []
        reaper = None
        try:
            if self.handle_signals and threading.current_thread() is threading.main_thread():
                router.install(loop)
            # PID 1 of a container: orphans are ours to wait for, our workers' pids never (issue 14).
            reaper = start_reaper(loop, lambda: {h.pid for h in supervisor.slots.handles if h.pid} | preloaded(preload))
            code = await self._start_hooks(supervisor, closers)
            if code == exitcodes.OK and preload is not None:
                code = await preload.start()  # the app imported once, before any worker
            if code == exitcodes.OK:
                code = await supervisor.serve()
        finally:
            if preload is not None:
                preload.close()
            router.remove()
            if reaper is not None:
                reaper.stop()
            for close in reversed(closers):
                await close()
            self.listeners.close()
        logger.info("stopped (exit code %d: %s)", code, exitcodes.DESCRIPTIONS.get(code, ""))
        return code

    async def _start_hooks(self, supervisor: Supervisor, closers: list[CloseFn]) -> int:
        """The control socket, --restart-cron, --reload and --admin; each one's close goes
        into ``closers``. An exit code: OK, or why the cluster cannot start."""
        try:
            closers.append(await start_control(supervisor, self.config))
        except Exception as exc:  # the cluster is still useful without its control socket
            logger.warning("control socket not started: %s", exc)
        close = await start_cron(supervisor, self.config)
        if close is not None:  # --restart-cron (issue 11)
            closers.append(close)
        try:
            close = await start_watch(supervisor, self.config)
        except RuntimeError as exc:  # --reload without watchfiles installed
            logger.error("error: %s", exc)
            return exitcodes.USAGE
        if close is not None:  # --reload (issue 11)
            closers.append(close)
        if self.config.admin:
            try:
                closers.append(await start_admin(supervisor, self.config))
            except OSError as exc:  # explicitly asked for: failing to bind it is a bind failure
                logger.error("error: cannot serve --admin %s: %s", self.config.admin, exc.strerror or exc)
                return exitcodes.BIND
        return exitcodes.OK

    def _dispatch(self, event: str, info: WorkerInfo) -> None:
        for callback in self._callbacks.get(event, ()):
            result = callback(info)
            if inspect.isawaitable(result) and self.supervisor is not None:
                self.supervisor.run_callback(result)  # finishes (bounded) before serve() returns

    # ------------------------------------------------------------ operations

    def _running(self) -> Supervisor:
        if self.supervisor is None:
            raise RuntimeError("the cluster is not running: await cluster.serve() first")
        return self.supervisor

    async def reload(self) -> ReloadResult:
        """Rolling reload: every worker replaced by one running the current code, committed
        only once all new ones are ready, else rolled back (``ok`` False). RuntimeError if
        serve() is not running."""
        return await self._running().reload()

    async def scale(self, n: int) -> ScaleResult:
        """``n`` workers (at least 1, at most --max-workers); a scale up whose new workers do
        not become ready is rolled back. RuntimeError if serve() is not running."""
        return await self._running().scale(n)

    async def restart(self, slot: int) -> RestartResult:
        """Replace worker ``slot`` (0..N-1), readiness-gated. RuntimeError if not running."""
        return await self._running().restart(slot)

    async def stop(self, force: bool = False) -> None:
        """Stop gracefully (drain within --graceful-timeout, then kill), or kill every worker
        now with ``force``; returns once every worker is reaped (serve() then returns)."""
        await self._running().stop(force=force)

    def status(self) -> dict[str, Any]:
        """The status view (``asynccluster status --json`` without rates): state, workers,
        accept queues; see asynccluster/contracts/status.py for the keys."""
        return self._running().status()

    @property
    def ready(self) -> bool:
        """What /readyz answers: serving, not stopping, and some worker ready."""
        return self.supervisor is not None and self.supervisor.ready
