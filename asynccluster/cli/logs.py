"""``asynccluster logs [NAME]``: the cluster's lines from its master's log buffer (issue 11 item 1).

Whatever the cluster's log settings, its master keeps every line (its own records, every
worker's log records, access log, stdout and stderr) in a bounded ring
(master/logbuffer.py); this command reads it over the control socket::

    asynccluster logs api --lines 50 --worker 1 --err --since 10m --follow --json

``--lines N`` (default 20) of history, the filters applied first (``--worker 1 -n 2`` is the
last two lines of worker 1); ``--follow`` then prints new lines as they come (a long poll,
Ctrl-C to stop) and says so when lines were pushed out of the ring before they were read.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from asynccluster import exitcodes
from asynccluster.cli.common import connect, guard
from asynccluster.cli.parser import add_common_arguments
from asynccluster.contracts.control import ControlError
from asynccluster.master import logbuffer
from asynccluster.settingtypes import parse_duration

FOLLOW_WAIT = 5.0  # seconds one follow request may wait in the master for a new line


def since_seconds(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ControlError(f"--since: {exc}", usage=True) from None


def request_args(args: argparse.Namespace) -> dict[str, Any]:
    if args.lines < 0:
        raise ControlError(f"--lines must be >= 0, got {args.lines}", usage=True)
    return {"lines": args.lines, "worker": args.worker, "err": args.err, "since": since_seconds(args.since)}


def show(args: argparse.Namespace, answer: dict[str, Any]) -> None:
    cluster = str(answer.get("cluster", ""))
    for item in answer.get("items", []):
        line = logbuffer.as_json(item, cluster) if args.json else logbuffer.render(item, cluster)
        print(line, flush=True)


def cmd_logs(args: argparse.Namespace) -> int:
    query = request_args(args)
    with connect(args) as client:
        answer = client.request("logs", **query)
        show(args, answer)
        if not args.follow:
            return exitcodes.OK
        seq = int(answer.get("seq", 0))
        follow = {key: value for key, value in query.items() if key != "lines"}
        try:
            while True:
                try:
                    answer = client.request("logs", timeout=FOLLOW_WAIT + 10, after=seq, wait=FOLLOW_WAIT, **follow)
                except ControlError as exc:
                    print(f"asynccluster: {exc}", file=sys.stderr)
                    return exitcodes.ERROR
                if answer.get("lost"):
                    print("--- asynccluster: some lines were pushed out of the log buffer before they were read ---",
                          file=sys.stderr)  # fmt: skip
                show(args, answer)
                seq = int(answer.get("seq", seq))
        except KeyboardInterrupt:
            return exitcodes.OK


def add_parser(subparsers: Any) -> None:
    """Add ``logs`` to the CLI's subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "logs", help="the cluster's lines (every worker, prints and tracebacks included), from its master"
    )
    add_common_arguments(parser)
    parser.add_argument("--lines", "-n", type=int, default=20, help="lines of history to show (default 20)")
    parser.add_argument("--follow", "-f", action="store_true", help="then print new lines as they come")
    parser.add_argument(
        "--no-follow", dest="follow", action="store_false", help=argparse.SUPPRESS
    )  # the default; kept for scripts written before --follow
    parser.add_argument("--worker", type=int, default=None, metavar="SLOT", help="only this worker slot's lines")
    parser.add_argument("--err", action="store_true", help="only warnings and errors (and stderr lines)")
    parser.add_argument("--since", metavar="DURATION", help="only lines of the last DURATION, e.g. 90s, 10m, 2h")
    parser.set_defaults(func=guard(cmd_logs))


__all__ = ["add_parser", "cmd_logs"]
