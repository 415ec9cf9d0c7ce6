"""Listeners: reuseport groups, bind errors, unix sockets, inherited fds, queue depth,
and the way a listening socket reaches a spawned worker."""

from __future__ import annotations

import multiprocessing
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from asynccluster.config import Config
from asynccluster.sockets import BindError, accept_queue_depth, create_listeners, systemd_fds


def test_reuseport_group_shares_one_port() -> None:
    listeners = create_listeners(Config(port=0, listener="reuseport"), 3)
    try:
        ports = {sock.getsockname()[1] for sock in listeners.all_sockets()}
        assert len(listeners.by_slot) == 3 and len(ports) == 1
        assert listeners.address == f"http://127.0.0.1:{ports.pop()}"
        added = listeners.socket_for(3)  # scale up: joins the same group
        assert added.getsockname()[1] == listeners.port and listeners.group[-1] is added
        listeners.release(1)  # the kernel moves the last socket into the freed index
        assert listeners.group == [listeners.by_slot[0], added, listeners.by_slot[2]]
    finally:
        listeners.close()


@pytest.mark.parametrize("listener", ["reuseport", "shared"])
def test_port_in_use_is_one_clear_error(listener: str) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    try:
        with pytest.raises(BindError, match="address already in use"):
            create_listeners(Config(port=squatter.getsockname()[1], listener=listener), 2)
    finally:
        squatter.close()


def test_another_reuseport_group_on_the_port_is_detected() -> None:
    first = create_listeners(Config(port=0, listener="reuseport"), 1)
    try:
        with pytest.raises(BindError, match="address already in use"):
            create_listeners(Config(port=first.port, listener="reuseport"), 1)
    finally:
        first.close()


def test_accept_queue_depth_counts_waiting_connections() -> None:
    listeners = create_listeners(Config(port=0, listener="shared"), 1)
    sock = listeners.all_sockets()[0]
    clients = [socket.create_connection(("127.0.0.1", listeners.port)) for _ in range(3)]
    try:
        assert accept_queue_depth(sock) == 3
        sock.accept()[0].close()
        assert accept_queue_depth(sock) == 2
        assert listeners.queue_depths() == {-1: 2}
    finally:
        for client in clients:
            client.close()
        listeners.close()


