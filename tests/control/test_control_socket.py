"""The control socket server against a fake supervisor: protocol, validation, names, permissions."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from asynccluster.config import Config
from asynccluster.contracts import control as client
from asynccluster.master.control import ControlError, ControlServer, start_control
from asynccluster.observe.aggregate import Monitor
from tests.control.asuser import run_as
from tests.control.fakes import FakeSupervisor


def make_config(tmp_path: Path, name: str = "web", **changes: Any) -> Config:
    return Config(app="tests.apps.basic:app", name=name, control_dir=str(tmp_path / "ctl"), **changes)


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def raw(self, line: bytes) -> dict[str, Any]:
        self.writer.write(line)
        await self.writer.drain()
        response: dict[str, Any] = json.loads(await asyncio.wait_for(self.reader.readline(), 10))
        return response

    async def ask(self, cmd: str, **args: Any) -> dict[str, Any]:
        return await self.raw(json.dumps({"cmd": cmd, "args": args}).encode() + b"\n")


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[FakeSupervisor, Conn, Path]]:
    supervisor = FakeSupervisor()
    close = await start_control(supervisor, make_config(tmp_path))
    path = tmp_path / "ctl" / "web.sock"
    reader, writer = await asyncio.open_unix_connection(str(path))
    yield supervisor, Conn(reader, writer), path
    writer.close()
    await close()


async def test_socket_and_directory_are_private(served: tuple[FakeSupervisor, Conn, Path]) -> None:
    _, _, path = served
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


async def test_status_and_ping(served: tuple[FakeSupervisor, Conn, Path]) -> None:
    _, conn, path = served
    ping = await conn.ask("ping")
    assert ping == {"ok": True, "result": {"name": "web", "pid": os.getpid()}}
    status = (await conn.ask("status"))["result"]
    assert status["name"] == "web" and status["control_socket"] == str(path)
    assert status["totals"]["workers_ready"] == 2
    assert [w["pid"] for w in status["workers"]] == [1000, 1001]


async def test_operations_reach_the_supervisor(served: tuple[FakeSupervisor, Conn, Path]) -> None:
    supervisor, conn, _ = served
    reload = await conn.ask("reload")
    assert reload["ok"] and reload["result"]["message"].startswith("reloaded 2/2")
    assert reload["result"]["ok"] is True and reload["result"]["replaced"] == 2 and "elapsed" in reload["result"]
    scaled = await conn.ask("scale", count="+1")
    assert scaled["ok"] and scaled["result"]["target"] == 3 and scaled["result"]["previous"] == 2
    await conn.ask("scale", count="-1")
    await conn.ask("scale", count=4)
    restarted = await conn.ask("restart", slot=1)
    assert restarted["result"]["message"] == "restarted slot 1"
    assert supervisor.calls == [("reload", None), ("scale", 3), ("scale", 1), ("scale", 4), ("restart", 1)]


@pytest.mark.parametrize(
    ("cmd", "args", "message"),
    [
        ("scale", {"count": "0"}, "cannot scale to 0"),
        ("scale", {"count": "-2"}, "cannot scale to 0"),
        ("scale", {"count": "-5"}, "cannot scale to -3"),
        ("scale", {"count": "two"}, "expected N, +N or -N"),
        ("restart", {"slot": 7}, "no worker in slot 7; the slots are: 0, 1"),
        ("restart", {"slot": "x"}, "expected a slot number"),
        ("frobnicate", {}, "unknown command 'frobnicate'"),
    ],
)
async def test_bad_requests_get_clear_usage_errors(
    served: tuple[FakeSupervisor, Conn, Path], cmd: str, args: dict[str, Any], message: str
) -> None:
    supervisor, conn, _ = served
    response = await conn.ask(cmd, **args)
    assert response["ok"] is False and response["usage"] is True
    assert message in response["error"]
    assert supervisor.calls == []


async def test_malformed_lines_do_not_end_the_connection(served: tuple[FakeSupervisor, Conn, Path]) -> None:
    _, conn, _ = served
    assert "not JSON" in (await conn.raw(b"{nope\n"))["error"]
    assert "JSON object" in (await conn.raw(b"[1, 2]\n"))["error"]
    assert (await conn.ask("ping"))["ok"]


async def test_supervisor_refusals_are_reported(served: tuple[FakeSupervisor, Conn, Path]) -> None:
    supervisor, conn, _ = served
    supervisor.fail_with = RuntimeError("a reload is already running")
    response = await conn.ask("reload")
    assert response == {"ok": False, "error": "a reload is already running", "usage": False}


async def test_stop_answers_at_once_and_stops(served: tuple[FakeSupervisor, Conn, Path]) -> None:
    supervisor, conn, _ = served
    supervisor.stopped = asyncio.Event()
    response = await conn.ask("stop", force=True)
    assert response["ok"] and response["result"]["pid"] == os.getpid()
    await asyncio.wait_for(supervisor.stopped.wait(), 10)
    assert supervisor.calls == [("stop", True)]


async def test_close_removes_the_socket(tmp_path: Path) -> None:
    close = await start_control(FakeSupervisor(), make_config(tmp_path))
    path = tmp_path / "ctl" / "web.sock"
    assert path.exists()
    await close()
    assert not path.exists()


async def test_second_cluster_with_the_same_name_gets_a_suffix(tmp_path: Path) -> None:
    first = await start_control(FakeSupervisor(), make_config(tmp_path))
    second = await start_control(FakeSupervisor(), make_config(tmp_path))
    try:
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "ctl" / "web-2.sock"))
        status = (await Conn(reader, writer).ask("status"))["result"]
        assert status["name"] == "web-2"
        writer.close()
    finally:
        await second()
        await first()


async def test_a_stale_socket_is_replaced_on_start(tmp_path: Path) -> None:
    (tmp_path / "ctl").mkdir(mode=0o700)
    path = tmp_path / "ctl" / "web.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # bound, never listening, then closed: what SIGKILL leaves behind
    dead.close()
    assert client.probe(path) is False
    close = await start_control(FakeSupervisor(), make_config(tmp_path))
    try:
        assert client.probe(path) is True  # ours now, not web-2
    finally:
        await close()


def test_names_are_sanitised() -> None:
    assert client.sanitise_name("tests.apps.basic:app") == "tests.apps.basic_app"
    assert client.sanitise_name("../../etc/passwd") == "etc_passwd"
    assert client.sanitise_name("") == "asynccluster"
    assert len(client.sanitise_name("x" * 500)) == client.MAX_NAME


def test_unsafe_directories_are_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    with pytest.raises(ControlError, match="must be private"):
        client.control_dir(str(shared))
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    with pytest.raises(ControlError, match="not a directory"):
        client.control_dir(str(link))
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 65534, 65534)
    with pytest.raises(ControlError, match="belongs to uid 65534"):
        client.control_dir(str(foreign))
    created = client.control_dir(str(tmp_path / "new" / "ctl"), create=True)
    assert stat.S_IMODE(os.stat(created).st_mode) == 0o700


def test_default_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert client.default_control_dir() == tmp_path / "asynccluster"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert client.default_control_dir() == Path(f"/tmp/asynccluster-{os.getuid()}")


def connect_as(uid: int, path: Path) -> bytes:
    """As ``uid`` (a forked child), connect and send a status request; return what it read."""
    return run_as(uid, lambda: status_exchange(path))


def status_exchange(path: Path) -> bytes:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            try:
                sock.sendall(b'{"cmd": "status"}\n')
            except BrokenPipeError:
                pass  # refused before it read our request: the refusal is still there to read
            return sock.makefile("rb").readline() or b"EOF"
    except OSError as exc:
        return f"OSError {exc.errno}".encode()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
async def test_another_users_connection_is_refused_by_peer_credentials() -> None:
    # The socket itself is reachable by everyone here, so only the SO_PEERCRED check stands between.
    # (pytest's tmp_path sits below a 0700 directory: use one directly in /tmp.)
    open_dir = Path(tempfile.mkdtemp(prefix="ac-peercred-", dir="/tmp"))
    os.chmod(open_dir, 0o777)
    supervisor = FakeSupervisor()
    handler = ControlServer(supervisor, Monitor(supervisor.status), "web")
    path = open_dir / "web.sock"
    server = await asyncio.start_unix_server(handler.handle, path=str(path))
    os.chmod(path, 0o666)
    try:
        answer = await asyncio.to_thread(connect_as, 65534, path)
        assert json.loads(answer) == {"ok": False, "error": "permission denied: this cluster belongs to another user"}
        mine = await asyncio.to_thread(connect_as, os.getuid(), path)
        assert json.loads(mine)["ok"] is True
    finally:
        server.close()
        shutil.rmtree(open_dir, ignore_errors=True)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
async def test_another_user_cannot_even_reach_the_real_socket() -> None:
    base = Path(tempfile.mkdtemp(prefix="ac-ctl-", dir="/tmp"))
    os.chmod(base, 0o755)  # everyone may reach base/ctl; the 0700 on ctl is what must stop them
    close = await start_control(FakeSupervisor(), make_config(base))
    try:
        answer = await asyncio.to_thread(connect_as, 65534, base / "ctl" / "web.sock")
        assert answer == b"OSError 13"  # EACCES
    finally:
        await close()
        shutil.rmtree(base, ignore_errors=True)
