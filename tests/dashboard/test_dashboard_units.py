"""The dashboard's pure parts (issue 12): rings, history, guards, and the SSE hub's bound."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from typing import Any

import pytest

from asynccluster.observe.events import EventRing, LogRing
from asynccluster.observe.guard import host_allowed, refuse_action
from asynccluster.observe.history import HISTORY, Recorder
from asynccluster.observe.peers import link_for
from asynccluster.observe.sse import Hub, encode
from asynccluster.observe.stats import LATENCY_BUCKETS

# ---------------------------------------------------------------- rings


def test_event_ring_is_bounded_and_hands_out_what_is_new() -> None:
    ring = EventRing(size=3, clock=lambda: 100.0)
    for index in range(5):
        ring.record("spawn", f"worker {index}", index, 1000 + index)
    assert [e["slot"] for e in ring.items()] == [2, 3, 4]
    assert [e["seq"] for e in ring.since(3)] == [4, 5] and ring.since(5) == []


@dataclass
class Outcome:
    ok: bool
    message: str


def test_operation_results_read_as_done_or_rolled_back() -> None:
    ring = EventRing()
    ring.record("reload", "reload started")
    assert ring.result("reload", Outcome(True, "reloaded 2/2")).ok
    ring.result("reload", Outcome(False, "reload aborted: import error"))
    ring.result("scale", Outcome(True, "scaled 2 -> 3 workers"))
    assert [e["text"] for e in ring.items()] == [
        "reload started",
        "reload done: reloaded 2/2",
        "reload rolled back: reload aborted: import error",
        "scaled 2 -> 3 workers",
    ]


def test_stacks_of_one_dump_join_one_hang_event() -> None:
    now = [10.0]
    ring = EventRing(clock=lambda: now[0])
    ring.stacks(1, 42, "Thread 0x1:\n  File a.py", "hung: no heartbeat for 5.0 s")
    now[0] += 0.5
    ring.stacks(1, 42, '  File "b.py", line 3', "hung: no heartbeat for 5.0 s")
    now[0] += 60
    ring.stacks(1, 42, "a later dump", "")
    hangs = ring.items()
    assert len(hangs) == 2 and hangs[0]["text"] == "hung: no heartbeat for 5.0 s"
    assert hangs[0]["stacks"] == 'Thread 0x1:\n  File a.py\n  File "b.py", line 3'
    assert hangs[1]["text"] == "stacks dumped"


def test_log_ring_attributes_lines_to_workers() -> None:
    ring = LogRing(size=2)
    logger = logging.getLogger("test.dashboard.logring")
    logger.propagate = False
    logger.addHandler(ring)
    logger.setLevel(logging.DEBUG)
    try:
        logger.info("plain master line")
        logger.error("a stack line", extra={"tag": "worker 3 pid 77"})
        logger.warning("worker 2 (pid 55, incarnation 4) exited with exit code 1")
    finally:
        logger.removeHandler(ring)
    lines = ring.ring.items()
    assert [(line["level"], line["slot"], line["pid"]) for line in lines] == [("error", 3, 77), ("warning", 2, 55)]


# ---------------------------------------------------------------- history


def heartbeat(pid: int, slot: int, requests: int, fast: int, slow: int, status: dict[str, int],
              beat: float = 1.0) -> dict[str, Any]:  # fmt: skip
    counts = [0] * (len(LATENCY_BUCKETS) + 1)
    counts[0], counts[7] = fast, slow  # <= 0.5 ms and (50 ms, 100 ms]
    stats = {"requests": requests, "in_flight": 1, "connections": 2, "status": status, "latency_counts": counts}
    return {"pid": pid, "slot": slot, "state": "ready", "req_per_s": 10.0, "cpu_percent": 5.0,
            "heartbeat": {"stats": stats, "loop_lag": 0.002, "rss": 50 * 1024 * 1024, "time": beat}}  # fmt: skip


def test_history_merges_the_workers_histograms_per_second() -> None:
    recorder = Recorder(clock=lambda: 1000.0)
    # Counts seen at the first tick are history nobody watched: they do not count.
    recorder.add({"workers": [heartbeat(1, 0, 100, 100, 0, {"200": 100})]})
    frame = recorder.add({"workers": [heartbeat(1, 0, 220, 200, 20, {"200": 210, "503": 10}, beat=2.0),
                                      heartbeat(2, 1, 5, 5, 0, {"200": 5}, beat=2.0)]})  # fmt: skip
    point = frame["point"]
    # New in this second: 100 + 5 fast answers and 20 slow ones (a new worker's counts are all
    # new): the median is fast, p90 and p99 are slow.
    assert point["p50"] is not None and point["p50"] <= 0.5
    assert 50 < point["p90"] <= 100 and 50 < point["p99"] <= 100
    assert (point["2xx"], point["5xx"]) == (115, 10)  # per second: one heartbeat interval
    # A tick that sees no new heartbeat keeps the rates (ticks and heartbeats are not in step).
    assert (
        recorder.add({"workers": [heartbeat(1, 0, 220, 200, 20, {"200": 210, "503": 10}, beat=2.0)]})["point"]["5xx"]
        == 10
    )
    assert point["rps"] == 20.0 and point["in_flight"] == 2 and point["connections"] == 4
    assert point["slots"] == {"0": 10.0, "1": 10.0} and point["loop_lag"] == 2.0 and point["rss"] == 100.0
    rows = {row["pid"]: row for row in frame["workers"]}
    assert rows[1]["status"] == {"2xx": 210, "3xx": 0, "4xx": 0, "5xx": 10}
    assert rows[2]["p99"] is not None and rows[2]["p99"] <= 0.5


def test_history_keeps_ten_minutes() -> None:
    recorder = Recorder()
    for _ in range(HISTORY + 5):
        recorder.add({"workers": []})
    assert len(recorder.points) == HISTORY == 600


# ---------------------------------------------------------------- guards


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        ("GET", {"x-asynccluster-token": "t0k"}, 405),
        ("POST", {}, 403),
        ("POST", {"x-asynccluster-token": "nope"}, 403),
        ("POST", {"x-asynccluster-token": "t0k", "sec-fetch-site": "cross-site"}, 403),
        ("POST", {"x-asynccluster-token": "t0k", "sec-fetch-site": "same-site"}, 403),
        ("POST", {"x-asynccluster-token": "t0k", "origin": "http://evil.example", "host": "127.0.0.1:9"}, 403),
        ("POST", {"x-asynccluster-token": "t0k", "origin": "null", "host": "127.0.0.1:9"}, 403),
        ("POST", {"x-asynccluster-token": "t0k", "origin": "http://127.0.0.1:9", "host": "127.0.0.1:9"}, None),
        ("POST", {"authorization": "Bearer t0k", "sec-fetch-site": "same-origin"}, None),
    ],
)
def test_actions_need_post_the_token_and_the_same_origin(method: str, headers: dict[str, str],
                                                         status: int | None) -> None:  # fmt: skip
    refused = refuse_action(method, headers, "t0k")
    assert (refused[0] if refused else None) == status


@pytest.mark.parametrize(
    ("host", "bound", "allowed"),
    [
        ("127.0.0.1:9000", "127.0.0.1", True),
        ("localhost:9000", "127.0.0.1", True),
        ("[::1]:9000", "::1", True),
        ("evil.example:9000", "127.0.0.1", False),
        ("evil.example:9000", "0.0.0.0", True),
    ],
)
def test_a_rebound_host_name_is_refused_on_loopback(host: str, bound: str, allowed: bool) -> None:
    assert host_allowed({"host": host}, bound) is allowed


def test_links_to_other_clusters_use_loopback_for_a_wildcard_bind() -> None:
    assert link_for("0.0.0.0:9001") == "http://127.0.0.1:9001/"
    assert link_for("127.0.0.1:9002") == "http://127.0.0.1:9002/" and link_for("") is None


# ---------------------------------------------------------------- the hub drops a reader that stopped reading


async def test_a_stream_that_stops_reading_is_dropped_not_buffered() -> None:
    hub = Hub(max_clients=2, max_buffer=64 * 1024)
    served: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await hub.serve(reader, writer, encode("snapshot", {}))
        served.set_result(None)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", port))  # and never reads
    try:
        while not hub.clients:
            await asyncio.sleep(0)  # the server accepts in a callback of this loop
        chunk = encode("frame", {"pad": "x" * 16384})
        for _ in range(10_000):
            if not hub.clients:
                break
            hub.broadcast(chunk)
            await asyncio.sleep(0)  # let the transport move what the kernel takes
        assert not hub.clients and hub.dropped == 1
        await asyncio.wait_for(served, 10)
    finally:
        client.close()
        server.close()
        await server.wait_closed()
