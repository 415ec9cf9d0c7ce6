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
from asynccluster.config import Config, ConfigError, flag_name, settings, unknown_env_warnings


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


# Settings that only tune the --reload file watcher (not --reload-batch: `asynccluster reload`
# uses it too). Given on the command line without --reload they do nothing.
WATCH_SETTINGS = ("reload_dir", "reload_include", "reload_exclude", "reload_delay")


def reload_warning(config: Config, sources: dict[str, str]) -> str | None:
    """One line when watcher flags were given on the command line but --reload is off, as
    uvicorn warns ("will not reload as not all conditions are met"); None otherwise.

    A warning, not an error: uvicorn's users expect the command to run. Only flags count: a
    config file or the environment may keep the watcher's settings for the runs that add --reload.
    """
    given = [flag_name(name) for name in WATCH_SETTINGS if sources[name] == "cli"]
    if config.reload or not given:
        return None
    verb = "has" if len(given) == 1 else "have"
    return f"{', '.join(given)} {verb} no effect without --reload (nothing is watched)"


def command_run(args: argparse.Namespace) -> int:
    """Check the settings, then run the master. A wrong value raises ConfigError, which the
    CLI's entry answers like a wrong flag (`asynccluster run: error: ...`, exit 2)."""
    config, sources = config_from_args(args)
    warnings = [*unknown_env_warnings(os.environ), reload_warning(config, sources)]
    for warning in filter(None, warnings):
        print(f"asynccluster run: warning: {warning}", file=sys.stderr)
    if args.print_config:
        print(format_effective_config(config, sources))
        return exitcodes.OK
    if not config.app:
        raise ConfigError("no app given: asynccluster run module:attribute")
    # Lazily: the master's modules (asyncio, the supervisor) are not needed by `status` & co.
    from asynccluster.master.runner import run_cluster

    return run_cluster(config, sources)


__all__ = ["WATCH_SETTINGS", "add_parser", "command_run", "format_effective_config", "reload_warning"]
