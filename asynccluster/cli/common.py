"""What every management command shares: its settings, finding and reaching a running cluster,
and turning a ControlError into one line on stderr and the exit status (issue 5).

A cluster is found by NAME, or as the only one running, among the control sockets of this
user's control directory (asynccluster/contracts/control.py); sockets nobody listens on
(a cluster killed by SIGKILL) are removed on the way. Exit status: 1 for a refusal or a cluster
that is not there, 2 for bad input, 130 for Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asynccluster import exitcodes
from asynccluster.cli.parser import config_from_args
from asynccluster.config import Config, ConfigError
from asynccluster.contracts.control import (
    SUFFIX,
    ControlClient,
    ControlError,
    control_dir,
    probe,
    remove_stale,
    sanitise_name,
)
from asynccluster.observe import format as fmt

Command = Callable[[argparse.Namespace], int]


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
    except ConfigError as exc:  # a wrong setting is bad input: exit 2, like `run`'s
        raise ControlError(str(exc), usage=True) from None


def connect(args: argparse.Namespace) -> ControlClient:
    """A connection to the cluster ``args.name`` names (or the only one running)."""
    directory = control_dir(command_config(args).control_dir)
    path, name = find_cluster(directory, args.name)
    return ControlClient(path, name)


def live_names(args: argparse.Namespace) -> list[str]:
    return running_clusters(control_dir(command_config(args).control_dir))[0]


def cluster_exists(args: argparse.Namespace) -> bool:
    return bool(args.name) and args.name in live_names(args)


def describe_of(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """The ``describe`` view of the cluster ``name``."""
    with ControlClient(find_cluster(control_dir(command_config(args).control_dir), name)[0], name) as client:
        view: dict[str, Any] = client.request("describe")
    return view


def status_of(path: Path, name: str) -> dict[str, Any]:
    """The ``status`` view of the cluster listening at ``path``."""
    with ControlClient(path, name) as client:
        view: dict[str, Any] = client.request("status")
    return view


# ---------------------------------------------------------------- output and errors


def output_width() -> int:
    """The terminal's width when stdout is one, else 100 columns (issue 11: status fits 100)."""
    try:
        if os.isatty(sys.stdout.fileno()):
            return os.get_terminal_size(sys.stdout.fileno()).columns or fmt.STATUS_WIDTH
    except (OSError, ValueError, AttributeError):
        pass
    return fmt.STATUS_WIDTH


def prog(args: argparse.Namespace) -> str:
    """The command's name in its messages, as argparse's (``asynccluster scale``): one prefix for
    a wrong flag and a wrong value (issue 10, newcomer trial)."""
    command = getattr(args, "command", None)
    return f"asynccluster {command}" if command else "asynccluster"


def guard(command: Command) -> Command:
    """Turn ControlError into one line on stderr and the exit status (1, or 2 for bad input)."""

    def run(args: argparse.Namespace) -> int:
        try:
            code: int = command(args)
        except ControlError as exc:
            print(f"{prog(args)}: error: {exc}", file=sys.stderr)
            return exitcodes.USAGE if exc.usage else exitcodes.ERROR
        except KeyboardInterrupt:
            print("asynccluster: interrupted (an operation already sent continues in the master)", file=sys.stderr)
            return 130
        return code

    run.__name__ = getattr(command, "__name__", "run")
    return run


__all__ = [
    "Command",
    "cluster_exists",
    "command_config",
    "connect",
    "describe_of",
    "find_cluster",
    "guard",
    "live_names",
    "output_width",
    "prog",
    "running_clusters",
    "status_of",
]
