"""Clusters in the background, like pm2 (issue 11 items 2 and 3): ``start`` -> ``ls`` -> ``delete``,
a failed start reports why with the cluster's exit code, and an apps file starts two apps on two
ports with their env and env-file, handled together by ``reload all`` and ``stop all``.

Every command is the real CLI; the clusters are real detached processes. Each test has its
own control and state directories; whatever is left is killed (by process group) at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asynccluster import exitcodes
from tests.integration.conftest import REPO, get_json, process_gone

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux only")


class Home:
    """A private control and state directory, and the CLI run against them."""

    def __init__(self, root: Path) -> None:
        self.ctl = root / "ctl"
        self.state = root / "state"
        self.env = {**os.environ, "ASYNCCLUSTER_CONTROL_DIR": str(self.ctl), "ASYNCCLUSTER_STATE_DIR": str(self.state)}

    def cli(self, *argv: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "asynccluster", *argv]
        return subprocess.run(command, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=90, check=False)

    def status(self, name: str) -> dict[str, Any]:
        done = self.cli("status", name, "--json")
        assert done.returncode == 0, done.stderr
        view: dict[str, Any] = json.loads(done.stdout)
        return view

    def kill_everything(self) -> None:
        for sock in self.ctl.glob("*.sock") if self.ctl.is_dir() else []:
            done = self.cli("status", sock.name[: -len(".sock")], "--json")
            if done.returncode == 0:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(json.loads(done.stdout)["pid"], signal.SIGKILL)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    place = Home(tmp_path)
    yield place
    place.kill_everything()


def port_of(view: dict[str, Any]) -> int:
    return int(str(view["address"]).rsplit(":", 1)[1])


def test_start_ls_delete(home: Home) -> None:
    done = home.cli("start", "tests.apps.basic:app", "--name", "api", "--workers", "2", "--port", "0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("started api (pid ") and "2 workers ready on http://127.0.0.1:" in done.stdout
    view = home.status("api")
    master = int(view["pid"])
    assert view["state"] == "running" and view["totals"]["workers_ready"] == 2
    assert os.getsid(master) == master  # detached: its own session, no terminal
    assert get_json(port_of(view))["worker_id"] in (0, 1)
    listing = home.cli("ls").stdout.splitlines()
    assert listing[1].split()[:4] == ["api", str(master), "running", "2/2"]
    assert "listening on" in home.cli("logs", "api", "--lines", "50").stdout  # logs, with no log settings
    assert (home.state / "apps" / "api.json").is_file() and (home.state / "logs" / "api.log").is_file()

    again = home.cli("start", "tests.apps.basic:app", "--name", "api", "--port", "0")
    assert again.returncode == 1 and "already running" in again.stderr

    done = home.cli("delete", "api")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "deleted api"
    assert process_gone(master) and not (home.state / "apps" / "api.json").exists()
    assert "no cluster is running" in home.cli("ls").stdout


def test_a_failed_start_says_why_with_the_exit_code(home: Home) -> None:
    done = home.cli("start", "tests.apps.lifespan_fail:app", "--name", "bad", "--port", "0")
    assert done.returncode == exitcodes.LIFESPAN
    assert "lifespan startup failed: RuntimeError: database unreachable" in done.stderr
    assert "bad exited with code 4 (lifespan startup failed) before it was ready" in done.stderr
    assert not (home.state / "apps" / "bad.json").exists()
    bad = home.cli("start", "tests.apps.basic:app", "--workers", "zero")
    assert bad.returncode == 2 and "workers" in bad.stderr


def test_an_apps_file_runs_two_apps_on_two_ports(home: Home, tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "admin.env").write_text("ADMIN_SECRET=from-env-file\nSHARED=from-file\n")
    apps = tmp_path / "apps.toml"
    apps.write_text(
        f"""
[[apps]]
name = "web"
app = "tests.apps.envecho:app"
workers = 2
port = 0
app-dir = "{REPO}"
env = {{ GREETING = "hello web" }}

[[apps]]
name = "admin"
app = "tests.apps.envecho:app"
cwd = "svc"
env-file = "admin.env"
app-dir = "{REPO}"
port = 0
env = {{ SHARED = "from-env-table" }}
"""
    )
    done = home.cli("start", str(apps), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [line.split()[1] for line in done.stdout.splitlines()] == ["web", "admin"]
    web, admin = home.status("web"), home.status("admin")
    assert port_of(web) != port_of(admin) and web["totals"]["workers_ready"] == 2
    assert get_json(port_of(web), "/?names=GREETING")["GREETING"] == "hello web"
    seen = get_json(port_of(admin), "/?names=ADMIN_SECRET,SHARED,GREETING")
    assert seen["ADMIN_SECRET"] == "from-env-file" and seen["GREETING"] is None
    assert seen["SHARED"] == "from-env-table"  # set variables win over the env-file
    assert seen["cwd"] == str(tmp_path / "svc")

    reloaded = home.cli("reload", "all")
    assert reloaded.returncode == 0, reloaded.stderr
    assert reloaded.stdout.count("reloaded ") == 2 and "== web" in reloaded.stdout and "== admin" in reloaded.stdout
    masters = [int(web["pid"]), int(admin["pid"])]
    stopped = home.cli("stop", "all")
    assert stopped.returncode == 0, stopped.stderr
    assert all(process_gone(pid) for pid in masters)


def test_an_apps_file_is_checked_with_the_settings_messages(home: Home, tmp_path: Path) -> None:
    apps = tmp_path / "apps.toml"
    apps.write_text('[[apps]]\nname = "a"\napp = "tests.apps.basic:app"\nmax-request = 5\n')
    done = home.cli("start", str(apps))
    assert done.returncode == 2
    assert "app a: unknown setting 'max_request'; did you mean 'max_requests'?" in done.stderr
    apps.write_text('[[apps]]\napp = "tests.apps.basic:app"\n[[apps]]\napp = "tests.apps.basic:app"\n')
    done = home.cli("start", str(apps))
    assert done.returncode == 2 and "two apps are named 'tests.apps.basic.app'" in done.stderr
