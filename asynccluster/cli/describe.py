"""``asynccluster describe [NAME]``: one cluster in detail, like ``pm2 describe`` (issue 11 item 7).

The master answers with its identity, paths, workers, last exits and every setting with its
origin (asynccluster/master/describe.py); this prints it for a person (``--all`` for every
setting, not only those that are not at their defaults) or as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from asynccluster import exitcodes
from asynccluster.cli.common import connect, guard, output_width
from asynccluster.cli.parser import add_common_arguments
from asynccluster.observe import format as fmt
from asynccluster.observe.columns import Layout, fit_table

WORKER_HEADERS = ("SLOT", "PID", "STATE", "UPTIME", "RESTARTS", "LAST EXIT")
WORKER_LAYOUT = Layout(drop=("UPTIME",), flexible=(("LAST EXIT", 20),), right=frozenset({"SLOT", "PID", "RESTARTS"}))
SETTING_LAYOUT = Layout(flexible=(("VALUE", 16),))


def describe_text(view: dict[str, Any], width: int, show_all: bool) -> str:
    paths = view.get("paths") or {}
    log_file = paths.get("log_file")
    rotation = f" (rotation: {paths.get('log_rotation')})" if log_file else ""
    facts = [
        ("app", view.get("app")),
        ("address", fmt.address(view.get("address"))),
        ("preload", fmt.preload_text(view["preload"]) if view.get("preload") else "off"),
        ("started", _when(view.get("started_at"))),
        ("version", f"asynccluster {view.get('version')}, Python {view.get('python')}"),
        ("cwd", view.get("cwd")),
        ("command", " ".join(view.get("command") or [])),
        ("control socket", paths.get("control_socket")),
        ("log file", f"{log_file}{rotation}" if log_file else "none (asynccluster logs reads the buffer)"),
        ("log buffer", paths.get("log_buffer")),
        ("restarts", view.get("restarts")),
    ]
    lines = [f"{view.get('name')}  (master pid {view.get('pid')}, {view.get('state')}, "
             f"up {fmt.duration(view.get('uptime'))})"]  # fmt: skip
    lines += [f"  {label:<15}{value}" for label, value in facts]
    lines += ["", "workers"]
    rows = [
        [fmt.count(w.get("slot")), fmt.count(w.get("pid")), str(w.get("state")), fmt.duration(w.get("uptime")),
         fmt.count(w.get("restarts")), fmt.last_exit(w.get("last_exit"))]
        for w in view.get("workers", [])
    ]  # fmt: skip
    lines += ["  " + line for line in fit_table(WORKER_HEADERS, rows, WORKER_LAYOUT, width - 2)]
    exits = view.get("last_exits") or []
    if exits:
        lines += ["", "last exits"]
        lines += [f"  {_when(e.get('time'))}  {e.get('text')}" for e in exits]
    settings = view.get("settings") or []
    shown = settings if show_all else [s for s in settings if s.get("origin") != "default"]
    title = "settings" if show_all else "settings (not at their defaults; --all shows every one)"
    lines += ["", title]
    rows = [[str(s["name"]), _value(s.get("value")), str(s.get("origin"))] for s in shown]
    lines += ["  " + line for line in fit_table(("NAME", "VALUE", "ORIGIN"), rows, SETTING_LAYOUT, width - 2)]
    return "\n".join(line[:width] for line in lines)


def _when(stamp: Any) -> str:
    if not isinstance(stamp, (int, float)):
        return fmt.MISSING
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "(none)"
    return repr(value) if isinstance(value, str) else str(value)


def cmd_describe(args: argparse.Namespace) -> int:
    with connect(args) as client:
        view = client.request("describe")
    print(json.dumps(view, default=str) if args.json else describe_text(view, output_width(), args.all))
    return exitcodes.OK


def add_parser(subparsers: Any) -> None:
    """Add ``describe`` to the CLI's subparsers."""
    parser = subparsers.add_parser(
        "describe", help="one cluster in detail: settings and where they came from, paths, restarts, last exits"
    )
    add_common_arguments(parser)
    parser.add_argument("--all", action="store_true", help="every setting, also those at their defaults")
    parser.set_defaults(func=guard(cmd_describe))


__all__ = ["add_parser", "cmd_describe", "describe_text"]
