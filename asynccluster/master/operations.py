"""Reload, restart, recycle and scale: everything that replaces or removes workers (issue 4).

All of them go through one path, :func:`replace`: start a *candidate* incarnation of the
slot on the slot's own socket (so it shares the accept queue), wait until it says ``ready``
(lifespan done, accepting) within --ready-timeout, and only then tell the old incarnation to
drain. A candidate that fails is drained or gone; the old worker never stopped serving.

A rolling reload keeps every old worker serving until all candidates are ready, batch by
batch (``--reload-batch``), and commits only then: so when the new code cannot start, the
reload is rolled back to processes that really run the old code (a re-spawn would import
the broken code again), and no request meets a missing worker.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asynccluster.master import sdnotify
from asynccluster.master.process import WorkerHandle, describe_exit

if TYPE_CHECKING:
    from asynccluster.master.supervisor import Slot, Supervisor

logger = logging.getLogger("asynccluster.master")


@dataclass
class ReloadResult:
    ok: bool
    replaced: int
    total: int
    seconds: float
    error: str = ""
    message: str = ""
    pids: dict[int, list[int]] = field(default_factory=dict)  # slot -> [old pid, new pid]


@dataclass
class RestartResult:
    ok: bool
    slot: int
    old_pid: int = 0
    new_pid: int = 0
    seconds: float = 0.0
    error: str = ""
    message: str = ""


@dataclass
class ScaleResult:
    ok: bool
    before: int
    after: int
    seconds: float = 0.0
    steering: list[str] = field(default_factory=list)  # per removed slot: "cbpf", "tcp_migrate_req", ...
    error: str = ""
    message: str = ""


# ---------------------------------------------------------------- the replace path


def start_candidate(supervisor: Supervisor, slot: Slot) -> WorkerHandle:
    slot.candidate = supervisor.spawn(slot)
    return slot.candidate


async def wait_ready(handle: WorkerHandle) -> bool:
    """True once ready; False if it exited or was killed first (the watchdog enforces
    --ready-timeout, so this always ends)."""
    assert handle.ready_future is not None
    return await asyncio.shield(handle.ready_future)


def commit(supervisor: Supervisor, slot: Slot, reason: str) -> tuple[int, int]:
    """The candidate becomes the slot's worker; the old one drains. Returns (old, new) pid."""
    new = slot.candidate
    assert new is not None
    old = slot.current
    slot.candidate = None
    slot.current = new
    slot.restarts += 1
    slot.failures = 0
    if slot.respawn_timer is not None:  # the old one had died meanwhile: nothing to respawn
        slot.respawn_timer.cancel()
        slot.respawn_timer = None
    if old is not None:
        supervisor.tell_stop(old, reason)
    return (old.pid if old is not None else 0), new.pid


def abort(supervisor: Supervisor, slot: Slot, reason: str) -> None:
    """Drop the candidate; the old worker keeps serving (or the slot is respawned if it has none)."""
    candidate = slot.candidate
    slot.candidate = None
    if candidate is not None and candidate.alive:
        supervisor.tell_stop(candidate, reason)
    if slot.current is None and not supervisor.stopping:
        supervisor.schedule_respawn(slot)


def failure_reason(handle: WorkerHandle) -> str:
    reason = handle.reason or handle.retire_reason
    if not reason and handle.exitcode is not None:
        reason = f"exited with {describe_exit(handle.exitcode)}"
    return f"{handle.name}: {reason or 'not ready'}"


async def replace(supervisor: Supervisor, slot: Slot, reason: str) -> RestartResult:
    """Replace one slot's worker, readiness-gated (restart, recycle)."""
    started = supervisor.clock()
    candidate = start_candidate(supervisor, slot)
    if await wait_ready(candidate) and not supervisor.stopping and slot.candidate is candidate:
        old_pid, new_pid = commit(supervisor, slot, reason)
        seconds = supervisor.clock() - started
        message = f"replaced worker {slot.index} (pid {old_pid} -> {new_pid}) in {seconds:.1f} s: {reason}"
        logger.info("%s", message)
        return RestartResult(True, slot.index, old_pid, new_pid, round(seconds, 3), message=message)
    error = failure_reason(candidate)
    abort(supervisor, slot, f"{reason} aborted")
    old_pid = slot.current.pid if slot.current is not None else 0
    message = f"worker {slot.index} was not replaced ({reason}): {error.splitlines()[0]}; pid {old_pid} keeps serving"
    logger.error("%s", message)
    return RestartResult(False, slot.index, old_pid, 0, round(supervisor.clock() - started, 3), error, message)


