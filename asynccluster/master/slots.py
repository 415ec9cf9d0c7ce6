"""The slot table: each slot's worker incarnations, their spawning and respawn bookkeeping.

A *slot* (0..N-1) is a stable position in the cluster with its own listening socket. It has
one *current* worker, maybe a *candidate* (a new incarnation on the same socket, during a
replace) and any number of incarnations told to drain that have not exited yet (``handles``
holds every incarnation not yet reaped). The table is owned by the Supervisor
(supervisor.py), which decides *when* to spawn, replace, respawn or retire; this module knows
*how*: starting an incarnation, the respawn backoff and crash accounting (issue 3, issue 9),
committing or aborting a candidate, removing a slot without resetting its accept queue
(issue 4). It never imports the supervisor: what it must report goes through the
``WorkerEvents`` it is given, and whether the cluster is stopping through a callable.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from asynccluster import exitcodes
from asynccluster.config import Config
from asynccluster.contracts import messages
from asynccluster.contracts.results import RestartResult
from asynccluster.contracts.states import SlotState, WorkerState, check_slot_transition
from asynccluster.master import steering
from asynccluster.master.policy import Timing, draw_recycle_limits, recent, respawn_decision, shutdown_budget
from asynccluster.master.process import Spawner, SpawnRequest, WorkerEvents, WorkerHandle, describe_exit
from asynccluster.master.watchdog import Watchdog
from asynccluster.observe.events import EventRing
from asynccluster.sockets import BindError, Listeners

logger = logging.getLogger("asynccluster.master")

STOPPING = "the cluster is stopping"


@dataclass(eq=False)
class Slot:
    """One slot's incarnations and its respawn bookkeeping (times are ``clock()`` seconds)."""

    index: int
    current: WorkerHandle | None = None
    candidate: WorkerHandle | None = None
    failures: int = 0  # consecutive deaths before ready (backoff)
    crashes: list[float] = field(default_factory=list)  # clock() of unplanned exits in the budget window
    summarised_at: float | None = None  # when the last "crashed N times" summary was logged
    restarts: int = 0
    next_incarnation: int = 1
    respawn_timer: asyncio.TimerHandle | None = None
    state: SlotState = SlotState.ACTIVE
    last_exit: str = ""

    @property
    def retiring(self) -> bool:
        """Being removed by a scale down: never respawned, never replaced."""
        return self.state is SlotState.RETIRING

    def retire(self) -> None:
        self.state = check_slot_transition(self.state, SlotState.RETIRING)
        self.cancel_respawn()

    def cancel_respawn(self) -> None:
        if self.respawn_timer is not None:
            self.respawn_timer.cancel()
            self.respawn_timer = None

    def live(self) -> list[WorkerHandle]:
        """Its current worker and candidate, those not yet exited."""
        return [handle for handle in (self.current, self.candidate) if handle is not None and handle.alive]


