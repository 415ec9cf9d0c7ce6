"""The management commands: ``ls``, ``status``, ``reload``, ``scale``, ``restart``, ``stop``,
``top``, ``logs`` (issue 5: pm2's daily commands for Python clusters).

Each talks to a running master through its control socket (asynccluster/master/control.py),
takes an optional cluster NAME (needed only when several clusters run), and has ``--json``
for scripts. Operations wait for their outcome and report it; anything that went wrong is
one line on stderr and a non-zero exit status: 1 for a failed operation or a cluster that
is not there, 2 for bad input (``scale 0``, a slot that does not exist).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from asynccluster import describecmd, diagnose_commands, exitcodes, logscmd, saved, startcmd
from asynccluster.cli import add_setting_arguments, config_from_args
from asynccluster.config import Config, ConfigError
from asynccluster.contracts.control import (
    SUFFIX,
    ControlError,
    control_dir,
    parse_scale,
    probe,
    remove_stale,
    sanitise_name,
)
from asynccluster.observe import format as fmt
from asynccluster.observe.top import run_top
from asynccluster.progress import Progress

CONNECT_TIMEOUT = 5.0
STOP_EXIT_WAIT = 10.0  # after the master closed its sockets, how long we wait for its pid to go


# ---------------------------------------------------------------- the client


class ControlClient:
    """One connection to a master's control socket; newline-delimited JSON requests."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(CONNECT_TIMEOUT)
        try:
            self.sock.connect(str(path))
        except OSError as exc:
            self.sock.close()
            raise ControlError(f"cannot reach cluster {name!r} at {path}: {exc.strerror or exc}") from None
        self.file = self.sock.makefile("rb")

    def request(self, cmd: str, timeout: float | None = CONNECT_TIMEOUT, **args: Any) -> Any:
        """Send one request and return its result; ControlError with the master's message if refused."""
        self.sock.settimeout(timeout)
        try:
            try:
                self.sock.sendall(json.dumps({"cmd": cmd, "args": args}).encode() + b"\n")
            except BrokenPipeError:
                pass  # the master refused us before reading (another user): its reason is readable
            line = self.file.readline()
        except OSError as exc:
            raise ControlError(f"lost the connection to cluster {self.name!r}: {exc}") from None
        if not line:
            raise ControlError(f"cluster {self.name!r} closed the connection (it stopped?)")
        response = json.loads(line)
        if not response.get("ok"):
            raise ControlError(str(response.get("error")), usage=bool(response.get("usage")))
        return response.get("result")

    def wait_closed(self, timeout: float | None) -> bool:
        """Read until the master closes the connection (it exits); False on timeout."""
        self.sock.settimeout(timeout)
        try:
            while self.file.readline():
                pass
        except TimeoutError:
            return False
        except OSError:
            pass
        return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- finding a cluster


def running_clusters(directory: Path) -> tuple[list[str], list[str]]:
    """Names of the clusters answering on their sockets, and those found stale (now removed)."""
    live: list[str] = []
    stale: list[str] = []
    if not directory.is_dir():
        return live, stale
    for path in sorted(directory.glob("*" + SUFFIX)):
        name = path.name[: -len(SUFFIX)]
        state = probe(path)
        if state is False:
            if remove_stale(path):
                stale.append(name)
        elif state is True:
            live.append(name)
    return live, stale


def find_cluster(directory: Path, name: str | None) -> tuple[Path, str]:
    """The socket of NAME, or of the only running cluster; ControlError says what is there."""
    if name:
        for candidate in dict.fromkeys((sanitise_name(name), sanitise_name(name.replace(":", ".")))):
            path = directory / (candidate + SUFFIX)
            if os.path.lexists(path):
                return _checked(path, candidate)
        live, _ = running_clusters(directory)
        known = f"running: {', '.join(live)}" if live else f"no cluster is running (control directory {directory})"
        raise ControlError(f"no cluster named {name!r}; {known}")
    live, stale = running_clusters(directory)
    if len(live) == 1:
        return directory / (live[0] + SUFFIX), live[0]
    if not live:
        cleaned = f"; removed stale sockets of {', '.join(stale)}" if stale else ""
        raise ControlError(f"no cluster is running (control directory {directory}){cleaned}")
    raise ControlError(
        f"several clusters are running ({', '.join(live)}): name one, e.g. 'asynccluster status {live[0]}'"
    )


def _checked(path: Path, name: str) -> tuple[Path, str]:
    state = probe(path)
    if state is False:
        remove_stale(path)
        raise ControlError(f"cluster {name!r} is not running (it died?): removed its stale control socket {path}")
    return path, name


def command_config(args: argparse.Namespace) -> Config:
    """Settings for a management command: its flags > env > config file (as for `run`)."""
    try:
        return config_from_args(args)[0]
    except ConfigError as exc:
        raise ControlError(str(exc)) from None


