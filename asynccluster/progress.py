"""Progress of ``reload`` and ``scale`` as it happens (issue 11 item 7).

The operation is one control request that answers when it is done. Meanwhile a second
connection asks the master for its lifecycle events (the supervisor's event ring, the one
the dashboard shows: spawn, ready, exit) and prints each as it comes, with the seconds
since the command started::

    [  0.0s] worker 0 (pid 2211, incarnation 2) started
    [  0.7s] worker 0 (pid 2211, incarnation 2) ready in 0.70 s
    [  1.4s] worker 0 (pid 2180, incarnation 1) exited with exit code 0 after 95.2 s (retired: reload)
    reloaded 2/2 workers, 0 failures: new workers ready in 1.4 s, then the old ones drain

After the answer it waits, at most :data:`DRAIN_WAIT` seconds, for the old workers the
answer names to have drained and exited, so "old pid drained" is part of the report; the
final line is the operation's own message.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

POLL = 0.2  # seconds between two event requests of a running operation
DRAIN_WAIT = 10.0  # after the answer: how long we wait for the old workers' exits
SHOWN = frozenset(("spawn", "ready", "exit", "respawn", "hang", "recycle"))


class Progress:
    """Prints the master's events after ``seq`` (see the module docstring)."""

    def __init__(self, request: Callable[..., Any], out: TextIO | None = None) -> None:
        self.request = request  # the events connection's ControlClient.request
        self.out = out or sys.stdout
        self.started = time.monotonic()
        answer = request("events")
        self.seq = int(answer.get("seq", 0))
        self.exited: set[int] = set()

    def poll(self) -> None:
        answer = self.request("events", after=self.seq)
        for event in answer.get("items", []):
            self.seq = max(self.seq, int(event.get("seq", 0)))
            if event.get("kind") == "exit" and isinstance(event.get("pid"), int):
                self.exited.add(event["pid"])
            if event.get("kind") in SHOWN:
                elapsed = time.monotonic() - self.started
                print(f"[{elapsed:6.1f}s] {event.get('text', '')}", file=self.out, flush=True)

    def follow(self, operation: Callable[[], Any]) -> Any:
        """Run ``operation`` (blocking) in a thread, printing events until it answered and the
        old pids it names have exited (or DRAIN_WAIT passed); its answer, or its exception."""
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["result"] = operation()
            except BaseException as exc:  # given back to the caller below
                outcome["error"] = exc

        worker = threading.Thread(target=run, name="asynccluster-operation", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(POLL)  # the operation's end, or the next poll
            self._poll_quietly()
        if "error" in outcome:
            raise outcome["error"]
        result = outcome["result"]
        old = old_pids(result)
        deadline = time.monotonic() + DRAIN_WAIT
        while old - self.exited and time.monotonic() < deadline:
            time.sleep(POLL)  # the pace of the report, not a synchronisation
            self._poll_quietly()
        return result

    def _poll_quietly(self) -> None:
        try:
            self.poll()
        except Exception:  # the report is a courtesy: the operation's answer decides
            pass


def old_pids(result: Any) -> set[int]:
    """The pids a reload result says were replaced (``pids``: slot -> [old, new])."""
    pids = result.get("pids") if isinstance(result, dict) else None
    if not isinstance(pids, dict):
        return set()
    return {pair[0] for pair in pids.values() if isinstance(pair, list) and pair and isinstance(pair[0], int)}


__all__ = ["Progress", "old_pids"]
