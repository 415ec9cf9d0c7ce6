"""Survive a reboot, like ``pm2 save`` / ``resurrect`` / ``startup`` (issue 11 item 4).

- ``save`` writes ``<state>/dump.json``: every running cluster that ``start`` launched, as it
  was launched (the arguments of ``run``, its directory, the apps file's env, the environment
  ``start`` ran in). A cluster started in the foreground (``run``) is saved from what its
  master reports (``describe``: its command line, directory and settings) without the
  environment, which only its own process knows.
- ``resurrect`` starts the saved clusters that are not running (each returns once ready, as
  with ``start``). With ``--foreground`` it stays their parent: it tells systemd READY=1 once
  all are ready (sd_notify), turns SIGHUP into a rolling reload of each, SIGTERM/SIGINT into a
  graceful stop of each, and exits when they have stopped. That is the unit ``startup`` writes.
- ``startup`` prints a systemd unit (Type=notify, ExecReload sends SIGHUP, KillMode=mixed so
  systemd's SIGTERM goes to us and we stop the clusters gracefully) that resurrects at boot;
  ``--install`` writes it (system unit for root, ``--user`` for a user unit) and says how to
  enable it.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import asynccluster.cli.daemon as daemon
import asynccluster.cli.statedir as statedir
from asynccluster import exitcodes
from asynccluster.cli.common import describe_of, guard, live_names, status_of
from asynccluster.cli.parser import add_common_arguments
from asynccluster.contracts.control import ControlError, probe
from asynccluster.master import sdnotify

DUMP = "dump.json"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
WAKE = 1.0  # seconds between two looks at the clusters while waiting for a signal


def dump_path() -> Path:
    return statedir.state_dir() / DUMP


def spec_from_describe(view: dict[str, Any]) -> daemon.AppSpec | None:
    """A foreground cluster, from its master's ``describe``: ``asynccluster run ARGS`` again."""
    command = list(view.get("command") or [])
    if "run" not in command:
        return None
    argv = command[command.index("run") + 1 :]
    for setting in view.get("settings", []):
        origin = str(setting.get("origin", ""))
        if origin.startswith("env ") and setting.get("value") not in (None, ""):
            argv += daemon.run_argv({setting["name"]: setting["value"]})  # env-given settings become flags
    log_file = str((view.get("paths") or {}).get("log_file") or "")
    return daemon.AppSpec(str(view.get("name")), argv, str(view.get("cwd") or "."), {}, log_file)


def cmd_save(args: argparse.Namespace, live: list[str], describe: Callable[[str], dict[str, Any]]) -> int:
    saved: list[dict[str, Any]] = []
    for name in live:
        record = statedir.read_json(statedir.record_path(name))
        if isinstance(record, dict):
            saved.append(record)
            continue
        spec = spec_from_describe(describe(name))
        if spec is None:
            print(f"asynccluster: {name} is not saved: it was not started by 'asynccluster run'", file=sys.stderr)
            continue
        saved.append(asdict(spec))
    path = dump_path()
    statedir.state_dir(create=True)
    statedir.write_json(path, {"saved_at": time.time(), "apps": saved})
    names = ", ".join(str(entry["name"]) for entry in saved) or "nothing"
    print(f"saved {len(saved)} cluster{'' if len(saved) == 1 else 's'} ({names}) to {path}")
    return exitcodes.OK


def saved_specs() -> list[daemon.AppSpec]:
    data = statedir.read_json(dump_path())
    if data is None:
        raise ControlError(f"nothing saved yet ({dump_path()}): start clusters, then 'asynccluster save'")
    known = {f.name for f in fields(daemon.AppSpec)}
    try:
        return [daemon.AppSpec(**{k: v for k, v in entry.items() if k in known}) for entry in data["apps"]]
    except (KeyError, TypeError) as exc:
        raise ControlError(f"{dump_path()} is not a dump of 'asynccluster save' ({exc!r}); save again") from None


def cmd_resurrect(args: argparse.Namespace, status: daemon.StatusFn) -> int:
    specs = saved_specs()
    waiting = []
    for spec in specs:
        if probe(daemon.socket_path(spec)) is True:
            print(f"{spec.name} is already running")
        else:
            waiting.append(spec)
    if args.foreground:
        return Foreground(waiting, status).run(args.wait)
    return daemon.start_all(waiting, args.wait, status) if waiting else exitcodes.OK


