"""--shutdown-delay in the supervisor's stop, against the fake spawner (issue 14).

The state turns "stopping" at once (/readyz is derived from it) while no worker is told to
drain until the delay is over; a second stop request or a forced stop skips the delay.
"""

from __future__ import annotations

import asyncio
from typing import Any

from asynccluster import exitcodes
from asynccluster.config import Config
from asynccluster.master.policy import Timing
from asynccluster.master.supervisor import Supervisor
from asynccluster.observe.prometheus import is_ready
from tests.master.fakes import FakeSpawner

FAST = Timing(heartbeat_interval=0.0, kill_grace=0.05, shutdown_cap=0.05)
LONG = 3600.0  # a delay no test waits for: only a second request may end it


def make(spawner: FakeSpawner, delay: float) -> Supervisor:
    config = Config(app="tests.apps.basic:app", workers=2, graceful_timeout=1.0, shutdown_delay=delay)
    return Supervisor(config, spawner, None, timing=FAST)


async def started(supervisor: Supervisor, spawner: FakeSpawner) -> asyncio.Task[int]:
    task = asyncio.create_task(supervisor.serve())
    await spawner.until(lambda: supervisor.state == "running")
    return task


def told_to_stop(spawner: FakeSpawner) -> int:
    return sum(1 for entry in spawner.journal if entry[0] in ("stop", "SIGTERM"))


async def test_during_the_delay_not_ready_but_every_worker_keeps_serving() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, LONG)
    task = await started(supervisor, spawner)
    supervisor.begin_stop()
    status: dict[str, Any] = supervisor.status()
    assert status["state"] == "stopping" and not is_ready(status) and not supervisor.ready
    assert told_to_stop(spawner) == 0 and len(spawner.live()) == 2
    supervisor.begin_stop()  # the second SIGTERM: drain now
    assert await asyncio.wait_for(task, 5) == exitcodes.OK
    assert told_to_stop(spawner) == 2


async def test_the_drain_starts_when_the_delay_is_over() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, 0.05)
    task = await started(supervisor, spawner)
    supervisor.begin_stop()
    assert told_to_stop(spawner) == 0
    assert await asyncio.wait_for(task, 5) == exitcodes.OK
    assert told_to_stop(spawner) == 2 and not spawner.live()


async def test_a_forced_stop_skips_the_delay() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, LONG)
    task = await started(supervisor, spawner)
    supervisor.begin_stop()
    supervisor.begin_stop(force=True)  # the second Ctrl-C
    assert await asyncio.wait_for(task, 5) == exitcodes.FORCED


async def test_a_startup_failure_stops_without_the_delay() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, LONG)
    task = await started(supervisor, spawner)
    supervisor.begin_stop(code=exitcodes.LIFESPAN, quiet=True)  # the path a hopeless start takes
    assert await asyncio.wait_for(task, 5) == exitcodes.LIFESPAN
    assert told_to_stop(spawner) == 2


async def test_workers_that_all_exit_during_the_delay_end_the_stop() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, LONG)
    task = await started(supervisor, spawner)
    supervisor.begin_stop()
    for process in spawner.live():
        process.exit(0)
    assert await asyncio.wait_for(task, 5) == exitcodes.OK
