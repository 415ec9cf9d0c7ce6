"""The dashboard's HTTP side against real clusters (issue 12): guards, stream, timeline, peers.

No browser here (tests/dashboard/test_browser.py has it): plain requests on 127.0.0.1, each
cluster a real ``python -m asynccluster run`` with ``--admin 127.0.0.1:0``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
from typing import Any

from tests.dashboard.conftest import TOKEN, Admin
from tests.waiting import wait_until

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


def open_stream(admin: Admin) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    connection = http.client.HTTPConnection("127.0.0.1", admin.port, timeout=30)
    connection.request("GET", "/api/stream")
    return connection, connection.getresponse()


def read_event(response: http.client.HTTPResponse) -> tuple[str, dict[str, Any]]:
    """The next SSE message's event name and JSON data (skipping the ``retry:`` field)."""
    name, data = "", ""
    while True:
        line = response.readline().decode()
        assert line, "the stream ended"
        line = line.rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and name:
            return name, json.loads(data)


def test_actions_need_the_generated_token_and_the_same_origin(start_cluster: Any) -> None:
    admin = start_cluster("--workers", "2")
    token = admin.cluster.wait_for(r"dashboard on http://127\.0\.0\.1:\d+/#token=(\S+) ").group(1)
    host = {"Host": f"127.0.0.1:{admin.port}"}
    # Read-only views need no token.
    for path in ("/", "/dashboard", "/static/dashboard.js", "/static/dashboard.css", "/api/state", "/api/clusters"):
        assert admin.request("GET", path)[0] == 200, path
    refused = [
        admin.request("POST", "/api/scale", {"count": "+1"}),
        admin.request("POST", "/api/scale", {"count": "+1"}, {"X-Asynccluster-Token": "wrong"}),
        admin.request("POST", "/api/scale", {"count": "+1"},
                      {"X-Asynccluster-Token": token, "Origin": "http://evil.example", **host}),
        admin.request("POST", "/api/scale", {"count": "+1"},
                      {"X-Asynccluster-Token": token, "Sec-Fetch-Site": "cross-site"}),
        admin.request("GET", "/api/state", headers={"Host": f"rebound.example:{admin.port}"}),
        # The plain admin views too (attack run): a rebinding page must not read them either.
        admin.request("GET", "/status", headers={"Host": f"rebound.example:{admin.port}"}),
        admin.request("GET", "/metrics", headers={"Host": f"rebound.example:{admin.port}"}),
    ]  # fmt: skip
    assert [status for status, _ in refused] == [403] * 7, refused
    for count in ("+\u0661", "\u0663"):  # Arabic-Indic digits: int() takes them, we must not
        odd = admin.request("POST", "/api/scale", {"count": count}, {"X-Asynccluster-Token": token})
        assert odd[0] == 400, odd
    assert admin.request("GET", "/api/reload")[0] == 405  # no GET side effects
    bad = admin.request("POST", "/api/scale", {"count": "many"}, {"X-Asynccluster-Token": token})
    assert bad[0] == 400 and "expected N, +N or -N" in bad[1]["error"]
    assert len(admin.request("GET", "/status")[1]["workers"]) == 2
    # With the token (as a bearer token too), from the same origin: the supervisor's verb runs.
    status, body = admin.request("POST", "/api/scale", {"count": "2"},
                                 {"Authorization": f"Bearer {token}", "Origin": f"http://127.0.0.1:{admin.port}",
                                  **host, **SAME_ORIGIN})  # fmt: skip
    assert status == 200 and body["message"] == "already 2 workers", body


def test_stream_sends_the_history_then_a_frame_a_second_and_is_capped(start_cluster: Any) -> None:
    admin = start_cluster("--workers", "1", "--admin-token", TOKEN)
    wait_until(lambda: len(admin.state()["history"]) >= 3, "three seconds of history")
    connection, response = open_stream(admin)
    # The responses own the sockets (Connection: close): keep them, or the streams close.
    extra: list[tuple[http.client.HTTPConnection, http.client.HTTPResponse]] = []
    try:
        assert response.status == 200 and response.getheader("Content-Type", "").startswith("text/event-stream")
        name, snapshot = read_event(response)
        assert name == "snapshot" and len(snapshot["history"]) >= 3
        assert [e["kind"] for e in snapshot["events"]][:2] == ["spawn", "ready"]
        assert any("ready in" in line["text"] and line["slot"] == 0 for line in snapshot["logs"])
        name, frame = read_event(response)
        assert name == "frame" and frame["point"]["t"] > snapshot["history"][-1]["t"]
        assert frame["workers"][0]["state"] == "ready" and frame["cluster"]["ready"] == 1
        # At most 8 streams: the 9th is answered 503 at once.
        for _ in range(7):
            extra.append(open_stream(admin))
            assert extra[-1][1].status == 200
        extra.append(open_stream(admin))
        assert extra[-1][1].status == 503
    finally:
        for other, other_response in [(connection, response), *extra]:
            other_response.close()
            other.close()


def test_a_hang_shows_in_the_timeline_with_its_stacks(start_cluster: Any) -> None:
    admin = start_cluster("--workers", "1", "--timeout", "1", "--admin-token", TOKEN)
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", admin.cluster.port), timeout=5) as sock:
        sock.sendall(b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")  # blocks the worker's loop for good

        def hang_event() -> dict[str, Any] | None:
            events = [
                e for e in admin.state()["events"] if e["kind"] == "hang" and "spin_forever" in e.get("stacks", "")
            ]
            return events[0] if events else None

        event = wait_until(hang_event, "a hang event with the dumped stacks")
    assert "no heartbeat" in event["text"] and event["slot"] == 0
    wait_until(lambda: any(e["kind"] == "exit" and e["pid"] == event["pid"] for e in admin.state()["events"]),
               "the hung worker's exit in the timeline")  # fmt: skip


def test_the_page_links_to_the_other_clusters_of_the_user(start_cluster: Any) -> None:
    first = start_cluster("--workers", "1", name="alpha")
    second = start_cluster("--workers", "1", name="beta")
    clusters = wait_until(lambda: [c for c in first.request("GET", "/api/clusters")[1] if c["name"] == "beta"],
                          "beta in alpha's list of clusters")  # fmt: skip
    assert clusters[0]["url"] == second.url and clusters[0]["workers"] == 1 and not clusters[0]["self"]
