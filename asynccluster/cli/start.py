"""The pm2-style commands ``start`` and ``delete`` (issue 11).

``asynccluster start APP [run settings] [--wait S]`` or ``asynccluster start apps.toml``
(asynccluster/appsfile.py) launches clusters in the background and returns once they are
ready (asynccluster/cli/daemon.py); ``delete NAME`` (or ``all``) stops one started so and
forgets it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import asynccluster.cli.daemon as daemon
from asynccluster.appsfile import looks_like_apps_file, read_apps_file
from asynccluster.cli.common import guard, status_of
from asynccluster.cli.manage import cmd_stop
from asynccluster.cli.parser import add_common_arguments, add_setting_arguments, config_from_args
from asynccluster.config import ConfigError
from asynccluster.contracts.control import ControlError


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


def add_parsers(subparsers: Any) -> None:
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
    parser.set_defaults(func=guard(lambda args: cmd_start(args, status_of)))

    parser = subparsers.add_parser(
        "delete", help="stop a cluster started with 'start' and forget it ('all': every one)"
    )
    add_common_arguments(parser)
    parser.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    parser.set_defaults(func=guard(lambda args: daemon.cmd_delete(args, cmd_stop)))


__all__ = ["add_parsers", "cmd_start", "specs_from_args"]
