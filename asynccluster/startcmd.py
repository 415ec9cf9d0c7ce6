"""The pm2-style commands: ``start``, ``delete``, and ``all`` for ``stop``/``reload``/``restart`` (issue 11).

``asynccluster start APP [run settings] [--wait S]`` or ``asynccluster start apps.toml``
(asynccluster/appsfile.py) launches clusters in the background and returns once they are
ready (asynccluster/daemon.py). ``stop all``, ``reload all`` and ``restart all`` act on every
cluster running for this user, one after the other; ``restart NAME`` without a slot is a
rolling restart of the whole cluster (pm2's meaning), ``restart NAME SLOT`` one worker.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asynccluster import daemon, exitcodes
from asynccluster.appsfile import looks_like_apps_file, read_apps_file
from asynccluster.cli import add_setting_arguments, config_from_args
from asynccluster.config import ConfigError
from asynccluster.contracts.control import ControlError

Command = Callable[[argparse.Namespace], int]


def specs_from_args(args: argparse.Namespace) -> list[daemon.AppSpec]:
    """What ``start`` launches: every app of an apps file, or the one app of the arguments."""
    try:
        if looks_like_apps_file(args.app):
            given = [name for name in args.setting_names if name not in ("app", "control_dir") and getattr(args, name)]
            if given:
                raise ConfigError(f"with an apps file, settings go in the file (got --{given[0].replace('_', '-')})")
            entries = read_apps_file(Path(args.app))
            if args.control_dir:  # where the clusters' control sockets go: this user's choice, not the file's
                for entry in entries:
                    entry.values["control_dir"] = args.control_dir
                    entry.config = entry.config.replace(control_dir=args.control_dir)
            return [daemon.spec_for(e.config, e.values, e.cwd, e.env) for e in entries]
        config, _ = config_from_args(args)
    except ConfigError as exc:
        raise ControlError(str(exc), usage=True) from None
    if not config.app:
        raise ControlError("no app given: asynccluster start module:attribute (or an apps file, apps.toml)", usage=True)
    values = {name: getattr(args, name) for name in args.setting_names}
    spec = daemon.spec_for(config, values, os.getcwd())
    if args.config:
        spec.argv += ["--config", os.path.abspath(args.config)]
    return [spec]


def cmd_start(args: argparse.Namespace, status: daemon.StatusFn) -> int:
    if args.wait <= 0:
        raise ControlError(f"--wait must be a number of seconds > 0, got {args.wait:g}", usage=True)
    return daemon.start_all(specs_from_args(args), args.wait, status)


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


def add_parsers(
    subparsers: Any,
    common: Callable[[argparse.ArgumentParser], None],
    guard: Callable[[Any], Any],
    status: daemon.StatusFn,
    stop: Command,
) -> None:
    """Add ``start`` and ``delete`` to the CLI's subparsers."""
    parser = subparsers.add_parser(
        "start", help="run an app (or every app of an apps file) in the background; returns once it is ready"
    )
    parser.add_argument("--config", metavar="FILE", help="read settings from this TOML file (or a pyproject.toml)")
    parser.add_argument(
        "--wait", type=float, default=daemon.START_TIMEOUT, metavar="S",
        help=f"give up waiting for readiness after S seconds (default {daemon.START_TIMEOUT:g}; it keeps starting)",
    )  # fmt: skip
    add_setting_arguments(parser)
    parser.set_defaults(func=guard(lambda args: cmd_start(args, status)))

    parser = subparsers.add_parser(
        "delete", help="stop a cluster started with 'start' and forget it ('all': every one)"
    )
    common(parser)
    parser.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    parser.set_defaults(func=guard(lambda args: daemon.cmd_delete(args, stop)))


__all__ = ["add_parsers", "cmd_start", "for_all", "restart_or_reload", "specs_from_args"]
