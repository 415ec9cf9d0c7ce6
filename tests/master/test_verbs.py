"""The master's verbs have one owner (issue 10): the Supervisor's methods, whatever the route.

The cluster state changes only through the Supervisor's setter, checked against the table in
contracts/states.py; signals, the control socket and ``Cluster`` reach the same verb; results
and status views keep their wire format through ``to_dict``/``from_dict``. A fake spawner (no
processes), as in test_supervisor.py.
"""

from __future__ import annotations

import asyncio
import json
import signal

import pytest

from asynccluster import exitcodes
from asynccluster.config import Config
from asynccluster.contracts.results import ReloadResult, ScaleResult, scale_refusal
from asynccluster.contracts.states import (
    CLUSTER_TRANSITIONS,
    ClusterState,
    IllegalTransition,
    SlotState,
    check_cluster_transition,
)
from asynccluster.contracts.status import ClusterStatus
from asynccluster.master.cluster import Cluster
from asynccluster.master.control import ControlServer
from asynccluster.master.signals import SignalRouter
from asynccluster.master.supervisor import Supervisor
from tests.master.fakes import FakeSpawner
from tests.master.test_supervisor import FAST, FakeClock


def make(spawner: FakeSpawner, workers: int = 2) -> Supervisor:
    config = Config(app="tests.apps.basic:app", workers=workers, graceful_timeout=1.0)
    return Supervisor(config, spawner, None, timing=FAST, clock=FakeClock())


async def running(supervisor: Supervisor, spawner: FakeSpawner) -> asyncio.Task[int]:
    task = asyncio.create_task(supervisor.serve())
    await spawner.until(lambda: supervisor.state == ClusterState.RUNNING)
    return task


def test_the_transition_table_allows_the_written_changes_and_refuses_the_rest() -> None:
    assert set(CLUSTER_TRANSITIONS) == set(ClusterState)  # every state has its row
    assert check_cluster_transition(ClusterState.STARTING, ClusterState.RUNNING) is ClusterState.RUNNING
    assert check_cluster_transition(ClusterState.RELOADING, ClusterState.STARTING) is ClusterState.STARTING
    for old, new in [
        (ClusterState.RUNNING, ClusterState.STARTING),  # a cluster never "starts" again
        (ClusterState.STOPPING, ClusterState.RUNNING),  # a stop is never undone
        (ClusterState.STOPPED, ClusterState.STOPPING),
        (ClusterState.RUNNING, ClusterState.STOPPED),  # stopped only after stopping (workers reaped)
    ]:
        with pytest.raises(IllegalTransition, match=f"{old.value} -> {new.value}"):
            check_cluster_transition(old, new)


def test_states_are_their_wire_values() -> None:
    assert json.dumps({"state": ClusterState.RELOADING}) == '{"state": "reloading"}'
    assert f"{SlotState.RETIRING}" == "retiring" and ClusterState("running") is ClusterState.RUNNING


async def test_the_supervisor_refuses_an_illegal_state_change_and_keeps_its_state() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner)
    task = await running(supervisor, spawner)
    with pytest.raises(IllegalTransition):
        supervisor.state = ClusterState.STARTING
    assert supervisor.state is ClusterState.RUNNING
    await supervisor.stop()
    assert await asyncio.wait_for(task, 5) == exitcodes.OK
    assert supervisor.state is ClusterState.STOPPED  # every worker reaped
    assert supervisor.status()["state"] == "stopped"


async def test_signals_the_control_socket_and_cluster_reach_the_same_reload() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner)
    task = await running(supervisor, spawner)
    assert supervisor.reload_generation == 0

    SignalRouter(supervisor).handle(signal.SIGHUP)  # route 1: HUP (a background task)
    await spawner.until(lambda: supervisor.reload_generation == 1 and not supervisor.op_lock.locked())

    control = ControlServer(supervisor, None, "test")  # type: ignore[arg-type]  # reload needs no monitor
    answer = await control.answer(b'{"cmd": "reload"}\n')  # route 2: asynccluster reload
    assert answer["ok"] and answer["result"]["ok"] and answer["result"]["replaced"] == 2
    assert supervisor.reload_generation == 2

    cluster = Cluster(supervisor.config, handle_signals=False)
    cluster.supervisor = supervisor  # as serve() sets it
    result = await cluster.reload()  # route 3: await cluster.reload()
    assert isinstance(result, ReloadResult) and result.ok
    assert supervisor.reload_generation == 3

    reloads = [e["text"] for e in supervisor.events.items() if e["kind"] == "reload"]
    assert sum(text.startswith("reload done") for text in reloads) == 3  # each recorded once
    await supervisor.stop()
    assert await asyncio.wait_for(task, 5) == exitcodes.OK


