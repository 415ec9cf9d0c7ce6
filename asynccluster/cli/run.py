"""``asynccluster run APP [settings] [--config FILE] [--print-config]``: the cluster in the foreground.

The settings come from the command line > environment > config file > defaults
(asynccluster/config.py, issue 5); ``--print-config`` shows them with their origins and exits.
Anything else starts the master (asynccluster/master/runner.py), whose exit code is ours.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from asynccluster import exitcodes
from asynccluster.cli.parser import add_setting_arguments, config_from_args
from asynccluster.config import Config, ConfigError, settings, unknown_env_warnings


def add_parser(subparsers: Any) -> None:
    """Add ``run`` to the CLI's subparsers: one argument per Config setting."""
    run = subparsers.add_parser("run", help="run an ASGI app on a cluster (master + workers)")
    run.add_argument("--config", metavar="FILE", help="read settings from this TOML file (or a pyproject.toml)")
    run.add_argument(
        "--print-config", action="store_true", help="print the effective settings and where each came from, then exit"
    )
    add_setting_arguments(run)
    run.set_defaults(func=command_run)


def format_effective_config(config: Config, sources: dict[str, str]) -> str:
    """One line per setting: ``name = value  (origin)``, names aligned."""
    width = max(len(fld.name) for fld in settings())
    lines = []
    for fld in settings():
        value = getattr(config, fld.name)
        shown = ",".join(value) if isinstance(value, tuple) else repr(value)
        lines.append(f"{fld.name:<{width}} = {shown}  ({sources[fld.name]})")
    return "\n".join(lines)


def command_run(args: argparse.Namespace) -> int:
    """Check the settings (exit 2 with one line if they are wrong), then run the master."""
    try:
        config, sources = config_from_args(args)
    except ConfigError as exc:
        print(f"asynccluster: error: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    for warning in unknown_env_warnings(os.environ):
        print(f"asynccluster: warning: {warning}", file=sys.stderr)
    if args.print_config:
        print(format_effective_config(config, sources))
        return exitcodes.OK
    if not config.app:
        print("asynccluster: error: no app given: asynccluster run module:attribute", file=sys.stderr)
        return exitcodes.USAGE
    # Lazily: the master's modules (asyncio, the supervisor) are not needed by `status` & co.
    from asynccluster.master.runner import run_cluster

    return run_cluster(config, sources)


__all__ = ["add_parser", "command_run", "format_effective_config"]
