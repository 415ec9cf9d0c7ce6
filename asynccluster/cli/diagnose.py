"""``asynccluster errors | slow | memory | profile`` (issue 15): diagnose a live cluster.

::

    asynccluster errors [NAME] [--tracebacks] [--json]     grouped app exceptions (the 500s)
    asynccluster slow [NAME] [--json]                      the last slow requests (--slow-request-threshold)
    asynccluster memory [NAME] --worker SLOT [--seconds 10] [--top 10] [--json]
    asynccluster profile [NAME] --worker SLOT [--seconds 10] --out FILE [--format svg|speedscope]

Each asks the master over the control socket (master/diagnose.py); ``memory`` and
``profile`` measure one worker for ``--seconds`` while it serves. Exit status as for the
other commands: 2 for bad input (a slot that does not exist), 1 for a refusal (a draining
worker) or a cluster that is not there.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

from asynccluster import exitcodes
from asynccluster.cli.common import connect, guard
from asynccluster.cli.parser import add_common_arguments
from asynccluster.observe import format as fmt

WAIT_GRACE = 30.0  # seconds beyond --seconds the CLI waits for the master's answer


def _printable(text: Any) -> str:
    """Control characters shown escaped: a path or message from a request cannot drive the terminal."""
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in str(text))


def _when(stamp: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(stamp))) if stamp else "-"


def errors_text(answer: dict[str, Any], tracebacks: bool) -> str:
    groups = answer.get("groups", [])
    if not groups:
        return "no app errors reported"
    lines = []
    for group in groups:
        workers = ",".join(str(w) for w in group.get("workers", []))
        lines.append(
            f"[{group['id']}] {group['count']}x {_printable(group['type'])}: {_printable(group['message'])}\n"
            f"    at {_printable(group['frame'])}   last request: {_printable(group['request'])}\n"
            f"    first {_when(group['first_seen'])}  last {_when(group['last_seen'])}  workers {workers}"
        )
        if tracebacks and group.get("traceback"):
            lines.append("    " + _printable(group["traceback"]).rstrip().replace("\n", "\n    "))
    extra = answer.get("evicted_groups", 0)
    if extra:
        lines.append(f"({extra} older groups were evicted: the master keeps the {len(groups)} most recent)")
    return "\n".join(lines)


def slow_text(answer: dict[str, Any]) -> str:
    requests = answer.get("requests", [])
    if not requests:
        return "no slow requests reported (is --slow-request-threshold set?)"
    lines = []
    for entry in requests:
        lines.append(
            f"{_when(entry.get('time'))} worker {entry.get('worker')}: {_printable(entry.get('request'))} "
            f"-> {entry.get('status')} in {entry.get('ms')} ms"
        )
        lines.extend(f"    {_printable(frame)}" for frame in entry.get("stack", []))
    return "\n".join(lines)


def memory_text(answer: dict[str, Any]) -> str:
    lines = [
        f"worker {answer['worker']} (pid {answer['pid']}): tracemalloc for {answer['seconds']:g} s; "
        f"RSS {fmt.size(answer['rss_before'])} -> {fmt.size(answer['rss_after'])}, "
        f"traced {fmt.size(answer['traced'])} (peak {fmt.size(answer['peak'])})",
        "top allocation sites (allocated during the window, still alive):",
    ]
    lines += [f"  {fmt.size(s['size']):>8} {s['count']:>8} blocks  {_printable(s['where'])}" for s in answer["top"]]
    lines.append("growth between the two snapshots (half-way and end):")
    growth = answer["growth"] or [{"where": "(none)", "size_diff": 0, "count_diff": 0}]
    lines += [
        f"  +{fmt.size(g['size_diff']):>7} {g['count_diff']:>+8} blocks  {_printable(g['where'])}" for g in growth
    ]
    return "\n".join(lines)


def profile_text(answer: dict[str, Any]) -> str:
    lines = [
        f"worker {answer['worker']} (pid {answer['pid']}): {answer['samples']} samples in {answer['seconds']:g} s "
        f"with {answer['tool']}; wrote {answer['format']} to {answer['file']}",
        "top functions (self %, total %):",
    ]
    lines += [f"  {t['self_pct']:>5.1f} {t['total_pct']:>5.1f}  {_printable(t['function'])}" for t in answer["top"]]
    if answer.get("note"):
        lines.append(f"note: {_printable(answer['note'])}")
    return "\n".join(lines)


def show(args: argparse.Namespace, answer: dict[str, Any], text: Callable[[dict[str, Any]], str]) -> int:
    print(json.dumps(answer, default=str) if args.json else text(answer))
    return exitcodes.OK


def cmd_errors(args: argparse.Namespace) -> int:
    with connect(args) as client:
        answer = client.request("errors", tracebacks=args.tracebacks or args.json)
    return show(args, answer, lambda a: errors_text(a, args.tracebacks))


def cmd_slow(args: argparse.Namespace) -> int:
    with connect(args) as client:
        return show(args, client.request("slow"), slow_text)


def cmd_memory(args: argparse.Namespace) -> int:
    with connect(args) as client:
        answer = client.request(
            "memory", timeout=args.seconds + WAIT_GRACE, slot=args.worker, seconds=args.seconds, top=args.top
        )
    return show(args, answer, memory_text)


def cmd_profile(args: argparse.Namespace) -> int:
    out = os.path.abspath(args.out)
    form = args.format or ("speedscope" if out.endswith(".json") else "svg")
    with connect(args) as client:
        answer = client.request(
            "profile", timeout=args.seconds + WAIT_GRACE, slot=args.worker, seconds=args.seconds,
            out=out, format=form, rate=args.rate, tool=args.tool,
        )  # fmt: skip
    return show(args, answer, profile_text)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0.1 <= value <= 600:
        raise argparse.ArgumentTypeError("must be from 0.1 to 600 seconds")
    return value


def add_parsers(subparsers: Any) -> None:
    """Add errors/slow/memory/profile to the CLI's subparsers (guarded like the others)."""
    parser = subparsers.add_parser("errors", help="the app's unhandled exceptions, grouped by type and app frame")
    add_common_arguments(parser)
    parser.add_argument("--tracebacks", action="store_true", help="show each group's traceback")
    parser.set_defaults(func=guard(cmd_errors))

    parser = subparsers.add_parser("slow", help="the last requests slower than --slow-request-threshold")
    add_common_arguments(parser)
    parser.set_defaults(func=guard(cmd_slow))

    for name, help_text in (
        ("memory", "top allocation sites and growth of one worker (tracemalloc for --seconds)"),
        ("profile", "CPU profile of one worker while it serves (py-spy, else a stdlib sampler): flame graph"),
    ):
        parser = subparsers.add_parser(name, help=help_text)
        add_common_arguments(parser)
        parser.add_argument("--worker", type=int, required=True, metavar="SLOT", help="the worker slot to measure")
        parser.add_argument("--seconds", type=_positive_seconds, default=10.0, help="measured window (default 10)")
        if name == "memory":
            parser.add_argument("--top", type=int, default=10, help="sites to show (1-50, default 10)")
            parser.set_defaults(func=guard(cmd_memory))
        else:
            parser.add_argument("--out", required=True, metavar="FILE", help="write the profile here (.svg or .json)")
            parser.add_argument("--format", choices=("svg", "speedscope"), help="default: from --out's extension")
            parser.add_argument("--rate", type=int, default=100, help="samples per second (default 100)")
            parser.add_argument("--tool", choices=("auto", "py-spy", "sampler"), default="auto",
                                help="py-spy (if installed) or the stdlib sampler in the worker")  # fmt: skip
            parser.set_defaults(func=guard(cmd_profile))


__all__ = ["add_parsers", "errors_text", "memory_text", "profile_text", "slow_text"]
