"""Steering of a real SO_REUSEPORT group on 127.0.0.1 (issue 4: scale down loses nothing).

Each test builds a group of listening sockets on one OS-assigned port, opens a bounded number
of client connections, and reads where the kernel queued them with queue_depth() before
accepting them with non-blocking accept().
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator

import pytest

from asynccluster.master import steering
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reuseport programs are Linux-only")

CONNECTIONS = 60  # per round; with 3 sockets the chance that hashing misses one is 3·(2/3)^60
DEADLINE = 5.0


def listener(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(256)
    sock.setblocking(False)
    return sock


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


@pytest.fixture
def group() -> Iterator[list[socket.socket]]:
    first = listener(0)
    members = [first, listener(port_of(first)), listener(port_of(first))]
    yield members
    for sock in members:
        sock.close()


def connect_many(port: int, count: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) for _ in range(count)]


def wait_queued(group: list[socket.socket], total: int) -> list[int]:
    """Queue depth of each socket once `total` connections are queued (with a deadline)."""
    return wait_until(
        lambda: [steering.queue_depth(sock) for sock in group], f"{total} queued connections", DEADLINE,
        done=lambda depths: sum(depths) >= total, interval=0.01,
    )  # fmt: skip


def accept_all(sock: socket.socket) -> int:
    accepted = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return accepted
        conn.close()
        accepted += 1


def spread(group: list[socket.socket], count: int = CONNECTIONS) -> list[int]:
    """Open `count` connections; return how many each socket accepted (checked against queue_depth)."""
    clients = connect_many(port_of(group[0]), count)
    try:
        depths = wait_queued(group, count)
        accepted = [accept_all(sock) for sock in group]
        assert depths == accepted, "queue_depth disagrees with what accept() found"
        return accepted
    finally:
        for client in clients:
            client.close()


def test_queue_depth_counts_queued_connections() -> None:
    sock = listener(0)
    try:
        assert steering.queue_depth(sock) == 0
        clients = connect_many(port_of(sock), 5)
        assert wait_queued([sock], 5) == [5]
        sock.accept()[0].close()
        assert steering.queue_depth(sock) == 4
        assert accept_all(sock) == 4
        assert steering.queue_depth(sock) == 0
        for client in clients:
            client.close()
    finally:
        sock.close()


def test_queue_depth_of_a_non_listener_is_zero() -> None:
    sock = socket.socket()
    try:
        assert steering.queue_depth(sock) == 0
    finally:
        sock.close()


def test_default_hashing_uses_every_socket(group: list[socket.socket]) -> None:
    assert all(count > 0 for count in spread(group))


@pytest.mark.parametrize("retiring", [0, 1, 2])
def test_steer_away_sends_nothing_to_the_retiring_socket(group: list[socket.socket], retiring: int) -> None:
    assert steering.steer_away(group, group[retiring]) == "cbpf"
    counts = spread(group)
    assert counts[retiring] == 0
    assert sum(counts) == CONNECTIONS
    assert all(count > 0 for index, count in enumerate(counts) if index != retiring)


def test_clear_steering_restores_spreading(group: list[socket.socket]) -> None:
    steering.steer_away(group, group[1])
    assert spread(group)[1] == 0
    steering.clear_steering(group)
    assert all(count > 0 for count in spread(group))
    steering.clear_steering(group)  # idempotent: nothing attached is not an error


def test_scale_down_drains_then_closes_without_reset(group: list[socket.socket]) -> None:
    """The whole scale-down sequence: connections queued before steering are accepted, none reset."""
    retiring = group[2]
    early = connect_many(port_of(group[0]), CONNECTIONS)
    wait_queued(group, CONNECTIONS)
    assert steering.steer_away(group, retiring) == "cbpf"
    late = connect_many(port_of(group[0]), CONNECTIONS)
    wait_queued(group, 2 * CONNECTIONS)
    drained = accept_all(retiring)  # the retiring worker drains its queue ...
    assert steering.queue_depth(retiring) == 0
    retiring.close()  # ... and only then is the socket closed
    steering.detach(group, retiring)
    steering.clear_steering(group)
    assert drained + sum(accept_all(sock) for sock in group) == 2 * CONNECTIONS
    for client in early + late:
        client.close()


def test_detach_keeps_the_kernel_order(group: list[socket.socket]) -> None:
    """Close a middle socket, add a new one: steering by index must still hit the right sockets."""
    port = port_of(group[0])
    closed = group[0]
    closed.close()
    steering.detach(group, closed)  # the kernel moved its last socket into index 0
    group.append(listener(port))
    assert len(group) == 3
    for retiring in range(3):
        assert steering.steer_away(group, group[retiring]) == "cbpf"
        counts = spread(group)
        assert counts[retiring] == 0
        assert all(count > 0 for index, count in enumerate(counts) if index != retiring)
    steering.clear_steering(group)


def test_a_lone_socket_cannot_be_steered_away_from() -> None:
    sock = listener(0)
    try:
        method = steering.steer_away([sock], sock)
        assert method in ("tcp_migrate_req", "none")
        assert (method == "tcp_migrate_req") == steering.migrate_req_enabled()
    finally:
        sock.close()


def test_unknown_socket_is_an_error(group: list[socket.socket]) -> None:
    stranger = socket.socket()
    try:
        with pytest.raises(ValueError):
            steering.steer_away(group, stranger)
    finally:
        stranger.close()


@pytest.mark.skipif(steering.migrate_req_enabled(), reason="the kernel migrates queued connections")
def test_closing_a_listener_resets_its_queue() -> None:
    """Why steering exists: without tcp_migrate_req, closing a listener resets what it had queued."""
    first = listener(0)
    second = listener(port_of(first))
    group = [first, second]
    assert steering.steer_away(group, second) == "cbpf"  # queue everything on `first`, on purpose
    clients = connect_many(port_of(first), 3)
    assert wait_queued(group, 3) == [3, 0]
    first.close()
    resets = 0
    for client in clients:
        client.settimeout(DEADLINE)
        try:
            if client.recv(1) == b"":
                resets += 1  # an orderly close would also be a lost request
        except ConnectionResetError:
            resets += 1
        client.close()
    second.close()
    assert resets == 3