class SlotTable(Mapping[int, Slot]):
    """Slot index -> :class:`Slot` (a read-only mapping; ``add``/``drop`` change it), the live
    incarnations (``handles``) and the desired worker count."""

    def __init__(
        self,
        config: Config,
        spawner: Spawner,
        listeners: Listeners | None,
        *,
        desired: int,
        events_sink: WorkerEvents,
        stopping: Callable[[], bool],
        watchdog: Watchdog,
        events: EventRing,
        timing: Timing,
        clock: Callable[[], float],
        rng: random.Random,
        loop: Callable[[], asyncio.AbstractEventLoop],
    ) -> None:
        self.config = config
        self.spawner = spawner
        self.listeners = listeners
        self.desired = desired
        self.handles: set[WorkerHandle] = set()  # every incarnation not yet exited
        self._slots: dict[int, Slot] = {}
        self._sink = events_sink
        self._stopping = stopping
        self._watchdog = watchdog
        self._events = events
        self._timing = timing
        self._clock = clock
        self._rng = rng
        self._loop = loop

    # ------------------------------------------------------------ the mapping

    def __getitem__(self, index: int) -> Slot:
        return self._slots[index]

    def __iter__(self) -> Iterator[int]:
        return iter(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def add(self, index: int) -> Slot:
        slot = self._slots[index] = Slot(index)
        return slot

    def drop(self, index: int) -> None:
        self._slots.pop(index, None)

    def active(self) -> list[Slot]:
        """The slots not being retired, by index."""
        return [slot for _, slot in sorted(self._slots.items()) if not slot.retiring]

    # ------------------------------------------------------------ spawning

    def spawn(self, slot: Slot) -> WorkerHandle:
        """Start a new incarnation of ``slot`` on the slot's socket (the caller makes it the
        slot's current worker or its candidate). A failure to start (out of descriptors or
        memory) is reported as an exit on the next loop turn, like any worker death."""
        handle = WorkerHandle(slot=slot.index, incarnation=slot.next_incarnation, started_at=self._clock())
        slot.next_incarnation += 1
        handle.max_requests, handle.max_lifetime = draw_recycle_limits(self.config, self._rng)
        loop = self._loop()
        handle.ready_future = loop.create_future()
        handle.exited_future = loop.create_future()
        sock = self.listeners.socket_for(slot.index) if self.listeners is not None else None
        request = SpawnRequest(
            self.config,
            slot.index,
            handle.incarnation,
            sock,
            heartbeat_interval=self._timing.heartbeat_interval,
            shutdown_budget=shutdown_budget(self.config, self._timing),
            max_requests=handle.max_requests,
        )
        self.handles.add(handle)
        try:
            handle.process = self.spawner.spawn(request, handle, self._sink)
        except Exception as exc:  # e.g. out of file descriptors or memory
            logger.error("could not start a worker for slot %d: %s", slot.index, exc)
            handle.reason = f"could not start: {exc}"
            loop.call_soon(self._sink.on_exit, handle, exitcodes.ERROR)
            return handle
        handle.pid = handle.process.pid
        self._events.record("spawn", f"{handle.name} started", slot.index, handle.pid)
        self._watchdog.arm_ready(handle)
        logger.debug("started %s", handle.name)
        return handle

    def start(self, slot: Slot) -> WorkerHandle:
        """A new current worker for ``slot`` (at start, a scale up, a respawn)."""
        slot.current = self.spawn(slot)
        return slot.current

    def start_candidate(self, slot: Slot) -> WorkerHandle:
        """A new incarnation beside the current one: a replace begins (reload, restart, recycle)."""
        slot.candidate = self.spawn(slot)
        return slot.candidate

    def commit(self, slot: Slot, reason: str) -> tuple[int, int]:
        """The candidate becomes the slot's worker; the old one drains. Returns (old, new) pid."""
        new = slot.candidate
        assert new is not None
        old = slot.current
        slot.candidate = None
        slot.current = new
        slot.restarts += 1
        slot.failures = 0
        slot.cancel_respawn()  # the old one had died meanwhile: nothing to respawn
        if old is not None:
            self.tell_stop(old, reason)
        return (old.pid if old is not None else 0), new.pid

    def abort(self, slot: Slot, reason: str) -> None:
        """Drop the candidate; the old worker keeps serving (or the slot is respawned if it has none)."""
        candidate = slot.candidate
        slot.candidate = None
        if candidate is not None and candidate.alive:
            self.tell_stop(candidate, reason)
        if slot.current is None and not self._stopping():
            self.schedule_respawn(slot)

    async def replace(self, slot: Slot, reason: str) -> RestartResult:
        """Replace ``slot``'s worker, readiness-gated (restart, recycle): the old one drains
        only once the candidate is ready; if it never is, the old one keeps serving."""
        started = self._clock()
        candidate = self.start_candidate(slot)
        if await wait_ready(candidate) and not self._stopping() and slot.candidate is candidate:
            old_pid, new_pid = self.commit(slot, reason)
            seconds = self._clock() - started
            message = f"replaced worker {slot.index} (pid {old_pid} -> {new_pid}) in {seconds:.1f} s: {reason}"
            logger.info("%s", message)
            return RestartResult(True, slot.index, old_pid, new_pid, round(seconds, 3), message=message)
        error = failure_reason(candidate)
        self.abort(slot, f"{reason} aborted")
        old_pid = slot.current.pid if slot.current is not None else 0
        first = headline(error)
        message = f"worker {slot.index} was not replaced ({reason}): {first}; pid {old_pid} keeps serving"
        logger.error("%s", message)
        return RestartResult(False, slot.index, old_pid, 0, round(self._clock() - started, 3), error, message)

    async def start_all_candidates(self, slots: list[Slot], batch: int) -> str:
        """A candidate for each of ``slots``, ``batch`` at a time (--reload-batch), each batch
        ready before the next starts; "" when all are ready, else why not (nothing committed)."""
        size = max(1, batch)
        for start in range(0, len(slots), size):
            candidates = [self.start_candidate(slot) for slot in slots[start : start + size]]
            results = await asyncio.gather(*(wait_ready(candidate) for candidate in candidates))
            if self._stopping():
                return STOPPING
            for candidate, ok in zip(candidates, results, strict=True):
                if not ok:
                    return failure_reason(candidate)
        for slot in slots:
            if slot.candidate is None:  # became ready, then died before the commit
                return f"the new worker {slot.index} exited during the reload ({slot.last_exit})"
        return ""

    async def grow(self, count: int) -> str:
        """Add slots up to ``count`` and wait for their workers; "" when all are ready, else
        why not (a bind error stops the adding; the caller shrinks back)."""
        added: list[WorkerHandle] = []
        before, self.desired = self.desired, count
        for index in range(before, count):
            slot = self.add(index)
            try:
                added.append(self.start(slot))
            except BindError as exc:
                self.drop(index)
                self.desired = index
                return str(exc)
        results = await asyncio.gather(*(wait_ready(handle) for handle in added))
        return "; ".join(failure_reason(h) for h, ok in zip(added, results, strict=True) if not ok)

    async def shrink(self, count: int) -> list[str]:
        """Retire the slots from the highest down to ``count``; how each one's queue was kept."""
        before, self.desired = self.desired, count
        methods = []
        for index in range(before - 1, count - 1, -1):
            slot = self.get(index)
            if slot is not None:
                methods.append(await self.retire(slot))
        return methods

    # ------------------------------------------------------------ telling workers

    def tell_stop(self, handle: WorkerHandle, reason: str, timeout: float | None = None) -> None:
        """Ask a worker to drain and exit (within ``timeout`` s, default --graceful-timeout);
        a worker still starting has nothing to drain and gets SIGTERM."""
        handle.retire_reason = handle.retire_reason or reason
        if not handle.alive:
            return
        if handle.state == WorkerState.STARTING:
            handle.signal(signal.SIGTERM)
            return
        already_draining = handle.state == WorkerState.DRAINING
        handle.state = WorkerState.DRAINING
        grace = self.config.graceful_timeout if timeout is None else timeout
        sent = handle.send(messages.Stop(timeout=grace, reason=reason))
        if not sent and not already_draining:
            # No channel (it closed it): SIGTERM also means "drain and exit" to a worker. One
            # that is already draining closed its channel on its way out: leave it be.
            handle.signal(signal.SIGTERM)

    # ------------------------------------------------------------ respawning

    def schedule_respawn(self, slot: Slot) -> None:
        """Respawn ``slot``'s worker now or after a backoff (policy.respawn_decision, issue 9)."""
        if self._stopping() or slot.retiring or slot.index >= self.desired or slot.respawn_timer is not None:
            return
        decision = respawn_decision(
            served=slot.failures == 0,
            failures=slot.failures,
            crashes=len(slot.crashes),
            others_live=self.others_live(slot),
            timing=self._timing,
        )
        self._events.record("respawn", f"respawn in {decision.delay:.1f} s {decision.why}".strip(), slot.index)
        if slot.failures == 0 and not self.any_ready():
            # A worker that served just died and none is ready now: other slots must not sit
            # out long backoffs meanwhile (a poison request every second kept a 16 s backoff
            # running while the cluster was dark: attack run on issue 9).
            self._cut_backoffs()
        if decision.delay <= 0:
            self._respawn(slot)
            return
        slot.respawn_timer = self._loop().call_later(decision.delay, self._respawn, slot)
        logger.warning("respawning worker %d in %.1f s (%s)", slot.index, decision.delay, decision.why)

    def _cut_backoffs(self) -> None:
        """No worker is ready: every slot waiting longer than the floor respawns at the floor."""
        floor = self._timing.floor_delay
        loop = self._loop()
        latest = loop.time() + floor
        for other in self._slots.values():
            timer = other.respawn_timer
            if timer is not None and timer.when() > latest:
                timer.cancel()
                other.respawn_timer = loop.call_later(floor, self._respawn, other)
                logger.warning("respawning worker %d in %.1f s (no worker is ready: backoff cut)", other.index, floor)

    def _respawn(self, slot: Slot) -> None:
        slot.respawn_timer = None
        if self._stopping() or slot.retiring or slot.current is not None or slot.candidate is not None:
            return
        if self._slots.get(slot.index) is not slot:
            return
        slot.restarts += 1
        self.start(slot)

    def waiting(self) -> list[tuple[Slot, float]]:
        """The active slots with no live worker that wait for a respawn timer, with the
        seconds left (the status shows them: a backoff is not a missing slot)."""
        now = self._loop().time()
        return [
            (slot, max(0.0, slot.respawn_timer.when() - now))
            for slot in self._slots.values()
            if slot.respawn_timer is not None and not slot.retiring and not slot.live()
        ]

    def cancel_respawns(self) -> None:
        for slot in self._slots.values():
            slot.cancel_respawn()

    def count_death(self, slot: Slot, handle: WorkerHandle, now: float) -> None:
        """Account for the death of ``slot``'s current worker: a worker that was ready once
        died of a crash, not of a crash loop (issue 9); the budget window counts both."""
        slot.failures = 0 if handle.ready_at is not None else slot.failures + 1
        slot.crashes = [*recent(slot.crashes, now, self._timing.budget_window), now]

    def summarise_crashes(self, slot: Slot, now: float) -> None:
        """One line per slot and window once its crashes pile up: the poison-request pattern
        (a request that kills whichever worker serves it) is visible without counting lines."""
        count, window = len(slot.crashes), self._timing.budget_window
        if count < self._timing.crash_summary:
            return
        if slot.summarised_at is not None and now - slot.summarised_at < window:
            return
        slot.summarised_at = now
        if slot.failures:  # its last worker died before it was ready: no request was involved
            logger.error("worker slot %d failed to start %d times in %.0f s (the app's import or startup "
                         "fails; see the error above); last exit: %s",
                         slot.index, count, window, slot.last_exit)  # fmt: skip
            return
        logger.error("worker slot %d crashed %d times in %.0f s (a request that crashes workers?); last exit: %s",
                     slot.index, count, window, slot.last_exit)  # fmt: skip

    # ------------------------------------------------------------ questions

    def _workers(self, exclude: Slot | None = None) -> Iterator[WorkerHandle]:
        """The live current workers and candidates of the active slots (but ``exclude``)."""
        for slot in self._slots.values():
            if slot is not exclude and not slot.retiring:
                yield from slot.live()

    def any_ready(self) -> bool:
        return any(handle.state == WorkerState.READY for handle in self._workers())

    def others_live(self, slot: Slot) -> bool:
        """Some other slot has a worker ready or starting (the floor of issue 9)."""
        return any(handle.state in (WorkerState.STARTING, WorkerState.READY) for handle in self._workers(slot))

    def all_current_ready(self) -> bool:
        return all(
            slot.current is not None and slot.current.state == WorkerState.READY
            for slot in self._slots.values()
            if not slot.retiring
        )

    # ------------------------------------------------------------ removing a slot

    async def retire(self, slot: Slot) -> str:
        """Remove a slot without resetting what waits in its socket's accept queue (issue 4);
        returns how new connections were steered away ("cbpf", "tcp_migrate_req", ...).

        Steer new connections away from its socket, let its worker accept what is queued, then
        drain the worker, close the master's copy, and return the group to default hashing.
        """
        slot.retire()
        listeners = self.listeners
        sock = listeners.by_slot.get(slot.index) if listeners is not None else None
        method = "shared listener"
        if listeners is not None and sock is not None:
            method = await self._steer_and_empty(slot, listeners)
        handles = slot.live()
        for handle in handles:
            self.tell_stop(handle, "scale down")
        await asyncio.gather(*(asyncio.shield(h.exited_future) for h in handles if h.exited_future is not None))
        if listeners is not None and sock is not None:
            listeners.release(slot.index)
            steering.clear_steering(listeners.group)
        self.drop(slot.index)
        logger.info("removed worker slot %d (new connections steered away by: %s)", slot.index, method)
        return method

    async def _steer_and_empty(self, slot: Slot, listeners: Listeners) -> str:
        sock = listeners.by_slot[slot.index]
        method: str = steering.steer_away(list(listeners.group), sock)
        if method != "tcp_migrate_req" and slot.current is not None and slot.current.state == WorkerState.READY:
            # The worker still accepts: let it take everything already queued. (With
            # tcp_migrate_req the kernel hands the queue to the other sockets at close instead.)
            emptied = await steering.wait_queue_empty(sock, self.config.graceful_timeout, self._timing.queue_poll)
            if not emptied:
                logger.warning("worker slot %d: its accept queue did not empty in time", slot.index)
        return method


async def wait_ready(handle: WorkerHandle) -> bool:
    """True once ready; False if it exited or was killed first (the watchdog enforces
    --ready-timeout, so this always ends)."""
    assert handle.ready_future is not None
    return await asyncio.shield(handle.ready_future)


def headline(error: str) -> str:
    """The first line of ``error`` plus the location line an import error carries ("at
    file:line: code", importer.py): a reload onto a SyntaxError names its file and line as the
    start does (issue 16, newcomer). One line, for a verb's log line and message."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    if not lines:
        return ""
    where = next((line for line in lines[1:] if line.startswith("at ")), "")
    return f"{lines[0]} {where}" if where else lines[0]


def failure_reason(handle: WorkerHandle) -> str:
    """Why a new worker did not become ready, for a verb's ``error``."""
    reason = handle.reason or handle.retire_reason
    if not reason and handle.exitcode is not None:
        reason = f"exited with {describe_exit(handle.exitcode)}"
    return f"{handle.name}: {reason or 'not ready'}"
