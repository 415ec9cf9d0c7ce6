"""The master's side of diagnosing a live cluster (issue 15), behind the control socket.

- ``errors``: the grouped app exceptions the workers report (observe/errors.py), merged in a
  bounded store; ``slow``: the last :data:`SLOW_KEPT` slow requests (worker/slowlog.py).
- ``memory``: asks one worker, over its channel, for a tracemalloc window
  (worker/diagnose_ops.py) and returns its answer.
- ``profile``: samples one worker's CPU for N seconds with py-spy (attaches from outside,
  the worker keeps serving; chosen when installed: a maintained sampler that sees C
  extensions' Python callers and needs no cooperation from the worker's loop) or, without
  py-spy, with the worker's stdlib sampler thread; either way the stacks become a flame-graph
  SVG or a speedscope JSON (observe/flamegraph.py) written where the operator asked.

A measurement targets a slot's *current, ready* worker: a slot that does not exist is a usage
error, a worker starting or draining is refused (its successor is the one to ask).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import shutil
import sys
import tempfile
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from asynccluster.contracts.control import SLOT, ControlError
from asynccluster.contracts.messages import Diagnose, DiagnoseResult, Errors
from asynccluster.contracts.states import WorkerState
from asynccluster.master.process import WorkerHandle
from asynccluster.master.slots import Slot
from asynccluster.observe import flamegraph
from asynccluster.observe.errors import ErrorGroups

logger = logging.getLogger("asynccluster.master")

SLOW_KEPT = 100
ANSWER_GRACE = 15.0  # seconds a worker may take beyond the measured window to answer
MAX_SECONDS = 600.0
FORMATS = ("svg", "speedscope")


Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
Stacks = flamegraph.Stacks


class PySpyFailed(ControlError):
    """py-spy exited with an error (cannot attach, the process is gone...)."""


class Diagnostics:
    """Owned by the supervisor: worker reports in, control requests answered; reads the
    slot table (slots.py) to find a measurement's worker."""

    def __init__(self, slots: Mapping[int, Slot]) -> None:
        self.slots = slots
        self.errors = ErrorGroups()
        self.dropped = 0  # errors workers could not group (more than MAX_GROUPS in one batch)
        self.slow: deque[dict[str, Any]] = deque(maxlen=SLOW_KEPT)
        self.pending: dict[int, asyncio.Future[DiagnoseResult]] = {}
        self._ids = itertools.count(1)
        self.profiling: set[int] = set()  # pids being profiled now (one profile per worker at a time)

    # -- from the workers (Supervisor.on_message)

    def on_message(self, handle: WorkerHandle, message: Errors | DiagnoseResult) -> None:
        # Field types are checked by the channel (contracts/messages.py); sizes are bounded here.
        if isinstance(message, Errors):
            self.errors.merge(handle.slot, message.groups)
            if message.dropped > 0:
                self.dropped += message.dropped
            for entry in message.slow[:50]:
                self.slow.append({**entry, "worker": handle.slot, "pid": handle.pid})
            return
        future = self.pending.pop(message.id, None)
        if future is not None and not future.done():
            future.set_result(message)

    # -- the control socket's requests

    def error_report(self, tracebacks: bool = True) -> dict[str, Any]:
        return {
            "groups": self.errors.listing(tracebacks=tracebacks),
            "total": self.errors.total,
            "evicted_groups": self.errors.evicted,
            "ungrouped": self.dropped,
        }

    def slow_report(self) -> dict[str, Any]:
        return {"requests": list(self.slow)}

    def target(self, slot_arg: Any) -> WorkerHandle:
        """The ready current worker of a slot, or ControlError saying why not."""
        slot = _slot_number(slot_arg)
        slots = self.slots
        entry = slots.get(slot)
        if entry is None:
            known = ", ".join(str(s) for s in sorted(slots)) or "none"
            raise ControlError(f"no worker in slot {slot}; the slots are: {known}", usage=True)
        handle = entry.current
        if handle is None or not handle.alive:
            raise ControlError(f"slot {slot} has no running worker now (it is being respawned); try again")
        if handle.state == WorkerState.DRAINING or handle.retire_reason:
            why = f" ({handle.retire_reason})" if handle.retire_reason else ""
            raise ControlError(f"{handle.name} is draining{why}: it is about to exit; measure a ready worker")
        if handle.state != WorkerState.READY:
            raise ControlError(f"{handle.name} is {handle.state}, not ready yet; try again")
        return handle

    async def ask(self, handle: WorkerHandle, op: str, seconds: float, **args: int) -> dict[str, Any]:
        """Send one ``diagnose`` request to ``handle`` and wait for its answer's result.

        ``args``: the op's own (``top`` for memory, ``rate`` for sample: contracts/messages.py Diagnose).
        """
        ident = next(self._ids)
        future: asyncio.Future[DiagnoseResult] = asyncio.get_running_loop().create_future()
        self.pending[ident] = future
        try:
            if not handle.send(Diagnose(id=ident, op=op, seconds=seconds, **args)):
                raise ControlError(f"{handle.name} is gone")
            try:
                answer = await asyncio.wait_for(future, seconds + ANSWER_GRACE)
            except asyncio.TimeoutError:
                raise ControlError(f"{handle.name} did not answer within {seconds + ANSWER_GRACE:g} s") from None
        finally:
            self.pending.pop(ident, None)
        if not answer.ok:
            raise ControlError(f"{handle.name}: {answer.error or 'refused'}")
        return answer.result or {}

    async def memory(self, args: dict[str, Any]) -> dict[str, Any]:
        seconds = _seconds(args.get("seconds", 10))
        top = args.get("top", 10)
        if not isinstance(top, int) or isinstance(top, bool) or not 1 <= top <= 50:
            raise ControlError(f"--top must be from 1 to 50, got {top!r:.40}", usage=True)
        handle = self.target(args.get("slot"))
        result = await self.ask(handle, "memory", seconds, top=top)
        return {"worker": handle.slot, "pid": handle.pid, **result}

    async def profile(self, args: dict[str, Any]) -> dict[str, Any]:
        seconds = _seconds(args.get("seconds", 10))
        out, fmt = str(args.get("out") or ""), str(args.get("format") or "svg")
        if fmt not in FORMATS:
            raise ControlError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r:.40}", usage=True)
        if not out or not os.path.isabs(out):
            raise ControlError("--out must be an absolute path (the CLI makes it one)", usage=True)
        if not os.path.isdir(os.path.dirname(out)):
            raise ControlError(f"--out: the directory {os.path.dirname(out)} does not exist", usage=True)
        rate = args.get("rate", 100)
        if not isinstance(rate, int) or isinstance(rate, bool) or not 1 <= rate <= 1000:
            raise ControlError(f"--rate must be from 1 to 1000 samples per second, got {rate!r:.40}", usage=True)
        handle = self.target(args.get("slot"))
        if handle.pid in self.profiling:
            raise ControlError(f"{handle.name} is already being profiled; try again after it")
        self.profiling.add(handle.pid)
        try:
            stacks, used, note = await self._sample(handle, str(args.get("tool") or "auto"), seconds, rate)
        finally:
            self.profiling.discard(handle.pid)
        title = f"asynccluster worker {handle.slot} (pid {handle.pid}), {seconds:g} s"
        flamegraph.write(stacks, out, fmt, title)
        return {
            "worker": handle.slot, "pid": handle.pid, "tool": used, "note": note, "seconds": seconds,
            "samples": sum(stacks.values()), "file": out, "format": fmt, "top": flamegraph.top_functions(stacks),
        }  # fmt: skip

    async def _sample(self, handle: WorkerHandle, tool: str, seconds: float, rate: int) -> tuple[Stacks, str, str]:
        """(stacks, the tool used, a note): py-spy if installed (``auto``), and the stdlib
        sampler when py-spy is missing or cannot attach (no ptrace rights, e.g. a container
        without CAP_SYS_PTRACE); ``--tool`` forces one."""
        spy = py_spy_path() if tool in ("auto", "py-spy") else None
        if tool == "py-spy" and spy is None:
            raise ControlError("py-spy is not installed (pip install 'asynccluster[diagnose]')")
        note = ""
        if spy is not None:
            try:
                return await run_py_spy(spy, handle.pid, seconds, rate), "py-spy", ""
            except PySpyFailed as exc:
                if tool == "py-spy":
                    raise
                note = f"{exc}; used the stdlib sampler instead"
                logger.warning("profile of %s: %s", handle.name, note)
        answer = await self.ask(handle, "sample", seconds, rate=rate)
        return sampled_stacks(answer), "sampler", note


