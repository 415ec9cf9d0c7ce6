"""The master coroutine: desired state vs actual state, one event dispatch, the verbs (DESIGN.md §1, §3).

The Supervisor is the one owner of the cluster state (:attr:`Supervisor.state`, whose setter
enforces contracts/states.py's transition table) and of the slot table (slots.py). Like
gunicorn's Arbiter, its verbs are its methods: :meth:`~Supervisor.reload`,
:meth:`~Supervisor.restart`, :meth:`~Supervisor.recycle`, :meth:`~Supervisor.scale`,
:meth:`~Supervisor.scale_by`, :meth:`~Supervisor.begin_stop` / :meth:`~Supervisor.stop` and
:meth:`~Supervisor.reopen_logs`. Signals (signals.py), the control socket (control.py), the
admin dashboard, ``--reload``/``--restart-cron`` and ``Cluster`` (cluster.py) all call these,
one route each.

Everything arrives as a callback on the master's one loop: worker messages, channel EOF,
process exits (spawner.py: ``add_reader`` on sentinels), stacks, signals and timers
(``call_later``: respawn backoff, per-worker watchdogs, the stop deadline). Nothing polls and
nothing blocks. The long verbs are coroutines that await the futures these callbacks resolve;
they run one at a time (``op_lock``), so there is one recycle at a time cluster-wide and
never two reloads at once. Readiness and liveness deadlines live in watchdog.py; the stop in
stopping.py.

Replacing a worker always goes one way (issue 4): start a *candidate* incarnation of the slot
on the slot's own socket (so it shares the accept queue), wait until it says ``ready`` within
--ready-timeout, and only then tell the old incarnation to drain. A rolling reload keeps every
old worker serving until all candidates are ready, batch by batch (``--reload-batch``), and
commits only then: when the new code cannot start, it rolls back to processes that really run
the old code, and no request meets a missing worker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from asynccluster import exitcodes, logs
from asynccluster.config import Config
from asynccluster.contracts import messages
from asynccluster.contracts.results import ReloadResult, RestartResult, ScaleResult, scale_refusal
from asynccluster.contracts.states import ClusterState, WorkerState, check_cluster_transition
from asynccluster.contracts.status import ClusterStatus
from asynccluster.cpus import usable_cpus
from asynccluster.master import sdnotify
from asynccluster.master.diagnose import Diagnostics
from asynccluster.master.policy import Timing, recycle_reason, worker_limit
from asynccluster.master.preload import Preloader
from asynccluster.master.process import Spawner, WorkerHandle, WorkerInfo, describe_exit
from asynccluster.master.slots import STOPPING, Slot, SlotTable, headline
from asynccluster.master.status import cluster_status
from asynccluster.master.stopping import Stopping, plural
from asynccluster.master.tasks import Tasks
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


class Supervisor:
    """The master: owner of the cluster state and the slot table, and the verbs that change them.

    ``spawner`` starts worker processes (spawner.py; a fake in tests/master/), ``listeners``
    the sockets they serve (None with fake spawners), ``workers`` the count to start with
    (default ``config.workers``); ``timing``, ``clock`` and ``rng`` are the policy's knobs,
    injectable for tests; ``on_event(event, WorkerInfo)`` is ``Cluster.on``'s dispatch.
    Everything runs on the loop that awaits :meth:`serve`.
    """

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
        preload: Preloader | None = None,
    ) -> None:
        self.config = config
        self.preload = preload  # --preload: a reload first imports the new code in a new helper
        self.timing = timing or Timing()
        self.clock = clock
        self.on_event = on_event
        self.max_workers = worker_limit(config, usable_cpus().count)
        self._state = ClusterState.STARTING
        self.started_at = time.time()
        self.ever_ready = False
        self.reload_generation = 0  # reloads run so far (committed or rolled back)
        self.op_lock = asyncio.Lock()
        self._queued_reload: asyncio.Future[ReloadResult] | None = None  # a reload waiting for op_lock
        self._loop: asyncio.AbstractEventLoop | None = None
        self.tasks = Tasks(lambda: self.loop)
        self.watchdog = Watchdog(config, self.timing, clock, lambda: self.loop)
        self.events = EventRing()  # the lifecycle timeline the dashboard shows (issue 12)
        self.slots = SlotTable(
            config, spawner, listeners,
            desired=workers if workers is not None else int(config.workers),
            events_sink=self, stopping=lambda: self.stopping, watchdog=self.watchdog, events=self.events,
            timing=self.timing, clock=clock, rng=rng or random.Random(), loop=lambda: self.loop,
        )  # fmt: skip
        self.stop_control = Stopping(config, self.timing, self.slots, lambda: self.loop, self._on_stopped)
        self.diagnostics = Diagnostics(self.slots)  # grouped errors, slow requests, measurements (issue 15)

    # ------------------------------------------------------------ the cluster state

    @property
    def state(self) -> ClusterState:
        return self._state

    @state.setter
    def state(self, new: ClusterState) -> None:
        """The one place the cluster state changes: IllegalTransition for a change the table
        (contracts/states.py CLUSTER_TRANSITIONS) does not allow."""
        self._state = check_cluster_transition(self._state, new)

    @property
    def desired(self) -> int:
        """The worker count the cluster keeps (--workers, then each scale)."""
        return self.slots.desired

    @property
    def stopping(self) -> bool:
        return self.stop_control.active

    @property
    def ready(self) -> bool:
        """What /readyz answers: not stopping, and some worker is ready."""
        return not self.stopping and any(handle.state == WorkerState.READY for handle in self.slots.handles)

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
            self.slots.start(self.slots.add(index))
        try:
            code = await asyncio.shield(done)
        except asyncio.CancelledError:
            # The embedding program cancelled serve(): never leave workers behind.
            self.begin_stop()
            await asyncio.shield(done)
            raise
        finally:
            self.tasks.cancel_verbs()
            await self.tasks.finish_callbacks(self.timing.callback_grace)
        return code

    def run_callback(self, awaitable: Awaitable[Any]) -> None:
        """Run what an async event callback returned (finishes, bounded, before serve() returns)."""
        self.tasks.callback(awaitable)

    def background(self, coro: Awaitable[Any]) -> None:
        """Run a verb started by a signal or a heartbeat (cancelled when serve() returns)."""
        self.tasks.verb(coro)

    def emit(self, event: str, handle: WorkerHandle) -> None:
        if self.on_event is None:
            return
        try:
            result = self.on_event(event, handle.info())
            if inspect.isawaitable(result):
                self.run_callback(result)
        except Exception:
            logger.exception("the %r event callback raised", event)

    # ------------------------------------------------------------ the one event dispatch

    def on_message(self, handle: WorkerHandle, message: messages.WorkerMessage) -> None:
        # Typed and checked by the channel (contracts/messages.py): invalid ones never get here.
        if isinstance(message, messages.Heartbeat):
            self._on_heartbeat(handle, message)
        elif isinstance(message, messages.Ready):
            self._on_ready(handle)
        elif isinstance(message, messages.Online):
            handle.phase = "importing the app"
            self.emit("online", handle)
        elif isinstance(message, messages.Recycle):
            # The worker reached --max-requests or --max-memory itself (issue 9/11: exact,
            # not once per heartbeat); the heartbeat check below stays as the fallback.
            if handle.state == WorkerState.READY and not handle.retire_reason:
                self._maybe_recycle(handle, message.reason or "requested by the worker")
        elif isinstance(message, messages.Phase):
            handle.phase = message.phase
        elif isinstance(message, (messages.Errors, messages.DiagnoseResult)):
            self.diagnostics.on_message(handle, message)
        elif isinstance(message, messages.Stopping):
            handle.reason = message.reason
            if message.draining and handle.state != WorkerState.EXITED:
                handle.state = WorkerState.DRAINING
            if message.forced > 0:
                handle.forced_connections = message.forced

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
        handle.state = WorkerState.EXITED
        handle.cancel_watchdog()
        self.slots.handles.discard(handle)
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
                expected = bool(handle.retire_reason) or previous_state == WorkerState.DRAINING
                self._log_exit(handle, now, expected=expected)
        finally:
            try:
                self.events.record("exit", handle.exit_summary(now), handle.slot, handle.pid)
                self.emit("exit", handle)
            finally:
                self.stop_control.check_finished()

    # ------------------------------------------------------------ message handlers

    def _on_ready(self, handle: WorkerHandle) -> None:
        if handle.state != WorkerState.STARTING:
            return
        now = self.clock()
        handle.state = WorkerState.READY
        handle.ready_at = now
        handle.last_heartbeat_at = now
        self.ever_ready = True
        self.watchdog.arm_heartbeat(handle)
        if handle.ready_future is not None and not handle.ready_future.done():
            handle.ready_future.set_result(True)
        if self.stopping:
            self.slots.tell_stop(handle, "cluster stopping")
        all_ready = self.state == ClusterState.STARTING and self.slots.all_current_ready()
        if all_ready:
            self.state = ClusterState.RUNNING
            sdnotify.ready(f"serving with {plural(self.desired, 'worker')}")
        # State and actions above, log lines and callbacks below (a failing log loses nothing).
        logger.info("%s ready in %.2f s", handle.name, now - handle.started_at)
        self.events.record("ready", f"{handle.name} ready in {now - handle.started_at:.2f} s", handle.slot, handle.pid)
        self.emit("listening", handle)
        if all_ready:
            logger.info("all %s ready", plural(self.desired, "worker"))

    def _on_heartbeat(self, handle: WorkerHandle, message: messages.Heartbeat) -> None:
        handle.heartbeat = message.payload()
        handle.last_heartbeat_at = self.clock()
        if handle.state in (WorkerState.READY, WorkerState.DRAINING) and not handle.hung:
            self.watchdog.arm_heartbeat(handle)
        if handle.state == WorkerState.READY and not handle.retire_reason:
            self._maybe_recycle(handle)

    def _maybe_recycle(self, handle: WorkerHandle, reason: str | None = None) -> None:
        reason = reason or recycle_reason(handle, self.config, self.clock())
        if reason is None or self.state != ClusterState.RUNNING or self.op_lock.locked():
            return
        slot = self.slots.get(handle.slot)
        if slot is None or slot.current is not handle or slot.candidate is not None:
            return
        self.events.record("recycle", f"recycling {handle.name}: {reason}", handle.slot, handle.pid)
        self.background(self.recycle(slot, reason))

    # ------------------------------------------------------------ exits

    def _on_current_exit(self, slot: Slot, handle: WorkerHandle, now: float) -> None:
        self.slots.count_death(slot, handle, now)
        if not self.ever_ready and handle.ready_at is None and self._give_up_if_hopeless(slot, handle):
            return
        try:
            self._log_exit(handle, now, expected=False)
            self.slots.summarise_crashes(slot, now)
        finally:
            # A slot with a candidate already has a replacement starting (reload / restart).
            if not (slot.retiring or slot.index >= self.desired or slot.candidate is not None):
                self.slots.schedule_respawn(slot)

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

    # ------------------------------------------------------------ the verbs: stop

    def begin_stop(self, *, force: bool = False, code: int | None = None, quiet: bool = False) -> None:
        """Graceful stop (TERM, first Ctrl-C): every worker drains within --graceful-timeout,
        then is killed; ``force`` (second Ctrl-C): kill every worker now (exit code FORCED).
        ``code``: the exit code a startup failure decided. Returns at once; :meth:`stop` waits."""
        if not self.stop_control.active:
            self.state = ClusterState.STOPPING  # first: /readyz answers 503 whatever raises below
        if force:
            self.stop_control.force()
        else:
            self.stop_control.begin(code=code, quiet=quiet)

    async def stop(self, force: bool = False) -> None:
        """:meth:`begin_stop`, then wait until every worker is reaped."""
        self.begin_stop(force=force)
        if self.stop_control.done is not None:
            await asyncio.shield(self.stop_control.done)

    def _on_stopped(self) -> None:
        self.state = ClusterState.STOPPED

    # ------------------------------------------------------------ the verbs: replace

    async def restart(self, index: int) -> RestartResult:
        """Replace slot ``index``'s worker, readiness-gated (``asynccluster restart``)."""
        async with self.op_lock:
            slot = self.slots.get(index)
            if self.stopping:
                result = RestartResult(False, index, error=STOPPING, message=STOPPING)
            elif slot is None or slot.retiring:
                known = ", ".join(str(i) for i in sorted(self.slots)) or "none"
                error = f"no worker slot {index} (slots: {known})"
                result = RestartResult(False, index, error=error, message=error)
            else:
                result = await self.slots.replace(slot, "restart requested")
        return self.events.result("restart", result)

    async def recycle(self, slot: Slot, reason: str) -> None:
        """Replace a worker that reached a limit (--max-requests, --max-lifetime, --max-memory);
        one recycle at a time cluster-wide: none starts while another verb holds the lock."""
        if self.op_lock.locked():
            return
        async with self.op_lock:
            if slot.current is None or self.stopping:
                return
            logger.info("recycling %s: %s", slot.current.name, reason)
            await self.slots.replace(slot, f"recycle ({reason})")

    async def reload(self) -> ReloadResult:
        """Rolling reload (HUP, ``asynccluster reload``): every slot's worker replaced, batch by
        batch, committed only once all new ones are ready; else rolled back."""
        # A reload asked for while another one still waits for the lock joins it: both want the
        # code on disk now, and the waiting one will read it (30 SIGHUPs in 0.6 s ran 30 rolling
        # reloads one after another; found by the attack on issue 10). gunicorn caps its signal
        # queue at 5 for the same reason.
        if self._queued_reload is not None:
            return await asyncio.shield(self._queued_reload)
        queued = self._queued_reload = asyncio.get_running_loop().create_future()
        try:
            self.events.record("reload", "reload started")
            async with self.op_lock:
                self._queued_reload = None  # running: a later request wants newer code than this reads
                self.reload_generation += 1
                result = self.events.result("reload", await self._reload_locked())
        except BaseException as exc:
            if self._queued_reload is queued:
                self._queued_reload = None
            if isinstance(exc, Exception):
                queued.set_exception(exc)  # the joiners see the same error
                queued.exception()  # retrieved: no "never retrieved" warning when nobody joined
            else:
                queued.cancel()  # cancelled (the master is stopping): so are the joiners
            raise
        queued.set_result(result)
        return result

    async def _reload_locked(self) -> ReloadResult:
        started = self.clock()
        slots = self.slots.active()
        total = len(slots)
        if self.stopping:
            return ReloadResult(False, 0, total, 0.0, STOPPING, STOPPING)
        previous = self.state
        self.state = ClusterState.RELOADING
        sdnotify.reloading()
        logger.info("reloading %d workers, %d at a time", total, max(1, self.config.reload_batch))
        try:
            error = await self.preload.stage() if self.preload is not None else ""  # issue 16
            if not error:
                error = await self.slots.start_all_candidates(slots, self.config.reload_batch)
        finally:
            if not self.stopping:
                running = previous != ClusterState.STARTING or self.slots.all_current_ready()
                self.state = ClusterState.RUNNING if running else ClusterState.STARTING
        seconds = round(self.clock() - started, 3)
        if not self.stopping:
            sdnotify.ready("reload rolled back" if error else f"reloaded {total} workers")
        if error:
            for slot in slots:
                self.slots.abort(slot, "reload rolled back")
            if self.preload is not None:
                self.preload.rollback()  # the old code's helper stays
            message = f"reload aborted: {headline(error)}; rolled back, the old workers keep serving"
            logger.error("%s", message)
            return ReloadResult(False, 0, total, seconds, error, message)
        pids = {slot.index: list(self.slots.commit(slot, "reload")) for slot in slots}
        if self.preload is not None:
            self.preload.commit()  # respawns fork the new code; the old helper leaves with its workers
        # The figure is the new workers' readiness: the old ones drain after it (their exits come later).
        ready_in = f"new workers ready in {seconds:.1f} s, then the old ones drain"
        message = f"reloaded {total}/{total} workers, 0 failures: {ready_in}"
        logger.info("%s", message)
        return ReloadResult(True, total, total, seconds, "", message, pids)

    # ------------------------------------------------------------ the verbs: scale

    async def scale(self, count: int) -> ScaleResult:
        """``count`` workers (``asynccluster scale N``); refused below 1 or above --max-workers."""
        async with self.op_lock:
            return await self._scale_locked(count)

    async def scale_by(self, delta: int) -> ScaleResult:
        """``delta`` workers more (or fewer) than the count when the verb runs, not when it was
        asked for (TTIN/TTOU, ``scale +N``): two concurrent ``+1`` make two more."""
        async with self.op_lock:
            return await self._scale_locked(self.desired + delta)

    async def _scale_locked(self, count: int) -> ScaleResult:
        before = self.desired
        started = self.clock()
        refusal = scale_refusal(count, limit=self.max_workers)
        if refusal is not None:
            logger.warning("%s", refusal)
            return ScaleResult(False, before, before, error=refusal, message=refusal)
        if self.stopping:
            return ScaleResult(False, before, before, error=STOPPING, message=STOPPING)
        if count > before:
            result = await self._scale_up(before, count)
        elif count < before:
            result = await self._scale_down(before, count)
        else:
            result = ScaleResult(True, before, count, message=f"already {count} workers")
        result = dataclasses.replace(result, seconds=round(self.clock() - started, 3))
        self.events.result("scale", result)  # the dashboard's timeline (issue 12)
        logger.info("%s", result.message)
        return result

    async def _scale_up(self, before: int, count: int) -> ScaleResult:
        """Add slots before..count-1; if any cannot be bound or its worker is not ready, every
        added slot is retired again (issue 9: a scale that cannot complete rolls back)."""
        error = await self.slots.grow(count)
        if not error:
            return ScaleResult(True, before, count, message=f"scaled {before} -> {count} workers")
        if not self.stopping:
            await self.slots.shrink(before)
        message = f"scale to {count} failed: {headline(error)}; rolled back to {before} workers"
        logger.error("%s", message)
        return ScaleResult(False, before, before, error=error, message=message)

    async def _scale_down(self, before: int, count: int) -> ScaleResult:
        methods = await self.slots.shrink(count)
        shown = ", ".join(dict.fromkeys(methods)) or "none"
        return ScaleResult(True, before, count, steering=methods, message=f"scaled {before} -> {count} workers "
                           f"(queued connections kept by: {shown})")  # fmt: skip

    # ------------------------------------------------------------ the verbs: logs; the views

    def reopen_logs(self) -> None:
        """USR1 (logrotate): reopen the master's log files and ask every worker to do the same."""
        count = logs.reopen_log_files()
        for handle in self.slots.handles:
            handle.send(messages.ReopenLogs())
        logger.info("reopened %s in the master; asked %s to do the same", plural(count, "log file"),
                    plural(len(self.slots.handles), "worker"))  # fmt: skip

    def status_view(self) -> ClusterStatus:
        return cluster_status(
            self.config, self.slots, state=self.state, ready=self.ready, started_at=self.started_at,
            now=self.clock(), error_groups=self.diagnostics.errors.counts(),
            preload=self.preload.info() if self.preload is not None else None,
        )  # fmt: skip

    def status(self) -> dict[str, Any]:
        """The status as the control socket and /status send it (contracts/status.py)."""
        return self.status_view().to_dict()