# ---------------------------------------------------------------- operations


async def restart(supervisor: Supervisor, index: int) -> RestartResult:
    async with supervisor.op_lock:
        slot = supervisor.slots.get(index)
        if supervisor.stopping:
            return RestartResult(False, index, error="the cluster is stopping", message="the cluster is stopping")
        if slot is None or slot.retiring:
            known = ", ".join(str(i) for i in sorted(supervisor.slots)) or "none"
            error = f"no worker slot {index} (slots: {known})"
            return RestartResult(False, index, error=error, message=error)
        return await replace(supervisor, slot, "restart requested")


async def recycle(supervisor: Supervisor, slot: Slot, reason: str) -> None:
    """One recycle at a time cluster-wide: the caller checked the lock was free."""
    if supervisor.op_lock.locked():
        return
    async with supervisor.op_lock:
        if slot.current is None or supervisor.stopping:
            return
        logger.info("recycling %s: %s", slot.current.name, reason)
        await replace(supervisor, slot, f"recycle ({reason})")


def batches(items: list[Slot], size: int) -> list[list[Slot]]:
    size = max(1, size)
    return [items[start : start + size] for start in range(0, len(items), size)]


async def reload(supervisor: Supervisor) -> ReloadResult:
    async with supervisor.op_lock:
        started = supervisor.clock()
        slots = [slot for index, slot in sorted(supervisor.slots.items()) if not slot.retiring]
        total = len(slots)
        if supervisor.stopping:
            return ReloadResult(False, 0, total, 0.0, "the cluster is stopping", "the cluster is stopping")
        previous_state = supervisor.state
        supervisor.state = "reloading"
        sdnotify.reloading()
        logger.info("reloading %d workers, %d at a time", total, max(1, supervisor.config.reload_batch))
        try:
            error = await start_all_candidates(supervisor, slots)
        finally:
            if not supervisor.stopping:
                supervisor.state = "running" if previous_state != "starting" else previous_state
        seconds = round(supervisor.clock() - started, 3)
        if not supervisor.stopping:
            sdnotify.ready("reload rolled back" if error else f"reloaded {total} workers")
        if error:
            for slot in slots:
                abort(supervisor, slot, "reload rolled back")
            message = f"reload aborted: {error.splitlines()[0]}; rolled back, the old workers keep serving"
            logger.error("%s", message)
            return ReloadResult(False, 0, total, seconds, error, message)
        pids = {slot.index: list(commit(supervisor, slot, "reload")) for slot in slots}
        message = f"reloaded {total}/{total} workers in {seconds:.1f} s, 0 failures"
        logger.info("%s", message)
        return ReloadResult(True, total, total, seconds, "", message, pids)


async def start_all_candidates(supervisor: Supervisor, slots: list[Slot]) -> str:
    """Start candidates batch by batch; "" when all are ready, else why not."""
    for batch in batches(slots, supervisor.config.reload_batch):
        candidates = [start_candidate(supervisor, slot) for slot in batch]
        results = await asyncio.gather(*(wait_ready(candidate) for candidate in candidates))
        if supervisor.stopping:
            return "the cluster is stopping"
        for candidate, ok in zip(candidates, results, strict=True):
            if not ok:
                return failure_reason(candidate)
    for slot in slots:
        if slot.candidate is None:  # became ready, then died before the commit
            return f"the new worker {slot.index} exited during the reload ({slot.last_exit})"
    return ""


# ---------------------------------------------------------------- scaling


async def scale(supervisor: Supervisor, count: int) -> ScaleResult:
    async with supervisor.op_lock:
        return await scale_locked(supervisor, count)


async def scale_by(supervisor: Supervisor, delta: int) -> ScaleResult:
    """TTIN/TTOU: relative to the count when the operation runs, not when the signal came."""
    async with supervisor.op_lock:
        return await scale_locked(supervisor, supervisor.desired + delta)


async def scale_locked(supervisor: Supervisor, count: int) -> ScaleResult:
    before = supervisor.desired
    started = supervisor.clock()
    if count < 1:
        error = f"cannot scale to {count}: a cluster has at least 1 worker (use stop)"
        logger.warning("%s", error)
        return ScaleResult(False, before, before, error=error, message=error)
    if count > supervisor.max_workers:
        error = (
            f"cannot scale to {count} workers: the limit is {supervisor.max_workers} "
            "(--max-workers; 0 means 4 x usable CPUs, at least 16)"
        )
        logger.warning("%s", error)
        return ScaleResult(False, before, before, error=error, message=error)
    if supervisor.stopping:
        return ScaleResult(False, before, before, error="the cluster is stopping", message="the cluster is stopping")
    if count > before:
        result = await scale_up(supervisor, before, count)
    elif count < before:
        result = await scale_down(supervisor, before, count)
    else:
        result = ScaleResult(True, before, count, message=f"already {count} workers")
    result.seconds = round(supervisor.clock() - started, 3)
    supervisor.events.result("scale", result)  # the dashboard's timeline (issue 12)
    logger.info("%s", result.message)
    return result