def py_spy_path() -> str | None:
    """py-spy beside our interpreter (a venv), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return beside if os.access(beside, os.X_OK) else shutil.which("py-spy")


async def run_py_spy(spy: str, pid: int, seconds: float, rate: int) -> flamegraph.Stacks:
    """``py-spy record`` on ``pid`` (non-blocking: the worker is never paused) -> stacks."""
    with tempfile.TemporaryDirectory(prefix="asynccluster-profile-") as tmp:
        raw = os.path.join(tmp, "stacks.txt")
        process = await asyncio.create_subprocess_exec(
            spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", str(rate),
            "--format", "raw", "--function", "--nonblocking", "--output", raw,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            output, _ = await asyncio.wait_for(process.communicate(), seconds + ANSWER_GRACE)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
            raise ControlError(f"py-spy did not finish within {seconds + ANSWER_GRACE:g} s") from None
        if process.returncode != 0 or not os.path.exists(raw):
            said = output.decode(errors="replace").strip().splitlines()[-3:]
            raise PySpyFailed(f"py-spy failed (exit {process.returncode}): {' | '.join(said)[:500]}")
        with open(raw, encoding="utf-8", errors="replace") as file:
            return flamegraph.parse_collapsed(file.read())


def sampled_stacks(answer: dict[str, Any]) -> flamegraph.Stacks:
    """The stdlib sampler's answer (worker/diagnose_ops.py) -> stacks; bad entries skipped."""
    frames = [str(name) for name in answer.get("frames", [])]
    stacks: flamegraph.Stacks = {}
    for entry in answer.get("stacks", []):
        try:
            indexes, count = entry
            stack = tuple(frames[i] for i in indexes)
        except (TypeError, ValueError, IndexError):
            continue
        if isinstance(count, int) and count > 0:
            stacks[stack] = stacks.get(stack, 0) + count
    return stacks