async def test_signals_the_control_socket_and_cluster_reach_the_same_scale() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner, workers=1)
    task = await running(supervisor, spawner)
    SignalRouter(supervisor).handle(signal.SIGTTIN)
    await spawner.until(lambda: supervisor.desired == 2 and len(spawner.live()) == 2)
    control = ControlServer(supervisor, None, "test")  # type: ignore[arg-type]
    answer = await control.answer(b'{"cmd": "scale", "args": {"count": "+1"}}\n')
    assert answer["result"]["previous"] == 2 and answer["result"]["target"] == 3 and supervisor.desired == 3
    cluster = Cluster(supervisor.config, handle_signals=False)
    cluster.supervisor = supervisor
    assert (await cluster.scale(1)).after == 1 and supervisor.desired == 1
    await supervisor.stop()
    await asyncio.wait_for(task, 5)


def test_results_keep_their_wire_format_through_json() -> None:
    reload = ReloadResult(True, 2, 2, 1.5, message="reloaded", pids={0: [10, 11], 1: [12, 13]})
    wire = json.loads(json.dumps(reload.to_dict()))
    assert wire == {"ok": True, "replaced": 2, "total": 2, "seconds": 1.5, "error": "", "message": "reloaded",
                    "pids": {"0": [10, 11], "1": [12, 13]}}  # fmt: skip
    assert ReloadResult.from_dict({**wire, "elapsed": 1.6}) == reload  # what the control socket adds is ignored
    scale = ScaleResult(True, 4, 2, 0.3, ["cbpf", "cbpf"], message="scaled")
    assert ScaleResult.from_dict(json.loads(json.dumps(scale.to_dict()))) == scale
    with pytest.raises(ValueError):
        ScaleResult.from_dict([1, 2])  # type: ignore[arg-type]


def test_one_rule_for_a_scale_target() -> None:
    assert scale_refusal(1) is None and scale_refusal(16, limit=16) is None
    assert "cannot scale to 0 workers (now 2)" in (scale_refusal(0, current=2) or "")
    assert "the limit is 16" in (scale_refusal(17, limit=16) or "")


async def test_the_status_view_round_trips() -> None:
    spawner = FakeSpawner()
    supervisor = make(spawner)
    task = await running(supervisor, spawner)
    status = supervisor.status()
    assert ClusterStatus.from_dict(json.loads(json.dumps(status))).to_dict() == status
    assert [w["state"] for w in status["workers"]] == ["ready", "ready"] and status["desired_workers"] == 2
    await supervisor.stop()
    await asyncio.wait_for(task, 5)


async def test_reloads_asked_for_while_one_waits_join_it() -> None:
    # Found by the attack on issue 10: 30 SIGHUPs in 0.6 s ran 30 rolling reloads in a row.
    spawner = FakeSpawner()
    supervisor = make(spawner)
    task = await running(supervisor, spawner)
    async with supervisor.op_lock:  # a reload (or a scale) is running: the next one must wait
        first = asyncio.create_task(supervisor.reload())
        await spawner.until(lambda: supervisor._queued_reload is not None)
        # Created before the lock is released, they run (and find the queued reload) before the
        # lock's waiter is woken: asyncio runs ready callbacks in order.
        joiners = [asyncio.create_task(supervisor.reload()) for _ in range(29)]
    results = await asyncio.gather(first, *joiners)
    assert supervisor.reload_generation == 1  # one rolling reload for thirty requests
    assert all(r is results[0] and r.ok for r in results)
    later = await supervisor.reload()  # asked for after that one ran: a reload of its own
    assert later.ok and later is not results[0] and supervisor.reload_generation == 2
    await supervisor.stop()
    assert await asyncio.wait_for(task, 5) == exitcodes.OK
