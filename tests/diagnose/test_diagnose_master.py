"""The master's side (issue 15): which worker a measurement may target, worker reports merged,
answers matched to their requests. Pure logic on real WorkerHandle/Slot objects."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from asynccluster.contracts.messages import Diagnose, DiagnoseResult, Errors
from asynccluster.contracts.states import WorkerState
from asynccluster.master.control import ControlError
from asynccluster.master.diagnose import Diagnostics, control_handlers
from asynccluster.master.process import WorkerHandle
from asynccluster.master.slots import Slot


def handle(slot: int, state: WorkerState, retire: str = "") -> WorkerHandle:
    worker = WorkerHandle(slot=slot, incarnation=1, started_at=0.0, pid=1000 + slot, state=state)
    worker.retire_reason = retire
    return worker


def diagnostics(*workers: WorkerHandle) -> Diagnostics:
    slots = {w.slot: Slot(index=w.slot, current=w) for w in workers}
    return Diagnostics(slots)


def test_target_is_the_ready_current_worker() -> None:
    ready = handle(0, WorkerState.READY)
    assert diagnostics(ready).target(0) is ready
    assert diagnostics(ready).target("0") is ready


@pytest.mark.parametrize(
    ("worker", "message", "usage"),
    [
        (handle(1, WorkerState.DRAINING), "is draining", False),
        (handle(1, WorkerState.READY, retire="scale down"), r"is draining \(scale down\)", False),
        (handle(1, WorkerState.STARTING), "is starting, not ready yet", False),
    ],
)
def test_target_refuses_a_worker_that_is_not_ready(worker: WorkerHandle, message: str, usage: bool) -> None:
    with pytest.raises(ControlError, match=message) as caught:
        diagnostics(handle(0, WorkerState.READY), worker).target(1)
    assert caught.value.usage is usage


@pytest.mark.parametrize("slot", [7, -1, "x", "٣", True, None, 1.5])
def test_target_refuses_a_slot_that_does_not_exist_as_usage(slot: Any) -> None:
    with pytest.raises(ControlError) as caught:
        diagnostics(handle(0, WorkerState.READY)).target(slot)
    assert caught.value.usage


def test_reports_merge_and_answers_resolve_their_request() -> None:
    async def scenario() -> dict[str, Any]:
        worker = handle(0, WorkerState.READY)
        diag = diagnostics(worker)
        sent: list[Diagnose] = []
        worker.process = SimpleNamespace(send=lambda m: sent.append(m) or True)  # type: ignore[assignment]
        asking = asyncio.ensure_future(diag.ask(worker, "memory", 0.1, top=3))
        await asyncio.sleep(0)
        assert sent == [Diagnose(id=sent[0].id, op="memory", seconds=0.1, top=3)]
        diag.on_message(worker, DiagnoseResult(id=999, ok=True, result={"stray": 1}))
        diag.on_message(worker, DiagnoseResult(id=sent[0].id, ok=True, result={"x": 1}))
        diag.on_message(worker, Errors(groups=[{"type": "E", "frame": "f", "count": 2}],
                                       slow=[{"request": "GET /s", "ms": 300.0}], dropped=4))  # fmt: skip
        report = await control_handlers(SimpleNamespace(diagnostics=diag), "c")["errors"]({})
        slow = await control_handlers(SimpleNamespace(diagnostics=diag), "c")["slow"]({})
        assert report["total"] == 2 and report["ungrouped"] == 4
        assert slow["requests"] == [{"request": "GET /s", "ms": 300.0, "worker": 0, "pid": 1000}]
        return await asking

    assert asyncio.run(scenario()) == {"x": 1}


def test_a_refusal_from_the_worker_is_a_control_error() -> None:
    async def scenario() -> None:
        worker = handle(0, WorkerState.READY)
        diag = diagnostics(worker)
        worker.process = SimpleNamespace(  # type: ignore[assignment]
            send=lambda m: diag.on_message(worker, DiagnoseResult(id=m.id, ok=False,
                                                                  error="already running a memory measurement")) or True
        )  # fmt: skip
        with pytest.raises(ControlError, match="already running"):
            await diag.ask(worker, "memory", 0.1)
        assert diag.pending == {}

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"slot": 0, "seconds": 0}, "--seconds"),
        ({"slot": 0, "seconds": 1, "top": 99}, "--top"),
    ],
)
def test_memory_arguments_checked_before_asking(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ControlError, match=message) as caught:
        asyncio.run(diagnostics(handle(0, WorkerState.READY)).memory(args))
    assert caught.value.usage


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"slot": 0, "seconds": 1, "out": "relative.svg"}, "absolute"),
        ({"slot": 0, "seconds": 1, "out": "/no/such/dir/p.svg"}, "does not exist"),
        ({"slot": 0, "seconds": 1, "out": "/tmp/p.svg", "format": "pdf"}, "--format"),
        ({"slot": 0, "seconds": 1, "out": "/tmp/p.svg", "rate": 0}, "--rate"),
    ],
)
def test_profile_arguments_checked_before_measuring(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ControlError, match=message):
        asyncio.run(diagnostics(handle(0, WorkerState.READY)).profile(args))


def test_sampler_answer_becomes_stacks_bad_entries_skipped() -> None:
    from asynccluster.master.diagnose import sampled_stacks

    answer = {
        "frames": ["main", "serve", "spin"],
        "stacks": [[[0, 1, 2], 5], [[0, 1], 2], [[0, 9], 1], "junk", [[0], -1]],
    }
    assert sampled_stacks(answer) == {("main", "serve", "spin"): 5, ("main", "serve"): 2}


def test_profile_falls_back_to_the_sampler_when_py_spy_cannot_attach(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import asynccluster.master.diagnose as master_diagnose

    monkeypatch.setattr(master_diagnose, "py_spy_path", lambda: "/bin/false")  # a py-spy that fails at once

    async def scenario(tool: str) -> dict[str, Any]:
        worker = handle(0, WorkerState.READY)
        diag = diagnostics(worker)
        answer = {"frames": ["main", "spin"], "stacks": [[[0, 1], 7]], "samples": 7}
        worker.process = SimpleNamespace(  # type: ignore[assignment]
            send=lambda m: (
                asyncio.get_running_loop().call_soon(
                    diag.on_message, worker, DiagnoseResult(id=m.id, ok=True, result=answer)
                )
                or True
            )
        )
        return await diag.profile({"slot": 0, "seconds": 0.5, "out": str(tmp_path / "p.svg"), "tool": tool})

    result = asyncio.run(scenario("auto"))
    assert result["tool"] == "sampler" and result["samples"] == 7
    assert "py-spy failed (exit 1)" in result["note"]
    assert (tmp_path / "p.svg").read_text().count("spin") >= 1
    with pytest.raises(master_diagnose.PySpyFailed):
        asyncio.run(scenario("py-spy"))
