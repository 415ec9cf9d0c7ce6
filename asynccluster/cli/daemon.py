"""``asynccluster start`` and ``delete``: clusters in the background, like ``pm2 start`` (issue 11 item 2).

``asynccluster start module:app --name api --workers 4`` checks the settings as ``run`` does
(same messages, exit 2), launches ``asynccluster run`` with them as a detached process (its own
session, no terminal, output to /dev/null), and returns once every worker is ready: exit 0
and one line (name, pid, workers, address). If the cluster exits first, its last warning and
error lines from its log file and its exit code (the codes of ``run``) are what ``start``
prints and returns. ``asynccluster run`` stays the foreground command for Docker and systemd.

The background cluster logs to a file unless given one: ``<state>/logs/NAME.log``, rotated at
10M with 5 backups (asynccluster/logs.py), and its master keeps every line in memory for
``asynccluster logs NAME`` as any cluster does. ``start`` records what it launched in the
state directory (asynccluster/cli/statedir.py) for ``delete`` and ``save``; ``delete NAME``
(or ``all``) stops the cluster gracefully and forgets it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asynccluster.cli.statedir as statedir
from asynccluster import exitcodes
from asynccluster.config import Config, flag_name, parse_bool, settings
from asynccluster.contracts.control import SUFFIX, ControlError, control_dir, probe, sanitise_name

DEFAULT_LOG_SIZE = "10M"
START_TIMEOUT = 60.0  # seconds `start` waits for readiness by default (--wait)
POLL = 0.1  # seconds between two readiness checks
FAILURE_LINES = 12  # warning/error lines of the log shown when a start fails


@dataclass
class AppSpec:
    """One cluster to launch: the arguments of ``asynccluster run``, where, with what env."""

    name: str
    argv: list[str]
    cwd: str
    env: dict[str, str] = field(default_factory=dict)
    log_file: str = ""
    control_dir: str = ""
    # The environment `start` ran in (what a pm2 user expects `resurrect` to bring back at boot,
    # when the shell that exported DATABASE_URL is long gone); stored 0600 in the state directory.
    environment: dict[str, str] = field(default_factory=dict)


# Variables that belong to the process that launched us, never to a relaunch: systemd's
# socket activation and notify socket (a cluster would take the service's fds or its READY=1).
NOT_INHERITED = frozenset(
    ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID")
)


def launch_env(spec: AppSpec) -> dict[str, str]:
    """The cluster's environment: ours, then the one `start` ran in, then the app's own."""
    merged = {**os.environ, **spec.environment, **spec.env}
    return {key: value for key, value in merged.items() if key not in NOT_INHERITED}


def run_argv(values: dict[str, Any]) -> list[str]:
    """``asynccluster run`` arguments from setting values (raw text, or TOML's bool/int/list)."""
    argv: list[str] = []
    for fld in settings():
        value = values.get(fld.name)
        if value is None:
            continue
        if fld.metadata["positional"]:
            argv.insert(0, str(value))
        elif fld.metadata["parse"] is parse_bool and isinstance(value, bool):
            argv.append(flag_name(fld.name) if value else "--no-" + fld.name.replace("_", "-"))
        else:
            text = ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
            argv += [flag_name(fld.name), text]
    return argv


def spec_for(config: Config, values: dict[str, Any], cwd: str, env: dict[str, str] | None = None) -> AppSpec:
    """The launch of ``config`` (already checked); ``values``: the settings given explicitly."""
    name = sanitise_name(config.cluster_name)
    chosen = {key: value for key, value in values.items() if value is not None}
    chosen["name"] = name
    log_file = config.log_file
    if not log_file:
        log_file = str(statedir.state_dir(create=True) / "logs" / f"{name}.log")
        chosen["log_file"] = log_file
        if not config.log_max_size and not config.log_max_age:
            chosen["log_max_size"] = DEFAULT_LOG_SIZE
    log_path = log_file if os.path.isabs(log_file) else os.path.join(cwd, log_file)
    environment = {key: value for key, value in os.environ.items() if key not in NOT_INHERITED}
    return AppSpec(name, run_argv(chosen), cwd, dict(env or {}), log_path, config.control_dir, environment)


def launch(spec: AppSpec, *, quiet: bool = True) -> subprocess.Popen[bytes]:
    """``asynccluster run`` for ``spec`` in its own session, without a terminal; its output
    goes nowhere (``quiet``: it has its log file and buffer) or to ours (under systemd: the journal)."""
    output = subprocess.DEVNULL if quiet else None
    return subprocess.Popen(
        [sys.executable, "-m", "asynccluster", "run", *spec.argv],
        cwd=spec.cwd,
        env=launch_env(spec),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=output,
        start_new_session=True,
    )


def socket_path(spec: AppSpec) -> Path:
    return control_dir(spec.control_dir) / (spec.name + SUFFIX)


def refuse_running(spec: AppSpec) -> None:
    if probe(socket_path(spec)) is True:
        raise ControlError(
            f"a cluster named {spec.name!r} is already running: 'asynccluster reload {spec.name}' to restart it "
            f"with new code, 'asynccluster delete {spec.name}' to remove it"
        )


@dataclass
class Started:
    spec: AppSpec
    code: int  # exitcodes.OK once ready; the cluster's exit code if it exited first
    message: str


StatusFn = Callable[[Path, str], dict[str, Any]]  # (control socket, name) -> its status; ControlError


def wait_started(
    spec: AppSpec, process: subprocess.Popen[bytes], log_offset: int, timeout: float, status: StatusFn
) -> Started:
    """Until every worker of ``spec`` is ready, the cluster exited, or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    path = socket_path(spec)
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            return Started(spec, code or exitcodes.ERROR, failure_text(spec, log_offset, code))
        if path.exists():
            try:
                view = status(path, spec.name)
            except ControlError:
                view = {}
            if view.get("state") == "running":
                totals = view.get("totals") or {}
                return Started(
                    spec,
                    exitcodes.OK,
                    f"started {spec.name} (pid {process.pid}): {plural(totals.get('workers_ready', 0))} ready on "
                    f"{view.get('address')}; logs: asynccluster logs {spec.name}",
                )
        time.sleep(POLL)  # the pace of the readiness checks, not a synchronisation
    return Started(
        spec, exitcodes.ERROR, f"{spec.name} (pid {process.pid}) is not ready after {timeout:g} s; it keeps "
        f"starting in the background: asynccluster logs {spec.name}",
    )  # fmt: skip


def plural(count: int) -> str:
    return f"{count} worker" + ("" if count == 1 else "s")


def failure_text(spec: AppSpec, offset: int, code: int) -> str:
    """Why a background start failed: its warning and error lines since ``offset``, and the code."""
    lines: list[str] = []
    try:
        with open(spec.log_file, "rb") as file:
            file.seek(offset)
            lines = file.read().decode("utf-8", "replace").splitlines()
    except OSError:
        pass
    kept = [line for line in lines if " WARNING " in line or " ERROR " in line or line.startswith("  ")]
    kept = [line for line in kept if "running as root" not in line][-FAILURE_LINES:]
    what = exitcodes.DESCRIPTIONS.get(code, "")
    return "\n".join([*kept, f"asynccluster: {spec.name} exited with code {code} ({what}) before it was ready"])


def log_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def start_all(specs: Sequence[AppSpec], timeout: float, status: StatusFn) -> int:
    """Launch every spec, then wait for each; the first failure's code (0 if all are ready)."""
    for spec in specs:
        refuse_running(spec)
    launched = []
    for spec in specs:
        offset = log_size(spec.log_file)
        launched.append((spec, launch(spec), offset))
        statedir.write_json(statedir.record_path(spec.name), asdict(spec))
    worst = exitcodes.OK
    for spec, process, offset in launched:
        started = wait_started(spec, process, offset, timeout, status)
        if started.code == exitcodes.OK:
            print(started.message, flush=True)
        else:
            print(started.message, file=sys.stderr)
            if process.poll() is not None:
                statedir.record_path(spec.name).unlink(missing_ok=True)  # nothing runs: nothing to forget later
            worst = worst or started.code
    return worst


# ---------------------------------------------------------------- delete


def cmd_delete(args: argparse.Namespace, stop: Callable[[argparse.Namespace], int]) -> int:
    """Stop NAME (or every recorded cluster with ``all``) gracefully, then forget it."""
    names = [r["name"] for r in statedir.records()] if args.name == "all" else [args.name]
    if args.name == "all" and not names:
        print("no cluster was started with 'asynccluster start'")
        return exitcodes.OK
    worst = exitcodes.OK
    for name in names:
        record = statedir.record_path(name)
        stop_args = argparse.Namespace(**{**vars(args), "name": name, "force": False, "timeout": args.timeout})
        try:
            code = stop(stop_args)
        except ControlError as exc:
            if not record.exists():
                raise
            print(f"{name} was not running ({exc})")
            code = exitcodes.OK
        if code == exitcodes.OK:
            record.unlink(missing_ok=True)
            print(f"deleted {name}")
        worst = worst or code
    return worst


__all__ = ["AppSpec", "cmd_delete", "launch", "run_argv", "spec_for", "start_all", "wait_started"]
