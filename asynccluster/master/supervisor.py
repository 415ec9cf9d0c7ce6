"""The master coroutine: desired state vs actual state, one event dispatch (DESIGN.md §1, §3).

Everything arrives as a callback on the master's one loop: worker messages, channel EOF,
process exits (spawner.py: ``add_reader`` on sentinels), stacks, signals (signals.py) and
timers (``call_later``: respawn backoff, per-worker watchdogs, the stop deadline). Nothing
polls and nothing blocks. Long operations (reload, scale, restart, recycle) are coroutines
in operations.py that await the futures these callbacks resolve; they run one at a time
(``op_lock``), so there is one recycle at a time cluster-wide and never two reloads at once.
Readiness and liveness deadlines live in watchdog.py.

The desired state is ``desired`` slots, each with one ready *current* worker. A slot may
also have a *candidate* (a new incarnation on the same socket, during a replace) and any
number of retiring incarnations (told to drain, not yet exited).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from asynccluster import exitcodes, logs
from asynccluster.config import Config
from asynccluster.cpus import usable_cpus
from asynccluster.master import operations, sdnotify
from asynccluster.master.diagnose import Diagnostics
from asynccluster.master.policy import (
    Timing,
    draw_recycle_limits,
    recent,
    recycle_reason,
    respawn_decision,
    shutdown_budget,
    worker_limit,
)
from asynccluster.master.process import (
    DRAINING,
    EXITED,
    READY,
    STARTING,
    Spawner,
    SpawnRequest,
    WorkerHandle,
    WorkerInfo,
    describe_exit,
)
from asynccluster.master.stopping import Stopping, plural
from asynccluster.master.watchdog import Watchdog
from asynccluster.observe.events import EventRing
from asynccluster.sockets import Listeners

logger = logging.getLogger("asynccluster.master")

# A worker that exits with one of these before it was ever ready failed deterministically:
# respawning would only repeat it (issue 3: "no respawn storm").
STARTUP_FAILURES = (exitcodes.APP_IMPORT, exitcodes.LIFESPAN, exitcodes.BIND, exitcodes.TLS)

# Stack text arriving within this many seconds of the previous piece belongs to the same dump.
STACKS_BURST = 1.0

EventCallback = Callable[[str, WorkerInfo], Any]


@dataclass(eq=False)
class Slot:
    index: int
    current: WorkerHandle | None = None
    candidate: WorkerHandle | None = None
    failures: int = 0  # consecutive deaths before ready (backoff)
    crashes: list[float] = field(default_factory=list)  # clock() of unplanned exits in the budget window
    summarised_at: float | None = None  # when the last "crashed N times" summary was logged
    restarts: int = 0
    next_incarnation: int = 1
    respawn_timer: asyncio.TimerHandle | None = None
    retiring: bool = False  # being removed by a scale down
    last_exit: str = ""


class Supervisor:
    def __init__(
        self,
        config: Config,
        spawner: Spawner,
        listeners: Listeners | None = None,
        *,
        workers: int | None = None,
        timing: Timing | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_event: EventCallback | None = None,
    ) -> None:
        self.config = config
        self.spawner = spawner
        self.listeners = listeners
        self.timing = timing or Timing()
        self.clock = clock
        self.rng = rng or random.Random()
        self.on_event = on_event
        self.desired = workers if workers is not None else int(config.workers)
        self.max_workers = worker_limit(config, usable_cpus().count)
        self.slots: dict[int, Slot] = {}
        self.handles: set[WorkerHandle] = set()  # every incarnation not yet exited
        self.state = "starting"
        self.started_at = time.time()
        self.ever_ready = False
        self.op_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stop_control = Stopping(self)
        self._tasks: set[asyncio.Future[Any]] = set()  # operations: cancelled when serve() ends
        self._callbacks: set[asyncio.Future[Any]] = set()  # async event callbacks: allowed to finish
        self.watchdog = Watchdog(config, self.timing, clock, lambda: self.loop)
        self.events = EventRing()  # the lifecycle timeline the dashboard shows (issue 12)
        self.diagnostics = Diagnostics(self)  # grouped errors, slow requests, measurements (issue 15)

    # ------------------------------------------------------------ lifecycle

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def serve(self) -> int:
        """Start the workers and supervise them until the cluster stops; the exit code."""
        done = self.stop_control.done = self.loop.create_future()
        for index in range(self.desired):
            slot = self.slots[index] = Slot(index)
            slot.current = self.spawn(slot)
        try:
            code = await asyncio.shield(done)
        except asyncio.CancelledError:
            # The embedding program cancelled serve(): never leave workers behind.
            self.begin_stop()
            await asyncio.shield(done)
            raise
        finally:
            for task in list(self._tasks):
                task.cancel()
            await self._finish_callbacks()
        return code

    async def _finish_callbacks(self) -> None:
        """The last ``exit`` events' async callbacks (e.g. a notification) get to finish,
        within Timing.callback_grace; then they are cancelled, so serve() always returns."""
        pending = set(self._callbacks)
        if not pending:
            return
        _, pending = await asyncio.wait(pending, timeout=self.timing.callback_grace)
        for task in pending:
            task.cancel()
        if pending:
            logger.warning("cancelled %s still running after %g s", plural(len(pending), "event callback"),
                           self.timing.callback_grace)  # fmt: skip

    def run_callback(self, awaitable: Awaitable[Any]) -> None:
        """Run what an async event callback returned; its exception is logged, not lost."""
        task: asyncio.Future[Any] = asyncio.ensure_future(awaitable, loop=self.loop)
        self._callbacks.add(task)
        task.add_done_callback(self._callback_done)

    def _callback_done(self, task: asyncio.Future[Any]) -> None:
        self._callbacks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("an event callback raised", exc_info=task.exception())

    def background(self, coro: Awaitable[Any]) -> None:
        """Run an operation started by a signal or a heartbeat; keep a reference to it."""
        task: asyncio.Future[Any] = asyncio.ensure_future(coro, loop=self.loop)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ spawning

    def spawn(self, slot: Slot) -> WorkerHandle:
        """Start a new incarnation of ``slot`` on the slot's socket (the caller makes it the
        slot's current worker or its candidate)."""
        handle = WorkerHandle(slot=slot.index, incarnation=slot.next_incarnation, started_at=self.clock())
        slot.next_incarnation += 1
        handle.max_requests, handle.max_lifetime = draw_recycle_limits(self.config, self.rng)
        handle.ready_future = self.loop.create_future()
        handle.exited_future = self.loop.create_future()
        sock = self.listeners.socket_for(slot.index) if self.listeners is not None else None
        request = SpawnRequest(
            self.config,
            slot.index,
            handle.incarnation,
            sock,
            heartbeat_interval=self.timing.heartbeat_interval,
            shutdown_budget=shutdown_budget(self.config, self.timing),
            max_requests=handle.max_requests,
        )
        self.handles.add(handle)
        try:
            handle.process = self.spawner.spawn(request, handle, self)
        except Exception as exc:  # e.g. out of file descriptors or memory
            logger.error("could not start a worker for slot %d: %s", slot.index, exc)
            handle.reason = f"could not start: {exc}"
            self.loop.call_soon(self.on_exit, handle, exitcodes.ERROR)
            return handle
        handle.pid = handle.process.pid
        self.events.record("spawn", f"{handle.name} started", slot.index, handle.pid)
        self.watchdog.arm_ready(handle)
        logger.debug("started %s", handle.name)
        return handle

    def schedule_respawn(self, slot: Slot) -> None:
        if self.stopping or slot.retiring or slot.index >= self.desired or slot.respawn_timer is not None:
            return
        decision = respawn_decision(
            served=slot.failures == 0,
            failures=slot.failures,
            crashes=len(slot.crashes),
            others_live=self._others_live(slot),
            timing=self.timing,
        )
        self.events.record("respawn", f"respawn in {decision.delay:.1f} s {decision.why}".strip(), slot.index)
        if slot.failures == 0 and not self._any_ready():
            # A worker that served just died and none is ready now: other slots must not sit
            # out long backoffs meanwhile (a poison request every second kept a 16 s backoff
            # running while the cluster was dark: attack run on issue 9).
            self._cut_backoffs()
        if decision.delay <= 0:
            self._respawn(slot)
            return
        slot.respawn_timer = self.loop.call_later(decision.delay, self._respawn, slot)
        logger.warning("respawning worker %d in %.1f s (%s)", slot.index, decision.delay, decision.why)

    def _any_ready(self) -> bool:
        return any(
            handle is not None and handle.alive and handle.state == READY
            for slot in self.slots.values()
            if not slot.retiring
            for handle in (slot.current, slot.candidate)
        )

    def _cut_backoffs(self) -> None:
        """No worker is ready: every slot waiting longer than the floor respawns at the floor."""
        floor = self.timing.floor_delay
        latest = self.loop.time() + floor
        for other in self.slots.values():
            timer = other.respawn_timer
            if timer is not None and timer.when() > latest:
                timer.cancel()
                other.respawn_timer = self.loop.call_later(floor, self._respawn, other)
                logger.warning("respawning worker %d in %.1f s (no worker is ready: backoff cut)", other.index, floor)

    def _others_live(self, slot: Slot) -> bool:
        """Some other slot has a worker ready or starting (the floor of issue 9)."""
        return any(
            handle is not None and handle.alive and handle.state in (STARTING, READY)
            for other in self.slots.values()
            if other is not slot and not other.retiring
            for handle in (other.current, other.candidate)
        )

    def _respawn(self, slot: Slot) -> None:
        slot.respawn_timer = None
        if self.stopping or slot.retiring or slot.current is not None or slot.candidate is not None:
            return
        if self.slots.get(slot.index) is not slot:
            return
        slot.restarts += 1
        slot.current = self.spawn(slot)

    # ------------------------------------------------------------ the one event dispatch

    def on_message(self, handle: WorkerHandle, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "heartbeat":
            self._on_heartbeat(handle, message)
        elif kind == "ready":
            self._on_ready(handle)
        elif kind == "online":
            handle.phase = "importing the app"
            self.emit("online", handle)
        elif kind == "recycle":
            # The worker reached --max-requests or --max-memory itself (issue 9/11: exact,
            # not once per heartbeat); the heartbeat check below stays as the fallback.
            if handle.state == READY and not handle.retire_reason:
                self._maybe_recycle(handle, str(message.get("reason") or "requested by the worker"))
        elif kind == "phase":
            handle.phase = str(message.get("phase", ""))
        elif kind in ("errors", "diagnose-result"):
            self.diagnostics.on_message(handle, message)
        elif kind == "stopping":
            handle.reason = str(message.get("reason", ""))
            if message.get("draining") and handle.state != EXITED:
                handle.state = DRAINING
            forced = message.get("forced")
            if isinstance(forced, int) and not isinstance(forced, bool) and forced > 0:
                handle.forced_connections = forced
        else:
            logger.debug("%s sent an unknown message %r", handle.name, kind)

    def on_disconnect(self, handle: WorkerHandle) -> None:
        self.emit("disconnect", handle)

    def on_stacks(self, handle: WorkerHandle, text: str) -> None:
        tag = {"tag": logs.worker_tag(handle.slot, handle.pid)}
        now = self.clock()
        if now - handle.last_stacks_at > STACKS_BURST:  # a new dump, not the rest of the last one
            logger.error("stacks of %s:", handle.name, extra=tag)
        handle.last_stacks_at = now
        self.events.stacks(handle.slot, handle.pid, text, handle.retire_reason)
        for line in text.rstrip().splitlines():
            logger.error("%s", line, extra=tag)
        if handle.hung and handle.alive:
            # The dump arrives in one burst; kill once it has been quiet for a moment.
            self.watchdog.stacks_arrived(handle)

    def on_exit(self, handle: WorkerHandle, exitcode: int) -> None:
        if handle.exitcode is not None:
            return
        now = self.clock()
        handle.exitcode = exitcode
        handle.exit_detail = describe_exit(exitcode)
        previous_state = handle.state
        handle.state = EXITED
        handle.cancel_watchdog()
        self.handles.discard(handle)
        if handle.ready_future is not None and not handle.ready_future.done():
            handle.ready_future.set_result(False)
        if handle.exited_future is not None and not handle.exited_future.done():
            handle.exited_future.set_result(exitcode)
        slot = self.slots.get(handle.slot)
        # State first, then actions, then log lines; and whatever raises on the way (it
        # should not), the exit is still accounted for, so a stop completes and a slot
        # whose worker died is respawned (a master with 0 workers forever is the worst case).
        try:
            if slot is not None:
                slot.last_exit = handle.exit_summary(now)
            if self.stopping:
                self.stop_control.on_exit(handle, exitcode, now)
            elif slot is not None and slot.current is handle and not slot.retiring:
                slot.current = None
                self._on_current_exit(slot, handle, now)
            else:
                if slot is not None and slot.candidate is handle:
                    slot.candidate = None
                self._log_exit(handle, now, expected=bool(handle.retire_reason) or previous_state == DRAINING)
        finally:
            try:
                self.events.record("exit", handle.exit_summary(now), handle.slot, handle.pid)
                self.emit("exit", handle)
            finally:
                self.stop_control.check_finished()

    # ------------------------------------------------------------ message handlers

    def _on_ready(self, handle: WorkerHandle) -> None:
        if handle.state != STARTING:
            return
        now = self.clock()
        handle.state = READY
        handle.ready_at = now
        handle.last_heartbeat_at = now
        self.ever_ready = True
        self.watchdog.arm_heartbeat(handle)
        if handle.ready_future is not None and not handle.ready_future.done():
            handle.ready_future.set_result(True)
        if self.stopping:
            self.tell_stop(handle, "cluster stopping")
        all_ready = not self.stopping and self.state == "starting" and self._all_current_ready()
        if all_ready:
            self.state = "running"
            sdnotify.ready(f"serving with {plural(self.desired, 'worker')}")
        # State and actions above, log lines and callbacks below (a failing log loses nothing).
        logger.info("%s ready in %.2f s", handle.name, now - handle.started_at)
        self.events.record("ready", f"{handle.name} ready in {now - handle.started_at:.2f} s", handle.slot, handle.pid)
        self.emit("listening", handle)
        if all_ready:
            logger.info("all %s ready", plural(self.desired, "worker"))

    def _on_heartbeat(self, handle: WorkerHandle, message: dict[str, Any]) -> None:
        handle.heartbeat = {key: value for key, value in message.items() if key != "type"}
        handle.last_heartbeat_at = self.clock()
        if handle.state in (READY, DRAINING) and not handle.hung:
            self.watchdog.arm_heartbeat(handle)
        if handle.state == READY and not handle.retire_reason:
            self._maybe_recycle(handle)

    def _maybe_recycle(self, handle: WorkerHandle, reason: str | None = None) -> None:
        reason = reason or recycle_reason(handle, self.config, self.clock())
        if reason is None or self.stopping or self.state != "running" or self.op_lock.locked():
            return
        slot = self.slots.get(handle.slot)
        if slot is None or slot.current is not handle or slot.candidate is not None:
            return
        self.events.record("recycle", f"recycling {handle.name}: {reason}", handle.slot, handle.pid)
        self.background(operations.recycle(self, slot, reason))

    # ------------------------------------------------------------ exits

    def _on_current_exit(self, slot: Slot, handle: WorkerHandle, now: float) -> None:
        # Became ready, then died: a crash, not a crash loop (issue 9); the budget counts it.
        slot.failures = 0 if handle.ready_at is not None else slot.failures + 1
        slot.crashes = [*recent(slot.crashes, now, self.timing.budget_window), now]
        if not self.ever_ready and handle.ready_at is None and self._give_up_if_hopeless(slot, handle):
            return
        try:
            self._log_exit(handle, now, expected=False)
            self._summarise_crashes(slot, now)
        finally:
            # A slot with a candidate already has a replacement starting (reload / restart).
            if not (slot.retiring or slot.index >= self.desired or slot.candidate is not None):
                self.schedule_respawn(slot)

    def _summarise_crashes(self, slot: Slot, now: float) -> None:
        """One line per slot and window once its crashes pile up: the poison-request pattern
        (a request that kills whichever worker serves it) is visible without counting lines."""
        count, window = len(slot.crashes), self.timing.budget_window
        if count < self.timing.crash_summary:
            return
        if slot.summarised_at is not None and now - slot.summarised_at < window:
            return
        slot.summarised_at = now
        logger.error("worker slot %d crashed %d times in %.0f s (a request that crashes workers?); last exit: %s",
                     slot.index, count, window, slot.last_exit)  # fmt: skip

    def _give_up_if_hopeless(self, slot: Slot, handle: WorkerHandle) -> bool:
        """No worker was ever ready: stop instead of respawning forever (issue 3)."""
        code = handle.exitcode if handle.exitcode in STARTUP_FAILURES else None
        if code is None and handle.retire_reason.startswith("not ready"):
            code = exitcodes.NEVER_READY
        if code is None and slot.failures >= self.timing.startup_attempts:
            code = exitcodes.NEVER_READY
        if code is None:
            return False
        reason = handle.reason or handle.retire_reason
        if not reason:
            times = f", {slot.failures} times in a row" if slot.failures > 1 else ""
            reason = f"worker {slot.index} exited with {handle.exit_detail} before it was ready{times}"
        # The one message for the whole cluster (every worker fails the same way); the
        # final "stopped (exit code N: ...)" line says what it means for the exit status.
        logger.error("error: %s", reason.rstrip())
        self.begin_stop(code=code, quiet=True)
        return True

    def _log_exit(self, handle: WorkerHandle, now: float, *, expected: bool) -> None:
        level = logging.INFO if expected and handle.exitcode == 0 else logging.WARNING
        logger.log(level, "%s", handle.exit_summary(now))

    # ------------------------------------------------------------ replacing and retiring

    def tell_stop(self, handle: WorkerHandle, reason: str, timeout: float | None = None) -> None:
        """Ask a worker to drain and exit; a worker still starting has nothing to drain."""
        handle.retire_reason = handle.retire_reason or reason
        if not handle.alive:
            return
        if handle.state == STARTING:
            handle.signal(signal.SIGTERM)
            return
        already_draining = handle.state == DRAINING
        handle.state = DRAINING
        grace = self.config.graceful_timeout if timeout is None else timeout
        sent = handle.send({"type": "stop", "timeout": grace, "reason": reason})
        if not sent and not already_draining:
            # No channel (it closed it): SIGTERM also means "drain and exit" to a worker. One
            # that is already draining closed its channel on its way out: leave it be.
            handle.signal(signal.SIGTERM)

    def kill(self, handle: WorkerHandle) -> None:
        if handle.alive:
            handle.killed = True
            handle.signal(signal.SIGKILL)

    def _all_current_ready(self) -> bool:
        return all(
            slot.current is not None and slot.current.state == READY
            for slot in self.slots.values()
            if not slot.retiring
        )

    # ------------------------------------------------------------ stopping (stopping.py)

    @property
    def stopping(self) -> bool:
        return self.stop_control.active

    def begin_stop(self, *, code: int | None = None, quiet: bool = False) -> None:
        """Graceful stop: every worker drains within --graceful-timeout, then is killed."""
        self.stop_control.begin(code=code, quiet=quiet)

    def force_stop(self) -> None:
        """Second Ctrl-C: kill every worker now (exit code FORCED)."""
        self.stop_control.force()

    def kill_deadline(self) -> float:
        return self.stop_control.kill_deadline()

    # ------------------------------------------------------------ the API (control.py, Cluster)

    async def reload(self) -> operations.ReloadResult:
        self.events.record("reload", "reload started")
        return self.events.result("reload", await operations.reload(self))

    async def scale(self, count: int) -> operations.ScaleResult:
        return await operations.scale(self, count)

    async def scale_by(self, delta: int) -> operations.ScaleResult:
        """``delta`` workers more (or fewer) than the count when the operation runs."""
        return await operations.scale_by(self, delta)

    async def restart(self, slot: int) -> operations.RestartResult:
        return self.events.result("restart", await operations.restart(self, slot))

    async def stop(self, force: bool = False) -> None:
        if force:
            self.force_stop()
        else:
            self.begin_stop()
        if self.stop_control.done is not None:
            await asyncio.shield(self.stop_control.done)

    def reopen_logs(self) -> None:
        count = logs.reopen_log_files()
        for handle in self.handles:
            handle.send({"type": "reopen-logs"})
        logger.info("reopened %s in the master; asked %s to do the same", plural(count, "log file"),
                    plural(len(self.handles), "worker"))  # fmt: skip

    def emit(self, event: str, handle: WorkerHandle) -> None:
        if self.on_event is None:
            return
        try:
            result = self.on_event(event, handle.info())
            if inspect.isawaitable(result):
                self.run_callback(result)
        except Exception:
            logger.exception("the %r event callback raised", event)

    def status(self) -> dict[str, Any]:
        from asynccluster.master.status import cluster_status

        return cluster_status(self)

    @property
    def ready(self) -> bool:
        return not self.stopping and any(handle.state == READY for handle in self.handles)

    @property
    def pid(self) -> int:
        return os.getpid()
