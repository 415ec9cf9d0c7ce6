"""The command line: ``asynccluster COMMAND ...`` and ``python -m asynccluster`` (issue 10's layout).

::

    asynccluster run APP [--workers N|auto] [--port P] ... [--config FILE] [--print-config]
    asynccluster ls | status | reload | scale | restart | stop | top      (cli/manage.py)
    asynccluster start | delete (cli/start.py) | save | resurrect | startup (cli/saved.py)
    asynccluster logs | describe | errors | slow | memory | profile

This module is the entry: it assembles the parser from every command module and runs the
chosen command. The modules below it depend downward only: ``parser`` (the argument parser,
settings arguments derived from Config; ``flags``: advice on foreign flags) knows no command;
``common`` finds and reaches a cluster through the control socket's client half
(asynccluster/contracts/control.py), never the server module.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from asynccluster import exitcodes
from asynccluster.cli import describe, diagnose, logs, manage, run, saved, start
from asynccluster.cli.parser import Parser, parse_args
from asynccluster.config import ConfigError
from asynccluster.contracts.version import __version__


def build_parser() -> Parser:
    """The whole command line; the subcommands in the order ``--help`` lists them."""
    parser = Parser(
        prog="asynccluster",
        description="Run an ASGI app on a cluster of worker processes, and manage running clusters.",
    )
    parser.add_argument("--version", action="version", version=f"asynccluster {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run.add_parser(sub)
    manage.add_parsers(sub)  # ls, status, reload, scale, restart, stop
    start.add_parsers(sub)  # start, delete (issue 11)
    saved.add_parsers(sub)  # save, resurrect, startup
    manage.add_top_parser(sub)
    logs.add_parser(sub)
    describe.add_parser(sub)
    diagnose.add_parsers(sub)  # errors, slow, memory, profile (issue 15)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status (asynccluster/exitcodes.py). The console script's entry."""
    parser = build_parser()
    args = parse_args(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return exitcodes.USAGE
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        # A setting's value (flag, env, file) is wrong: the same answer as an unknown flag,
        # `asynccluster run: error: ...`, exit 2 (issue 10, newcomer trial).
        sys.stderr.write(parser.command_parser(args).error_text(str(exc)))
        return exitcodes.USAGE
    except BrokenPipeError:
        # The reader went away (`asynccluster status | head`): no traceback. stdout now goes to
        # /dev/null so the interpreter's last flush cannot raise again; 1, as Python's own
        # documentation suggests for EPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return result


__all__ = ["build_parser", "main"]