class Foreground:
    """``resurrect --foreground``: the saved clusters as our children, driven by signals."""

    def __init__(self, specs: list[daemon.AppSpec], status: daemon.StatusFn) -> None:
        self.specs = specs
        self.status = status
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def run(self, timeout: float) -> int:
        self.install_handlers()
        for spec in self.specs:
            self.children[spec.name] = daemon.launch(spec, quiet=False)
        for spec in self.specs:
            started = daemon.wait_started(spec, self.children[spec.name], 0, timeout, self.status)
            print(started.message, file=sys.stdout if started.code == exitcodes.OK else sys.stderr, flush=True)
        sdnotify.ready(f"{len(self.running())} clusters running: {', '.join(self.running())}")
        return self.supervise()

    def running(self) -> list[str]:
        return [name for name, child in self.children.items() if child.poll() is None]

    def install_handlers(self) -> None:
        """Signals only queue here (set_wakeup_fd wakes the wait); the loop acts on them."""
        self.received: list[int] = []
        self.wake_read, wake_write = socket.socketpair()
        self.wake_read.setblocking(False)
        wake_write.setblocking(False)
        self.wake_write = wake_write  # kept open for as long as we run
        signal.set_wakeup_fd(wake_write.fileno())
        for signum in (*STOP_SIGNALS, signal.SIGHUP):
            signal.signal(signum, lambda number, frame: self.received.append(number))

    def next_signal(self) -> int | None:
        if not self.received:
            select.select([self.wake_read], [], [], WAKE)
            with contextlib.suppress(OSError):
                self.wake_read.recv(4096)
        return self.received.pop(0) if self.received else None

    def supervise(self) -> int:
        while self.running():
            received = self.next_signal()
            if received is None:
                continue
            if received == signal.SIGHUP:
                sdnotify.reloading()
                self.signal_all(signal.SIGHUP)  # each master does its own rolling reload
                sdnotify.ready(f"reloading {', '.join(self.running())}")
            else:
                sdnotify.stopping()
                self.signal_all(signal.SIGTERM)
                codes = [child.wait() for child in self.children.values()]
                return exitcodes.OK if all(code == 0 for code in codes) else exitcodes.ERROR
        print("asynccluster: every resurrected cluster has exited", file=sys.stderr)
        return exitcodes.ERROR

    def signal_all(self, signum: int) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signum)


# ---------------------------------------------------------------- startup


def unit_text(user: str, user_unit: bool) -> str:
    """The systemd unit that resurrects the saved clusters at boot (see the module docstring)."""
    command = shlex.join([sys.executable, "-m", "asynccluster", "resurrect", "--foreground"])
    state = shlex.quote(str(statedir.state_dir()))
    who = "" if user_unit else f"User={user}\n"
    target = "default.target" if user_unit else "multi-user.target"
    return f"""[Unit]
Description=asynccluster: the clusters saved by 'asynccluster save' ({user})
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
{who}Environment=ASYNCCLUSTER_STATE_DIR={state}
WorkingDirectory={shlex.quote(str(Path.home()))}
ExecStart={command}
ExecReload=/bin/kill -HUP $MAINPID
KillMode=mixed
TimeoutStartSec=120
TimeoutStopSec=60
Restart=on-failure

[Install]
WantedBy={target}
"""


def unit_path(user: str, user_unit: bool) -> Path:
    if user_unit:
        base = os.environ.get("XDG_CONFIG_HOME", "") or str(Path.home() / ".config")
        return Path(base) / "systemd" / "user" / "asynccluster.service"
    return Path("/etc/systemd/system") / f"asynccluster-{user}.service"


def cmd_startup(args: argparse.Namespace) -> int:
    user = getpass.getuser()
    text = unit_text(user, args.user)
    if not args.install:
        print(text, end="")
        return exitcodes.OK
    path = Path(args.unit_file) if args.unit_file else unit_path(user, args.user)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        raise ControlError(f"cannot write {path}: {exc.strerror} (a system unit needs root; or --user)") from None
    scope = "--user " if args.user else ""
    print(f"wrote {path}\nenable it: systemctl {scope}daemon-reload && systemctl {scope}enable --now {path.name}")
    return exitcodes.OK


def add_parsers(subparsers: Any) -> None:
    """Add ``save``, ``resurrect`` and ``startup`` to the CLI's subparsers."""
    parser = subparsers.add_parser("save", help="record the running clusters, for 'resurrect' (at boot: 'startup')")
    add_common_arguments(parser, name=False)
    parser.set_defaults(func=guard(lambda a: cmd_save(a, live_names(a), lambda name: describe_of(a, name))))

    parser = subparsers.add_parser("resurrect", help="start the clusters recorded by 'save' that are not running")
    add_common_arguments(parser, name=False)
    parser.add_argument("--foreground", action="store_true", help="stay their parent (systemd: Type=notify)")
    parser.add_argument("--wait", type=float, default=daemon.START_TIMEOUT, metavar="S", help="readiness timeout")
    parser.set_defaults(func=guard(lambda a: cmd_resurrect(a, status_of)))

    parser = subparsers.add_parser("startup", help="print (or --install) a systemd unit that resurrects at boot")
    parser.add_argument("--install", action="store_true", help="write the unit file and say how to enable it")
    parser.add_argument("--user", action="store_true", help="a user unit (systemctl --user) instead of a system one")
    parser.add_argument("--unit-file", metavar="PATH", help="write the unit here instead (with --install)")
    parser.set_defaults(func=guard(cmd_startup))


__all__ = ["add_parsers", "cmd_resurrect", "cmd_save", "cmd_startup", "unit_text"]