def _slot_number(value: Any) -> int:
    if isinstance(value, str) and SLOT.fullmatch(value.strip()):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ControlError(f"expected a worker slot number (--worker SLOT), got {value!r:.40}", usage=True)
    return value


def _seconds(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.1 <= value <= MAX_SECONDS:
        raise ControlError(f"--seconds must be from 0.1 to {MAX_SECONDS:g}, got {value!r:.40}", usage=True)
    return float(value)


def control_handlers(supervisor: Any, cluster: str) -> dict[str, Handler]:
    """The control socket's ``errors``, ``slow``, ``memory`` and ``profile`` commands."""

    def diagnostics() -> Diagnostics:
        found = getattr(supervisor, "diagnostics", None)
        if not isinstance(found, Diagnostics):
            raise ControlError("this master does not collect diagnostics")
        return found

    async def errors(args: dict[str, Any]) -> dict[str, Any]:
        return {"cluster": cluster, **diagnostics().error_report(tracebacks=bool(args.get("tracebacks", True)))}

    async def slow(args: dict[str, Any]) -> dict[str, Any]:
        return {"cluster": cluster, **diagnostics().slow_report()}

    async def memory(args: dict[str, Any]) -> dict[str, Any]:
        return {"cluster": cluster, **await diagnostics().memory(args)}

    async def profile(args: dict[str, Any]) -> dict[str, Any]:
        return {"cluster": cluster, **await diagnostics().profile(args)}

    return {"errors": errors, "slow": slow, "memory": memory, "profile": profile}
