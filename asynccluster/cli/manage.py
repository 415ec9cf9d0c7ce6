"""The management commands: ``ls``, ``status``, ``reload``, ``scale``, ``restart``, ``stop``,
``top`` (issue 5: pm2's daily commands for Python clusters), and ``all`` for ``stop``,
``reload`` and ``restart`` (issue 11).

Each talks to a running master through its control socket (asynccluster/contracts/control.py),
takes an optional cluster NAME (needed only when several clusters run; ``all`` for every one
with stop/reload/restart), and has ``--json`` for scripts. Operations wait for their outcome
and report it; anything that went wrong is one line on stderr and a non-zero exit status: 1 for
a failed operation or a cluster that is not there, 2 for bad input (``scale 0``, a slot that
does not exist). ``restart NAME`` without a slot is a rolling restart of the whole cluster
(pm2's meaning), ``restart NAME SLOT`` one worker.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from asynccluster import exitcodes
from asynccluster.cli.common import (
    Command,
    cluster_exists,
    command_config,
    connect,
    guard,
    live_names,
    output_width,
    prog,
    running_clusters,
)
from asynccluster.cli.parser import add_common_arguments
from asynccluster.contracts.control import SUFFIX, ControlClient, ControlError, control_dir, parse_scale
from asynccluster.contracts.results import OperationResult, ReloadResult, RestartResult, ScaleResult, scale_refusal
from asynccluster.observe import format as fmt
from asynccluster.observe.top import run_top
from asynccluster.progress import Progress

STOP_EXIT_WAIT = 10.0  # after the master closed its sockets, how long we wait for its pid to go


# ---------------------------------------------------------------- the commands


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


def report(args: argparse.Namespace, answer: Any, kind: type[OperationResult]) -> int:
    """Print a reload/scale/restart outcome (``answer``: the master's result dict, read as
    ``kind``); exit 1 if it failed. ``--json`` prints the dict as the master sent it (with
    ``elapsed``, and ``previous``/``target`` for a scale)."""
    try:
        result = kind.from_dict(answer)
    except (TypeError, ValueError) as exc:
        raise ControlError(f"the master's answer is not a {kind.__name__}: {exc}") from None
    if args.json:
        print(json.dumps(answer, default=str))
    else:
        text = result.message or result.error or ("done" if result.ok else "failed")
        print(text, file=sys.stdout if result.ok else sys.stderr)
    return exitcodes.OK if result.ok else exitcodes.ERROR


def cmd_reload(args: argparse.Namespace) -> int:
    with connect(args) as client:
        return report(args, with_progress(args, lambda: client.request("reload", timeout=None)), ReloadResult)


def cmd_scale(args: argparse.Namespace) -> int:
    check_scale_argument(args.count)
    with connect(args) as client:
        answer = with_progress(args, lambda: client.request("scale", timeout=None, count=args.count))
    return report(args, answer, ScaleResult)


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
    refusal = scale_refusal(int(text)) if text.strip().isdigit() else None  # the count now is unknown here
    if refusal:
        raise ControlError(refusal, usage=True)
    parse_scale(text, current=1 << 20)  # only the form: N, +N or -N (the limit is the master's to check)


def cmd_restart(args: argparse.Namespace) -> int:
    with connect(args) as client:
        return report(args, client.request("restart", timeout=None, slot=args.slot), RestartResult)


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
        print(f"{prog(args)}: error: {client.name} (pid {pid}) is still running after {elapsed:.1f} s", file=sys.stderr)
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


# ---------------------------------------------------------------- NAME or all


def for_all(command: Command, live: Callable[[argparse.Namespace], list[str]]) -> Command:
    """``command`` for NAME, or for every running cluster when NAME is ``all``; the worst code."""

    def run(args: argparse.Namespace) -> int:
        if args.name != "all":
            return command(args)
        names = live(args)
        if not names:
            print("no cluster is running")
            return exitcodes.OK
        worst = exitcodes.OK
        for name in names:
            print(f"== {name}", flush=True)
            worst = command(argparse.Namespace(**{**vars(args), "name": name})) or worst
        return worst

    run.__name__ = getattr(command, "__name__", "run")
    return run


def restart_or_reload(restart: Command, reload: Command, exists: Callable[[argparse.Namespace], bool]) -> Command:
    """``restart NAME SLOT``: one worker; ``restart NAME``: the whole cluster, rolling (like
    ``reload``). ``restart SLOT`` alone still means a slot of the only running cluster."""

    def run(args: argparse.Namespace) -> int:
        if args.slot is None:
            if args.name is not None and args.name.isdigit() and not exists(args):
                return restart(argparse.Namespace(**{**vars(args), "name": None, "slot": int(args.name)}))
            if args.name is None:
                raise ControlError("restart: name a cluster (or 'all'), and a SLOT for one worker", usage=True)
            return reload(args)
        if not args.slot.isdigit():
            raise ControlError(f"restart: SLOT is a worker slot number, got {args.slot!r:.40}", usage=True)
        return restart(argparse.Namespace(**{**vars(args), "slot": int(args.slot)}))

    run.__name__ = "cmd_restart"
    return run


# ---------------------------------------------------------------- argparse


def add_parsers(subparsers: Any) -> None:
    """Add ls/status/reload/scale/restart/stop to the CLI's subparsers."""
    parser = subparsers.add_parser("ls", help="list the clusters running for this user")
    add_common_arguments(parser, name=False)
    parser.set_defaults(func=guard(cmd_ls))

    parser = subparsers.add_parser("status", help="a cluster's workers: state, requests, rates, memory")
    add_common_arguments(parser)
    parser.set_defaults(func=guard(cmd_status))

    parser = subparsers.add_parser("reload", help="rolling restart of every worker (like SIGHUP), then report")
    add_common_arguments(parser)
    parser.set_defaults(func=guard(for_all(cmd_reload, live_names)))

    parser = subparsers.add_parser("scale", help="set the number of workers: N, +N or -N")
    add_common_arguments(parser)
    parser.add_argument("count", metavar="N|+N|-N", help="the new worker count, or a change to it")
    parser.set_defaults(func=guard(cmd_scale))

    parser = subparsers.add_parser("restart", help="replace the worker of one slot (readiness-gated)")
    add_common_arguments(parser)
    parser.add_argument(
        "slot", metavar="SLOT", nargs="?", help="the worker slot (see 'asynccluster status'); none: every worker"
    )
    restart = restart_or_reload(cmd_restart, cmd_reload, cluster_exists)
    parser.set_defaults(func=guard(for_all(restart, live_names)))

    parser = subparsers.add_parser("stop", help="graceful stop (like SIGTERM); waits until the master exited")
    add_common_arguments(parser)
    parser.add_argument("--force", action="store_true", help="kill the workers without waiting for them to drain")
    parser.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    parser.set_defaults(func=guard(for_all(cmd_stop, live_names)))


def add_top_parser(subparsers: Any) -> None:
    """Add ``top`` (listed after start/delete/save..., as it always was)."""
    parser = subparsers.add_parser("top", help="live view of a cluster's workers (q or Ctrl-C to quit)")
    add_common_arguments(parser)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    parser.add_argument("--iterations", type=int, default=None, help="quit after this many refreshes")
    parser.set_defaults(func=guard(cmd_top))


__all__ = ["add_parsers", "add_top_parser", "cmd_reload", "cmd_stop", "for_all", "report"]