def connect(args: argparse.Namespace) -> ControlClient:
    directory = control_dir(command_config(args).control_dir)
    path, name = find_cluster(directory, args.name)
    return ControlClient(path, name)


# ---------------------------------------------------------------- the commands


def live_names(args: argparse.Namespace) -> list[str]:
    return running_clusters(control_dir(command_config(args).control_dir))[0]


def cluster_exists(args: argparse.Namespace) -> bool:
    return bool(args.name) and args.name in live_names(args)


def describe_of(args: argparse.Namespace, name: str) -> dict[str, Any]:
    with ControlClient(find_cluster(control_dir(command_config(args).control_dir), name)[0], name) as client:
        view: dict[str, Any] = client.request("describe")
    return view


def status_of(path: Path, name: str) -> dict[str, Any]:
    with ControlClient(path, name) as client:
        view: dict[str, Any] = client.request("status")
    return view


def cmd_ls(args: argparse.Namespace) -> int:
    directory = control_dir(command_config(args).control_dir)
    live, stale = running_clusters(directory)
    rows = []
    for name in live:
        try:
            with ControlClient(directory / (name + SUFFIX), name) as client:
                rows.append(fmt.ls_row(client.request("status")))
        except ControlError:
            continue  # it stopped between the probe and the request
    if args.json:
        print(json.dumps(rows, default=str))
    elif rows:
        print(fmt.ls_text(rows))
    else:
        print(f"no cluster is running (control directory {directory})")
    for name in stale:
        print(f"removed the stale control socket of {name!r} (that cluster is gone)", file=sys.stderr)
    return exitcodes.OK


def cmd_status(args: argparse.Namespace) -> int:
    with connect(args) as client:
        view = client.request("status")
    print(json.dumps(view, default=str) if args.json else fmt.status_text(view, output_width()))
    return exitcodes.OK


def output_width() -> int:
    """The terminal's width when stdout is one, else 100 columns (issue 11: status fits 100)."""
    try:
        if os.isatty(sys.stdout.fileno()):
            return os.get_terminal_size(sys.stdout.fileno()).columns or fmt.STATUS_WIDTH
    except (OSError, ValueError, AttributeError):
        pass
    return fmt.STATUS_WIDTH


def operation_failed(result: dict[str, Any]) -> bool:
    """Whether a reload/scale/restart result reports a failure (the supervisor's fields)."""
    if result.get("ok") is False or result.get("success") is False or result.get("aborted"):
        return True
    failures = result.get("failures", result.get("failed", 0))
    if isinstance(failures, list):
        return bool(failures)
    return isinstance(failures, int) and failures > 0


def report(args: argparse.Namespace, result: dict[str, Any]) -> int:
    failed = operation_failed(result)
    if args.json:
        print(json.dumps(result, default=str))
    else:
        text = result.get("message") or result.get("error") or ("failed" if failed else "done")
        print(text, file=sys.stderr if failed else sys.stdout)
    return exitcodes.ERROR if failed else exitcodes.OK


def cmd_reload(args: argparse.Namespace) -> int:
    with connect(args) as client:
        return report(args, with_progress(args, lambda: client.request("reload", timeout=None)))


def cmd_scale(args: argparse.Namespace) -> int:
    check_scale_argument(args.count)
    with connect(args) as client:
        return report(args, with_progress(args, lambda: client.request("scale", timeout=None, count=args.count)))


def with_progress(args: argparse.Namespace, operation: Any) -> Any:
    """Run an operation, printing the workers started, ready and drained meanwhile (issue 11);
    with --json, or against a master without the "events" request, just run it."""
    if args.json:
        return operation()
    try:
        watcher = connect(args)
    except ControlError:
        return operation()
    with watcher:
        try:
            progress = Progress(watcher.request)
        except ControlError:
            return operation()
        return progress.follow(operation)


def check_scale_argument(text: str) -> None:
    """Refuse a malformed count or an absolute one below 1 before asking the master."""
    if text.strip().isdigit() and int(text) < 1:
        raise ControlError(
            f"cannot scale to {int(text)} workers: a cluster keeps at least 1 — use 'asynccluster stop' to stop it",
            usage=True,
        )
    parse_scale(text, current=1 << 20)  # only the form: N, +N or -N


def cmd_restart(args: argparse.Namespace) -> int:
    with connect(args) as client:
        return report(args, client.request("restart", timeout=None, slot=args.slot))


def cmd_stop(args: argparse.Namespace) -> int:
    started = time.monotonic()
    with connect(args) as client:
        result = client.request("stop", force=args.force)
        if not args.json:
            print(result["message"], flush=True)
        closed = client.wait_closed(args.timeout)
    pid = int(result["pid"])
    gone = closed and wait_pid_gone(pid, STOP_EXIT_WAIT)
    elapsed = time.monotonic() - started
    outcome = {"name": client.name, "pid": pid, "stopped": gone, "elapsed": round(elapsed, 3)}
    if args.json:
        print(json.dumps(outcome))
    elif gone:
        print(f"stopped {client.name} (pid {pid}) in {elapsed:.1f} s")
    else:
        print(f"asynccluster: error: {client.name} (pid {pid}) is still running after {elapsed:.1f} s", file=sys.stderr)
    return exitcodes.OK if gone else exitcodes.ERROR


