"""Grouping app exceptions (issue 15): the app frame, what is kept, the bounded store."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from asynccluster.contracts.messages import Errors, WorkerMessage
from asynccluster.observe import errors as grouping
from asynccluster.observe.errors import ErrorGroups
from asynccluster.worker.diagnose import ErrorBatch
from tests.waiting import wait_for


def raised(function: Any) -> BaseException:
    try:
        function()
    except Exception as exc:
        return exc
    raise AssertionError("did not raise")


def app_code_calling_stdlib() -> None:
    json.loads("{broken")  # the app frame of a stdlib failure is this line


def test_app_frame_is_the_apps_line_not_the_library_raising() -> None:
    exc = raised(app_code_calling_stdlib)
    frame = grouping.app_frame(exc.__traceback__)
    line = app_code_calling_stdlib.__code__.co_firstlineno + 1
    assert frame == f"tests/diagnose/test_diagnose_errors.py:{line}:app_code_calling_stdlib"
    assert grouping.type_name(exc) == "json.decoder.JSONDecodeError"


def test_app_frame_falls_back_outside_asyncio_then_innermost() -> None:
    exc = raised(lambda: json.loads("{broken"))  # innermost app frame: this lambda
    assert grouping.app_frame(exc.__traceback__).endswith(":<lambda>")
    assert grouping.app_frame(None) == "?"


def test_request_line_keeps_the_path_only() -> None:
    scope = {"method": "GET", "path": "/login", "query_string": b"token=secret", "headers": [(b"cookie", b"s=1")]}
    assert grouping.request_line(scope) == "GET /login"
    long = grouping.request_line({"method": "POST", "path": "/" + "a" * 1000})
    assert len(long) < 220 and long.endswith("...")


def test_message_and_traceback_are_cut() -> None:
    exc = ValueError("x" * 10_000)
    assert len(grouping.short_message(exc)) == grouping.MESSAGE_LIMIT + 3
    try:
        raise exc
    except ValueError as caught:
        assert len(grouping.format_traceback(caught)) <= grouping.TRACEBACK_LIMIT + 4


def entry(kind: str, frame: str, count: int, last: float = 1.0, **more: Any) -> dict[str, Any]:
    return {"type": kind, "frame": frame, "count": count, "first_seen": last, "last_seen": last, "message": "m",
            "traceback": "tb", "request": "GET /", **more}  # fmt: skip


def test_store_merges_workers_and_counts() -> None:
    store = ErrorGroups()
    store.merge(0, [entry("ValueError", "app.py:1:f", 3), entry("KeyError", "app.py:2:g", 1)])
    store.merge(1, [entry("ValueError", "app.py:1:f", 2, last=5.0, request="GET /x")])
    listing = store.listing()
    assert [(g["type"], g["count"], g["workers"]) for g in listing] == [("ValueError", 5, [0, 1]), ("KeyError", 1, [0])]
    assert listing[0]["request"] == "GET /x" and listing[0]["last_seen"] == 5.0 and listing[0]["first_seen"] == 1.0
    assert store.total == 6
    assert "traceback" not in store.listing(tracebacks=False)[0]


def test_store_is_bounded_least_recently_seen_evicted() -> None:
    store = ErrorGroups(limit=3)
    for index in range(5):
        store.merge(0, [entry("E", f"f:{index}:x", 1)])
    store.merge(0, [entry("E", "f:2:x", 1)])  # seen again: most recent now
    store.merge(0, [entry("E", "f:9:x", 1)])
    assert sorted(g["frame"] for g in store.listing()) == ["f:2:x", "f:4:x", "f:9:x"]
    assert store.evicted == 3


def test_store_skips_malformed_entries() -> None:
    store = ErrorGroups()
    store.merge(
        0, ["junk", {"type": "E", "frame": "f", "count": "3"}, {"type": "E", "count": True}, entry("E", "f", 0)]
    )
    assert store.listing() == []


def test_worker_batch_groups_and_sends_once_per_interval() -> None:
    sent: list[WorkerMessage] = []
    loop = asyncio.new_event_loop()
    try:
        batch = ErrorBatch(loop, sent.append, delay=0.01)
        for path in ("/a?secret=1", "/b", "/c"):
            batch.add(raised(lambda: 1 / 0), {"method": "GET", "path": path.split("?")[0]})
        batch.add(raised(app_code_calling_stdlib), {"method": "POST", "path": "/d"})

        loop.run_until_complete(wait_for(lambda: sent, "the batch's own timer to send it", 5))
    finally:
        loop.close()
    batch_sent = sent[0]
    assert len(sent) == 1 and isinstance(batch_sent, Errors)
    counts = sorted((g["type"], g["count"]) for g in batch_sent.groups)
    assert counts == [("ZeroDivisionError", 3), ("json.decoder.JSONDecodeError", 1)]
    assert all("Traceback" in g["traceback"] for g in batch_sent.groups)


def test_worker_batch_caps_groups() -> None:
    sent: list[WorkerMessage] = []
    loop = asyncio.new_event_loop()
    try:
        batch = ErrorBatch(loop, sent.append, delay=60)
        for index in range(grouping.MAX_GROUPS + 5):
            batch.add(type(f"E{index}", (Exception,), {})(), {"method": "GET", "path": "/"})  # a type per group
        batch.flush()
    finally:
        loop.close()
    batch_sent = sent[0]
    assert isinstance(batch_sent, Errors)
    assert len(batch_sent.groups) == grouping.MAX_GROUPS and batch_sent.dropped == 5
