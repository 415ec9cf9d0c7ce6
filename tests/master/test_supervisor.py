"""The supervisor's logic against a fake spawner (no processes): DESIGN.md §5."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
from collections.abc import Callable
from typing import Any

import pytest

from asynccluster import exitcodes
from asynccluster.config import Config
from asynccluster.contracts.messages import Stop
from asynccluster.contracts.status import ClusterStatus
from asynccluster.master.policy import Timing
from asynccluster.master.signals import SignalRouter
from asynccluster.master.stopping import kill_delay
from asynccluster.master.supervisor import Supervisor
from asynccluster.observe.aggregate import totals
from asynccluster.observe.format import status_text
from tests.master.fakes import FakeProcess, FakeSpawner, fail_with

FAST = Timing(
    heartbeat_interval=0.0,
    backoff_base=0.01,
    backoff_cap=0.05,
    respawn_budget=3,
    budget_window=100.0,
    floor_delay=0.02,
    crash_summary=3,
    kill_grace=0.05,
    shutdown_cap=0.05,
    stacks_wait=0.5,
    stacks_quiet=0.01,
    startup_attempts=3,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(
    spawner: FakeSpawner, workers: int = 2, clock: FakeClock | None = None, timing: Timing = FAST, **settings: Any
) -> Supervisor:
    config = Config(app="tests.apps.basic:app", workers=workers, graceful_timeout=1.0, **settings)
    return Supervisor(config, spawner, None, timing=timing, clock=clock or FakeClock())


async def started(supervisor: Supervisor, spawner: FakeSpawner) -> asyncio.Task[int]:
    task = asyncio.create_task(supervisor.serve())
    await spawner.until(lambda: supervisor.state == "running")
    return task


async def stop(supervisor: Supervisor, task: asyncio.Task[int]) -> int:
    await supervisor.stop()
    return await asyncio.wait_for(task, 5)


async def turns_until(predicate: Callable[[], bool]) -> None:
    """Let the loop run other callbacks (zero-delay turns, no clock) until ``predicate()``;
    the caller bounds it with wait_for."""
    while not predicate():
        await asyncio.sleep(0)


async def turns(count: int) -> None:
    """Run ``count`` loop turns: every callback and task step that is ready gets to run."""
    for _ in range(count):
        await asyncio.sleep(0)


def current(supervisor: Supervisor, slot: int) -> FakeProcess:
    handle = supervisor.slots[slot].current
    assert handle is not None and handle.process is not None
    return handle.process  # type: ignore[return-value]


async def test_starts_the_desired_workers_and_stops_cleanly() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, workers=3)
    task = await started(supervisor, spawner)
    assert sorted(p.slot for p in spawner.live()) == [0, 1, 2]
    assert supervisor.ready
    status = supervisor.status()
    assert [w["state"] for w in status["workers"]] == ["ready"] * 3
    assert status["state"] == "running"
    assert await stop(supervisor, task) == exitcodes.OK
    assert all(isinstance(p.sent[-1], Stop) for p in spawner.processes)


async def test_a_crashed_worker_is_respawned_into_the_same_slot() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, workers=2)
    task = await started(supervisor, spawner)
    victim = current(supervisor, 1)
    victim.exit(-signal.SIGKILL)
    await spawner.until(lambda: len(spawner.processes) == 3 and supervisor.ready and supervisor.state == "running")
    replacement = spawner.processes[-1]
    assert replacement.slot == 1
    assert replacement.handle.incarnation == 2
    assert supervisor.slots[1].restarts == 1
    assert "signal SIGKILL" in supervisor.slots[1].last_exit
    assert current(supervisor, 0) is spawner.processes[0]  # the other slot is untouched
    await stop(supervisor, task)


async def test_a_worker_that_was_ready_is_replaced_at_once_however_young(caplog: Any) -> None:
    """Issue 9: kill -9 right after ready is a crash, not a crash loop: no backoff within the
    budget; then one summary line for the slot (the poison-request pattern)."""
    spawner = FakeSpawner()
    supervisor = make(spawner, workers=2)
    task = await started(supervisor, spawner)
    slot = supervisor.slots[0]
    for crashes in range(1, FAST.respawn_budget + 1):
        current(supervisor, 0).exit(-signal.SIGKILL)
        assert slot.respawn_timer is None and slot.current is not None  # a replacement already started
        await spawner.until(lambda n=crashes: len(spawner.processes) == n + 2 and supervisor.state == "running")
    assert slot.failures == 0
    summaries = [r.getMessage() for r in caplog.records if "crashed 3 times" in r.getMessage()]
    assert len(summaries) == 1 and "worker slot 0" in summaries[0] and "signal SIGKILL" in summaries[0]
    current(supervisor, 0).exit(-signal.SIGKILL)  # over the budget, another worker serves: back off
    assert slot.respawn_timer is not None
    await spawner.until(lambda: slot.current is not None and slot.current.state == "ready")
    await stop(supervisor, task)


async def test_never_ready_deaths_back_off_and_reset_once_a_worker_is_ready() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, workers=2, timing=dataclasses.replace(FAST, respawn_budget=10))
    task = await started(supervisor, spawner)
    slot = supervisor.slots[0]
    spawner.on_spawn = lambda p: p.later(p.exit, 1) if p.slot == 0 else p.later(p.ready)
    current(supervisor, 0).exit(-signal.SIGKILL)  # served: respawned at once, into a crash loop
    await spawner.until(lambda: slot.failures == 2 and slot.respawn_timer is not None)
    spawner.on_spawn = lambda p: p.later(p.ready)
    await spawner.until(lambda: slot.current is not None and slot.current.state == "ready")
    assert slot.failures == 2  # the count of the loop; reset by the next death of a ready worker
    current(supervisor, 0).exit(-signal.SIGKILL)
    assert slot.failures == 0 and slot.respawn_timer is None
    await stop(supervisor, task)


async def test_deaths_before_ready_are_summarised_as_failed_starts_not_requests(caplog: Any) -> None:
    """Workers that never became ready (an import broken on disk, --preload's helper gone):
    the summary says they failed to start, not that a request crashes them (issue 16)."""
    spawner = FakeSpawner()
    supervisor = make(spawner, workers=2, timing=dataclasses.replace(FAST, respawn_budget=10))
    task = await started(supervisor, spawner)
    slot = supervisor.slots[0]
    spawner.on_spawn = lambda p: p.later(p.exit, 1) if p.slot == 0 else p.later(p.ready)
    current(supervisor, 0).exit(-signal.SIGKILL)  # served; its replacements never start
    await spawner.until(lambda: len(slot.crashes) >= FAST.crash_summary and slot.failures >= 2)
    summaries = [r.getMessage() for r in caplog.records if "worker slot 0" in r.getMessage()]
    assert summaries and "failed to start" in summaries[-1], summaries
    assert not any("a request that crashes" in line for line in summaries[1:]), summaries
    spawner.on_spawn = lambda p: p.later(p.ready)
    await stop(supervisor, task)


async def test_status_lists_a_slot_waiting_for_its_respawn() -> None:
    """Issue 16 (newcomer): a slot in backoff vanished from ``status`` ("workers 1/1 ready"
    with two desired). It is counted and listed with the time left, in JSON and in text."""
    spawner = FakeSpawner()
    timing = dataclasses.replace(FAST, respawn_budget=0, backoff_base=50.0, backoff_cap=50.0)
    supervisor = make(spawner, workers=2, timing=timing)
    task = await started(supervisor, spawner)
    current(supervisor, 0).exit(-signal.SIGKILL)  # slot 1 still serves: slot 0 backs off 50 s
    assert supervisor.slots[0].respawn_timer is not None
    status = supervisor.status()
    [waiting] = status["respawning"]
    assert waiting["slot"] == 0 and 0 < waiting["respawn_in"] <= 50
    assert "signal SIGKILL" in waiting["last_exit"]
    assert ClusterStatus.from_dict(status).respawning[0].slot == 0  # the wire format round-trips
    view = {**status, "totals": totals(status["workers"])}
    text = status_text(view)
    assert "1/2 ready" in text, text
    row = next(line for line in text.splitlines() if "respawning in" in line)
    assert row.split()[0] == "0" and "SIGKILL" in row, row
    await stop(supervisor, task)


async def test_the_floor_respawns_quickly_when_no_worker_is_up() -> None:
    """Both slots over their budget: once no worker is ready, both respawn within floor_delay."""
    spawner = FakeSpawner()
    timing = dataclasses.replace(FAST, respawn_budget=0, backoff_base=50.0, backoff_cap=50.0)
    supervisor = make(spawner, workers=2, timing=timing)
    task = await started(supervisor, spawner)
    current(supervisor, 0).exit(-signal.SIGKILL)
    assert supervisor.slots[0].respawn_timer is not None  # slot 1 still serves: slot 0 may wait
    current(supervisor, 1).exit(-signal.SIGKILL)  # now nobody is up
    await spawner.until(lambda: supervisor.slots[1].current is not None, timeout=5)
    # No worker is ready: slot 0's 50 s backoff is cut to the floor too (attack run on issue
    # 9: a poison request every second kept one slot in a 16 s backoff while the cluster was dark).
    await spawner.until(lambda: supervisor.slots[0].current is not None, timeout=5)
    await stop(supervisor, task)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (exitcodes.APP_IMPORT, "could not import module 'nope'"),
        (exitcodes.LIFESPAN, "lifespan startup failed: RuntimeError"),
    ],
)
async def test_a_broken_app_stops_the_cluster_with_its_exit_code(code: int, reason: str, caplog: Any) -> None:
    spawner = FakeSpawner(on_spawn=fail_with(code, reason))
    supervisor = make(spawner, workers=3)
    result = await asyncio.wait_for(supervisor.serve(), 5)
    assert result == code
    assert len(spawner.processes) == 3  # no respawn at all
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and reason in errors[0]  # one clear message


async def test_a_crash_loop_before_any_ready_gives_up_with_never_ready() -> None:
    spawner = FakeSpawner(on_spawn=lambda p: p.later(p.exit, -signal.SIGSEGV))
    supervisor = make(spawner, workers=1)
    result = await asyncio.wait_for(supervisor.serve(), 5)
    assert result == exitcodes.NEVER_READY
    assert len(spawner.processes) == FAST.startup_attempts


async def test_a_worker_never_ready_within_ready_timeout_is_killed_after_a_stack_dump() -> None:
    spawner = FakeSpawner(on_spawn=lambda p: None)  # never says ready
    supervisor = make(spawner, workers=1, ready_timeout=0.05)
    result = await asyncio.wait_for(supervisor.serve(), 5)
    assert result == exitcodes.NEVER_READY
    process = spawner.processes[0]
    assert process.signals[:2] == [signal.SIGUSR2, signal.SIGKILL]


async def test_a_hung_worker_dumps_stacks_then_is_killed_and_replaced(caplog: Any) -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, workers=1, timeout=0.05)
    task = await started(supervisor, spawner)
    hung = current(supervisor, 0)  # sends no heartbeat: its loop is "blocked"
    await spawner.until(lambda: len(spawner.processes) == 2)
    assert hung.signals == [signal.SIGUSR2, signal.SIGKILL]
    stack_lines = [r for r in caplog.records if "spin_forever" in r.getMessage()]
    assert stack_lines and stack_lines[0].tag == f"worker 0 pid {hung.pid}"
    assert spawner.processes[1].slot == 0
    await stop(supervisor, task)


async def test_heartbeats_keep_a_worker_alive() -> None:
    """Each heartbeat cancels the liveness deadline and arms a new one, from now (no clock
    races: the timers themselves are checked; a long --timeout keeps them from firing)."""
    spawner = FakeSpawner()
    supervisor = make(spawner, workers=1, timeout=30)
    task = await started(supervisor, spawner)
    worker = current(supervisor, 0)
    handle = supervisor.slots[0].current
    assert handle is not None
    for _ in range(3):
        before = handle.watchdog
        assert before is not None and not before.cancelled()
        worker.heartbeat(stats={"requests": 1}, rss=1)
        after = handle.watchdog
        assert after is not None and after is not before
        assert before.cancelled() and not after.cancelled()  # the old deadline can never fire
        assert after.when() >= before.when()
    assert worker.signals == []
    assert supervisor.status()["workers"][0]["heartbeat"]["stats"] == {"requests": 1}
    await stop(supervisor, task)


async def test_reload_starts_each_new_worker_before_the_old_one_is_told_to_drain() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, workers=3, reload_batch=1)
    task = await started(supervisor, spawner)
    old = {slot: current(supervisor, slot).pid for slot in range(3)}
    result = await supervisor.reload()
    assert result.ok and result.replaced == 3
    journal = spawner.journal
    for slot in range(3):
        new = current(supervisor, slot)
        assert new.pid != old[slot]
        assert journal.index(("ready", slot, new.pid)) < journal.index(("stop", slot, old[slot]))
    # batches of one: the second new worker is spawned only after the first is ready
    spawns = [entry for entry in journal if entry[0] == "spawn"][3:]
    readies = [entry for entry in journal if entry[0] == "ready"][3:]
    assert journal.index(readies[0]) < journal.index(spawns[1])
    await stop(supervisor, task)


async def test_a_reload_onto_broken_code_is_rolled_back_and_the_old_workers_keep_serving() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, workers=3)
    task = await started(supervisor, spawner)
    old = [current(supervisor, slot) for slot in range(3)]
    spawned = 0

    def second_new_one_is_broken(process: FakeProcess) -> None:
        nonlocal spawned
        spawned += 1
        if spawned == 2:
            fail_with(exitcodes.APP_IMPORT, "SyntaxError in app.py")(process)
        else:
            process.later(process.ready)

    spawner.on_spawn = second_new_one_is_broken
    result = await supervisor.reload()
    assert not result.ok and "SyntaxError" in result.error
    assert [current(supervisor, slot) for slot in range(3)] == old
    assert all(not p.exited and not any(isinstance(m, Stop) for m in p.sent) for p in old)
    first_new = spawner.processes[3]
    await spawner.until(lambda: first_new.exited)  # the replaced slot was rolled back
    assert isinstance(first_new.sent[-1], Stop)
    assert len(spawner.processes) == 5  # the reload stopped at the broken one
    assert supervisor.state == "running"
    await stop(supervisor, task)


async def test_scale_up_and_down() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, workers=2)
    task = await started(supervisor, spawner)
    result = await supervisor.scale(4)
    assert result.ok and result.after == 4
    assert sorted(supervisor.slots) == [0, 1, 2, 3]
    result = await supervisor.scale(1)
    assert result.ok and result.before == 4 and result.after == 1
    assert sorted(supervisor.slots) == [0]
    assert sorted(p.slot for p in spawner.live()) == [0]
    assert (await supervisor.scale(0)).ok is False
    await stop(supervisor, task)


async def test_scale_above_max_workers_is_refused_and_nothing_starts() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, workers=2, max_workers=3)
    task = await started(supervisor, spawner)
    result = await supervisor.scale(100000)
    assert not result.ok and result.after == 2
    assert "cannot scale to 100000 workers: the limit is 3" in result.error
    assert len(spawner.processes) == 2 and supervisor.desired == 2
    assert (await supervisor.scale(3)).ok
    await stop(supervisor, task)


async def test_a_scale_whose_new_workers_fail_rolls_back_to_the_previous_count() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, workers=2)
    task = await started(supervisor, spawner)
    spawner.on_spawn = lambda p: p.later(p.exit, 1) if p.slot == 3 else p.later(p.ready)
    result = await asyncio.wait_for(supervisor.scale(4), 5)
    assert not result.ok and result.after == 2
    assert "rolled back to 2 workers" in result.message and "worker 3" in result.error
    assert supervisor.desired == 2 and sorted(supervisor.slots) == [0, 1]
    await spawner.until(lambda: sorted(p.slot for p in spawner.live()) == [0, 1])
    await stop(supervisor, task)


async def test_restart_of_one_slot_and_of_a_missing_slot() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, workers=2)
    task = await started(supervisor, spawner)
    before = current(supervisor, 1).pid
    result = await supervisor.restart(1)
    assert result.ok and result.old_pid == before and result.new_pid == current(supervisor, 1).pid
    missing = await supervisor.restart(7)
    assert not missing.ok and "no worker slot 7" in missing.error
    await stop(supervisor, task)


async def test_max_requests_recycles_one_worker_at_a_time() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, workers=2, max_requests=10)
    task = await started(supervisor, spawner)
    first, second = current(supervisor, 0), current(supervisor, 1)
    spawner.on_spawn = lambda p: None  # the replacement takes its time to become ready
    first.heartbeat(stats={"requests": 10})
    second.heartbeat(stats={"requests": 10})
    await spawner.until(lambda: len(spawner.processes) == 3)
    await turns(50)  # plenty of loop turns for a second recycle (if any) to spawn
    assert len(spawner.processes) == 3  # one recycle at a time cluster-wide
    spawner.processes[2].ready()
    await spawner.until(lambda: first.exited)
    second.heartbeat(stats={"requests": 11})
    await spawner.until(lambda: len(spawner.processes) == 4)
    await stop(supervisor, task)


async def test_a_worker_that_ignores_stop_is_killed_and_the_exit_code_says_forced() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, workers=2)
    task = await started(supervisor, spawner)
    current(supervisor, 0).obey_stop = False
    await supervisor.stop()
    assert await asyncio.wait_for(task, 5) == exitcodes.FORCED
    assert signal.SIGKILL in spawner.processes[0].signals


@pytest.mark.parametrize(
    ("signum", "expected"),
    [(signal.SIGHUP, "reload"), (signal.SIGTTIN, "scale-up"), (signal.SIGTTOU, "scale-down")],
)
async def test_signals_are_turned_into_operations(signum: int, expected: str) -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, workers=2)
    task = await started(supervisor, spawner)
    SignalRouter(supervisor).handle(signum)
    if expected == "reload":
        await spawner.until(lambda: sum(1 for p in spawner.processes if p.exited) == 2)
        assert len(spawner.live()) == 2 and len(spawner.processes) == 4
    elif expected == "scale-up":
        await spawner.until(lambda: len(spawner.live()) == 3)
    else:
        await spawner.until(lambda: len(spawner.live()) == 1)
        assert supervisor.desired == 1
    await stop(supervisor, task)


async def test_sigint_twice_forces_the_stop() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, workers=2)
    task = await started(supervisor, spawner)
    for process in spawner.processes:
        process.obey_stop = False
    router = SignalRouter(supervisor)
    router.handle(signal.SIGINT)
    assert supervisor.state == "stopping" and not supervisor.ready
    router.handle(signal.SIGINT)
    assert await asyncio.wait_for(task, 5) == exitcodes.FORCED
    assert all(signal.SIGKILL in p.signals for p in spawner.processes)


async def test_event_callbacks_receive_worker_facts() -> None:
    spawner = FakeSpawner()
    events: list[tuple[str, int, int | None, str | None]] = []
    config = Config(app="x:app", workers=1)
    supervisor = Supervisor(
        config,
        spawner,
        None,
        timing=FAST,
        on_event=lambda e, info: events.append((e, info.slot, info.exitcode, info.signal)),
    )
    task = await started(supervisor, spawner)
    current(supervisor, 0).exit(-signal.SIGKILL)
    await spawner.until(lambda: len(spawner.processes) == 2 and supervisor.ready)
    assert ("listening", 0, None, None) in events
    assert ("exit", 0, None, "SIGKILL") in events
    await stop(supervisor, task)


async def test_cancelling_serve_stops_every_worker_first() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, workers=2)
    task = await started(supervisor, spawner)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert not spawner.live()


class _RaisingHandler(logging.Handler):
    """A log handler that fails like a write to a closed pipe would have (before logs.py
    stopped raising): the supervisor must act on exits and signals all the same."""

    def emit(self, record: logging.LogRecord) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def handleError(self, record: logging.LogRecord) -> None:  # logging's name
        raise  # propagate, unlike logging's default


@pytest.fixture
def raising_logs() -> Any:
    log = logging.getLogger("asynccluster.master")
    handler = _RaisingHandler()
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)  # the default --log-level
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


async def test_a_worker_exit_is_acted_on_even_if_logging_raises(raising_logs: None) -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, workers=1)
    task = await started(supervisor, spawner)
    with pytest.raises(BrokenPipeError):
        current(supervisor, 0).exit(-signal.SIGKILL)  # the exit line fails to log
    # ... but the slot was respawned all the same (before: 0 workers forever).
    await spawner.until(lambda: len(spawner.live()) == 1 and supervisor.state == "running")
    with pytest.raises(BrokenPipeError):
        supervisor.begin_stop()  # "stopping 1 worker" fails to log, after the stop began
    assert await asyncio.wait_for(task, 5) == exitcodes.OK


async def test_sigterm_stops_even_if_logging_raises(raising_logs: None) -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, workers=2)
    task = asyncio.create_task(supervisor.serve())
    await spawner.until(lambda: len(spawner.processes) == 2)
    router = SignalRouter(supervisor)
    with pytest.raises(BrokenPipeError):
        router.handle(signal.SIGTERM)
    assert supervisor.stopping
    code = await asyncio.wait_for(task, 5)  # every exit logs (and raises): the stop completes
    assert code == exitcodes.OK
    assert spawner.live() == []


async def test_two_concurrent_relative_scales_both_count() -> None:
    """`asynccluster scale web +1` twice at once: each +1 is applied to the count when it
    holds the lock (before: both computed 2 + 1 = 3 and one was lost)."""
    from asynccluster.master.control import ControlServer

    spawner = FakeSpawner()
    supervisor = make(spawner, workers=2)
    task = await started(supervisor, spawner)
    control = ControlServer(supervisor, None, "test")  # type: ignore[arg-type]  # scale needs no monitor
    async with supervisor.op_lock:  # another operation (a reload) runs: both requests wait
        pending = asyncio.gather(control.scale({"count": "+1"}), control.scale({"count": "+1"}))
        await asyncio.wait_for(turns_until(lambda: len(supervisor.op_lock._waiters or ()) == 2), 5)
    first, second = await asyncio.wait_for(pending, 5)
    assert supervisor.desired == 4
    assert sorted((first["previous"], first["target"], second["previous"], second["target"])) == [2, 3, 3, 4]
    assert first["ok"] and second["ok"]
    assert len(spawner.live()) == 4
    await stop(supervisor, task)


async def test_async_event_callbacks_finish_before_serve_returns() -> None:
    """Cluster.on("exit", async_fn): the callbacks of the last exits are not cancelled when
    serve() returns; they get Timing.callback_grace to finish."""
    finished: list[int] = []

    async def on_exit(info: Any) -> None:
        await asyncio.sleep(0.05)  # a callback that takes a little while (e.g. a notification)
        finished.append(info.slot)

    spawner = FakeSpawner()
    config = Config(app="tests.apps.basic:app", workers=2, graceful_timeout=1.0)
    supervisor = Supervisor(
        config,
        spawner,
        None,
        timing=FAST,
        clock=FakeClock(),
        on_event=lambda event, info: on_exit(info) if event == "exit" else None,
    )
    task = await started(supervisor, spawner)
    assert await stop(supervisor, task) == exitcodes.OK
    assert sorted(finished) == [0, 1]  # before: both cancelled at the end of serve()


async def test_workers_get_the_heartbeat_interval_and_shutdown_budget_from_the_master() -> None:
    """One source: the master's Timing (its watchdog expects that pace) goes to the worker."""
    spawner = FakeSpawner()
    timing = Timing(heartbeat_interval=0.25, shutdown_cap=0.5, kill_grace=0.05)
    config = Config(app="tests.apps.basic:app", workers=1, graceful_timeout=2.0)
    supervisor = Supervisor(config, spawner, None, timing=timing, clock=FakeClock())
    task = asyncio.create_task(supervisor.serve())
    await spawner.until(lambda: supervisor.state == "running")
    request = spawner.processes[0].request
    assert request.heartbeat_interval == 0.25
    assert request.shutdown_budget == 0.5  # min(--graceful-timeout, the cap)
    assert kill_delay(config, timing) == 2.0 + 0.5 + 0.05  # drain + shutdown + grace
    assert await stop(supervisor, task) == exitcodes.OK