def test_unix_socket_replaces_a_stale_file_but_not_a_live_one(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens
    listeners = create_listeners(Config(uds=path), 2)
    try:
        assert listeners.mode == "shared" and listeners.address == f"unix:{path}"
        with pytest.raises(BindError, match="already in use"):
            create_listeners(Config(uds=path), 1)
    finally:
        listeners.close()
    assert not os.path.exists(path)  # ours: removed at close


def test_inherited_fd_and_systemd_activation() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    fd = sock.detach()
    listeners = create_listeners(Config(fd=fd), 2)
    try:
        assert listeners.mode == "shared" and listeners.port > 0
    finally:
        listeners.close()
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2"}
    assert systemd_fds(env) == [3, 4] and "LISTEN_FDS" not in env
    assert systemd_fds({"LISTEN_PID": "1", "LISTEN_FDS": "1"}) == []


def test_bad_fd_is_a_bind_error() -> None:
    with pytest.raises(BindError, match="fd"):
        create_listeners(Config(fd=987), 1)


def accept_one_and_answer(sock: socket.socket) -> None:
    """Runs in a spawned child: serve one connection on the socket the parent passed."""
    connection, _ = sock.accept()
    connection.sendall(f"pid {os.getpid()}".encode())
    connection.close()


@pytest.mark.integration  # real processes (tests/conftest.py: the tiers)
def test_a_listening_socket_reaches_a_spawned_child() -> None:
    """The mechanism spawner.py relies on: multiprocessing pickles the socket by passing its
    descriptor to the spawned child, which then accepts on the very same socket."""
    listeners = create_listeners(Config(port=0, listener="reuseport"), 1)
    try:
        process = multiprocessing.get_context("spawn").Process(
            target=accept_one_and_answer, args=(listeners.by_slot[0],)
        )
        process.start()
        with socket.create_connection(("127.0.0.1", listeners.port), timeout=20) as client:
            client.settimeout(20)
            assert client.recv(100) == f"pid {process.pid}".encode()
        process.join(20)
        assert process.exitcode == 0
    finally:
        listeners.close()


def test_a_claimed_port_is_refused_to_a_second_master_before_anyone_binds() -> None:
    """Issue 9, the two-clusters race made deterministic: both masters passed the probe of a
    free port; the first to claim it owns it, the second gets the bind error (exit 5)."""
    from asynccluster.sockets import claim_port

    first, port = claim_port(socket.AF_INET, "127.0.0.1", 0)
    assert first is not None
    try:
        with pytest.raises(BindError, match="another asynccluster master owns it"):
            claim_port(socket.AF_INET, "127.0.0.1", port)  # nothing listens there yet
        with pytest.raises(BindError, match="owns it"):
            create_listeners(Config(port=port, listener="reuseport"), 2)
    finally:
        first.release()
    again, _ = claim_port(socket.AF_INET, "127.0.0.1", port)  # released with the master
    assert again is not None
    again.release()


def test_the_claim_covers_every_spelling_of_the_host_and_every_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack run on issue 9: 127.0.0.1 and 0.0.0.0 on one port overlap, and the same user's
    shell and service may have different XDG_RUNTIME_DIRs; neither may get a second cluster in."""
    from asynccluster.sockets import claim_port

    first, port = claim_port(socket.AF_INET, "127.0.0.1", 0)
    assert first is not None
    try:
        with pytest.raises(BindError, match="owns it"):
            claim_port(socket.AF_INET, "0.0.0.0", port)
        monkeypatch.setenv("XDG_RUNTIME_DIR", "/nonexistent-session")
        with pytest.raises(BindError, match="owns it"):
            claim_port(socket.AF_INET, "127.0.0.1", port)
    finally:
        first.release()


def test_listeners_hold_the_claim_until_closed() -> None:
    listeners = create_listeners(Config(port=0, listener="reuseport"), 1)
    try:
        with pytest.raises(BindError, match="owns it"):
            create_listeners(Config(port=listeners.port, listener="reuseport"), 1)
    finally:
        listeners.close()
    create_listeners(Config(port=listeners.port, listener="reuseport"), 1).close()


def test_a_bracketed_ipv6_host_is_accepted() -> None:
    from asynccluster.sockets import resolve_host

    assert resolve_host("[::1]") == (socket.AF_INET6, "::1")


def _claim_after_barrier(port: int, start: Any, done: Any, results: Any) -> None:
    """A child: bind the cluster's listeners the moment every contender is ready; hold them
    until every contender has tried (what two masters started at once do)."""
    start.wait()
    try:
        listeners = create_listeners(Config(port=port, listener="reuseport"), 2)
    except BindError as exc:
        results.put(f"refused: {exc}")
        done.wait()
        return
    results.put("bound")
    done.wait()
    listeners.close()


@pytest.mark.integration  # real processes (tests/conftest.py: the tiers)
def test_two_masters_started_at_the_same_instant_one_owns_the_port() -> None:
    """Issue 9: both used to pass the check and share the port through SO_REUSEPORT."""
    context = multiprocessing.get_context("spawn")
    for _ in range(2):
        free = socket.socket()
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
        free.close()
        start, done, results = context.Barrier(2), context.Barrier(2), context.Queue()
        children = [context.Process(target=_claim_after_barrier, args=(port, start, done, results)) for _ in range(2)]
        for child in children:
            child.start()
        outcomes = sorted(results.get(timeout=30) for _ in children)
        for child in children:
            child.join(30)
        assert outcomes[0] == "bound" and outcomes[1].startswith("refused:"), outcomes
        assert "address already in use" in outcomes[1]