def wait_pid_gone(pid: int, timeout: float) -> bool:
    """Until ``pid`` exited (a zombie counts: it no longer runs), within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_running(pid):
            return True
        time.sleep(0.05)
    return not pid_running(pid)


def pid_running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmd_top(args: argparse.Namespace) -> int:
    with connect(args) as client:

        def fetch() -> dict[str, Any]:
            view: dict[str, Any] = client.request("status")
            return view

        try:
            return run_top(fetch, interval=args.interval, as_json=args.json, iterations=args.iterations)
        except ControlError:
            print(f"asynccluster: cluster {client.name!r} stopped", file=sys.stderr)
            return exitcodes.ERROR


def cmd_logs(args: argparse.Namespace) -> int:
    return logscmd.cmd_logs(args, connect)


def cmd_describe(args: argparse.Namespace) -> int:
    return describecmd.cmd_describe(args, connect, output_width)


# ---------------------------------------------------------------- argparse


def _common(parser: argparse.ArgumentParser, *, name: bool = True) -> None:
    if name:
        parser.add_argument("name", nargs="?", metavar="NAME", help="cluster name (optional when only one runs)")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")
    add_setting_arguments(parser, only=("control_dir",))


def add_subcommands(subparsers: Any) -> None:
    """Add ls/status/reload/scale/restart/stop/top/logs to the CLI's subparsers."""
    parser = subparsers.add_parser("ls", help="list the clusters running for this user")
    _common(parser, name=False)
    parser.set_defaults(func=_guard(cmd_ls))

    parser = subparsers.add_parser("status", help="a cluster's workers: state, requests, rates, memory")
    _common(parser)
    parser.set_defaults(func=_guard(cmd_status))

    parser = subparsers.add_parser("reload", help="rolling restart of every worker (like SIGHUP), then report")
    _common(parser)
    parser.set_defaults(func=_guard(startcmd.for_all(cmd_reload, live_names)))

    parser = subparsers.add_parser("scale", help="set the number of workers: N, +N or -N")
    _common(parser)
    parser.add_argument("count", metavar="N|+N|-N", help="the new worker count, or a change to it")
    parser.set_defaults(func=_guard(cmd_scale))

    parser = subparsers.add_parser("restart", help="replace the worker of one slot (readiness-gated)")
    _common(parser)
    parser.add_argument(
        "slot", metavar="SLOT", nargs="?", help="the worker slot (see 'asynccluster status'); none: every worker"
    )
    restart = startcmd.restart_or_reload(cmd_restart, cmd_reload, cluster_exists)
    parser.set_defaults(func=_guard(startcmd.for_all(restart, live_names)))

    parser = subparsers.add_parser("stop", help="graceful stop (like SIGTERM); waits until the master exited")
    _common(parser)
    parser.add_argument("--force", action="store_true", help="kill the workers without waiting for them to drain")
    parser.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    parser.set_defaults(func=_guard(startcmd.for_all(cmd_stop, live_names)))
    startcmd.add_parsers(subparsers, _common, _guard, status_of, cmd_stop)  # start, delete (issue 11)
    saved.add_parsers(subparsers, lambda p: _common(p, name=False), _guard, status_of, live_names, describe_of)

    parser = subparsers.add_parser("top", help="live view of a cluster's workers (q or Ctrl-C to quit)")
    _common(parser)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    parser.add_argument("--iterations", type=int, default=None, help="quit after this many refreshes")
    parser.set_defaults(func=_guard(cmd_top))

    parser = logscmd.add_logs_parser(subparsers, _common)
    parser.set_defaults(func=_guard(cmd_logs))

    parser = describecmd.add_describe_parser(subparsers, _common)
    parser.set_defaults(func=_guard(cmd_describe))
    diagnose_commands.add_parsers(subparsers, _common, _guard, connect)  # errors/slow/memory/profile (issue 15)


def _guard(command: Any) -> Any:
    """Turn ControlError into one line on stderr and the exit status (1, or 2 for bad input)."""

    def run(args: argparse.Namespace) -> int:
        try:
            code: int = command(args)
        except ControlError as exc:
            print(f"asynccluster: error: {exc}", file=sys.stderr)
            return exitcodes.USAGE if exc.usage else exitcodes.ERROR
        except KeyboardInterrupt:
            print("asynccluster: interrupted (an operation already sent continues in the master)", file=sys.stderr)
            return 130
        return code

    run.__name__ = command.__name__
    return run