async def scale_up(supervisor: Supervisor, before: int, count: int) -> ScaleResult:
    """Add slots before..count-1; if any cannot be bound or its worker is not ready, every
    added slot is retired again (issue 9: a scale that cannot complete rolls back)."""
    from asynccluster.master.supervisor import Slot
    from asynccluster.sockets import BindError

    added: list[WorkerHandle] = []
    supervisor.desired = count
    error = ""
    for index in range(before, count):
        slot = supervisor.slots[index] = Slot(index)
        try:
            slot.current = supervisor.spawn(slot)
        except BindError as exc:
            del supervisor.slots[index]
            supervisor.desired = index
            error = str(exc)
            break
        added.append(slot.current)
    if not error:
        results = await asyncio.gather(*(wait_ready(handle) for handle in added))
        error = "; ".join(failure_reason(h) for h, ok in zip(added, results, strict=True) if not ok)
    if not error:
        return ScaleResult(True, before, count, message=f"scaled {before} -> {count} workers")
    if not supervisor.stopping:
        await scale_down(supervisor, supervisor.desired, before)
    first = error.splitlines()[0]
    message = f"scale to {count} failed: {first}; rolled back to {before} workers"
    logger.error("%s", message)
    return ScaleResult(False, before, before, error=error, message=message)


async def scale_down(supervisor: Supervisor, before: int, count: int) -> ScaleResult:
    supervisor.desired = count
    methods = []
    for index in range(before - 1, count - 1, -1):
        slot = supervisor.slots.get(index)
        if slot is not None:
            methods.append(await retire_slot(supervisor, slot))
    shown = ", ".join(dict.fromkeys(methods)) or "none"
    return ScaleResult(True, before, count, steering=methods, message=f"scaled {before} -> {count} workers "
                       f"(queued connections kept by: {shown})")  # fmt: skip


async def retire_slot(supervisor: Supervisor, slot: Slot) -> str:
    """Remove a slot without resetting what waits in its socket's accept queue (issue 4).

    Steer new connections away from its socket, let its worker accept what is queued, then
    drain the worker, close the master's copy, and return the group to default hashing.
    """
    slot.retiring = True
    if slot.respawn_timer is not None:
        slot.respawn_timer.cancel()
        slot.respawn_timer = None
    listeners = supervisor.listeners
    sock = listeners.by_slot.get(slot.index) if listeners is not None else None
    method = "shared listener" if sock is None else await steer_and_empty(supervisor, slot, sock)
    handles = [handle for handle in (slot.current, slot.candidate) if handle is not None and handle.alive]
    for handle in handles:
        supervisor.tell_stop(handle, "scale down")
    await asyncio.gather(*(asyncio.shield(h.exited_future) for h in handles if h.exited_future is not None))
    if listeners is not None and sock is not None:
        listeners.release(slot.index)
        clear_steering(listeners.group)
    supervisor.slots.pop(slot.index, None)
    logger.info("removed worker slot %d (new connections steered away by: %s)", slot.index, method)
    return method


async def steer_and_empty(supervisor: Supervisor, slot: Slot, sock: socket.socket) -> str:
    try:
        from asynccluster.master import steering
    except ImportError:
        return "none"
    assert supervisor.listeners is not None
    method: str = steering.steer_away(list(supervisor.listeners.group), sock)
    if method != "tcp_migrate_req" and slot.current is not None and slot.current.state == "ready":
        # The worker still accepts: let it take everything already queued. (With
        # tcp_migrate_req the kernel hands the queue to the other sockets at close instead.)
        emptied = await steering.wait_queue_empty(sock, supervisor.config.graceful_timeout,
                                                  supervisor.timing.queue_poll)  # fmt: skip
        if not emptied:
            logger.warning("worker slot %d: its accept queue did not empty in time", slot.index)
    return method


def clear_steering(group: list[Any]) -> None:
    try:
        from asynccluster.master import steering
    except ImportError:
        return
    steering.clear_steering(group)
