"""The command line's parser and its settings arguments, generated from Config's declared settings.

Every command's module adds its subcommand with the helpers here (:func:`add_setting_arguments`,
:func:`add_common_arguments`) and reads its settings with :func:`config_from_args`; the tree of
subcommands is assembled by ``asynccluster/cli/__init__.py``. This module imports no command.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, NoReturn

from asynccluster import exitcodes
from asynccluster.cli.flags import advice, choice_advice
from asynccluster.config import (
    Config,
    ConfigError,
    env_name,
    find_default_config_file,
    flag_name,
    load_config,
    parse_bool,
    settings,
)

GROUP_TITLES = {
    "application": "application",
    "cluster": "cluster (workers, timeouts, reload and recycling)",
    "network": "network (where to listen)",
    "http": "HTTP server (limits, keep-alive, headers)",
    "logging": "logging",
    "control": "control socket and metrics",
}


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that never guesses: no prefix matching (issue 8 item 9).

    With argparse's default, ``--reload`` would be read as ``--reload-batch`` and ``--header``
    as ``--header-timeout``. Subcommand parsers are made with this class too (argparse uses
    the parent's class), so the rule holds everywhere.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.commands: dict[str, Parser] = {}  # subcommand name -> its parser

    def add_subparsers(self, **kwargs: Any) -> Any:
        action = super().add_subparsers(**kwargs)
        self.commands = action.choices  # filled in as subcommands are added
        return action

    def command_parser(self, args: argparse.Namespace) -> Parser:
        """The parser of the subcommand ``args`` chose (this one if none)."""
        return self.commands.get(getattr(args, "command", None) or "", self)

    def error(self, message: str) -> NoReturn:
        """The message and where to look, without argparse's usage dump: `run` has some eighty
        options, and the advice on a uvicorn flag was the last of fifty lines (newcomer trial)."""
        self.exit(exitcodes.USAGE, self.error_text(message))

    def error_text(self, message: str) -> str:
        """What :meth:`error` prints (two lines): also a wrong setting's value, which the entry
        reports without exiting (issue 10: one style for a wrong flag and a wrong value)."""
        return f"{self.prog}: error: {message}\n(all options: {self.prog} --help)\n"

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        """A value outside ``action``'s choices: argparse's own hook (unchanged since 3.2), here
        so that the answer says what to use (cli/flags.py's choice_advice) rather than only
        listing the choices: ``--http httptools``, ``asynccluster stauts`` (issue 10)."""
        choices = action.choices
        if choices is None or value in choices:
            return
        command = isinstance(action, argparse._SubParsersAction)
        flag = None if command else (action.option_strings or [action.dest])[-1]
        raise argparse.ArgumentError(None, choice_advice(flag, value, list(choices)))

    def option_strings(self) -> set[str]:
        """Every flag this parser knows (help-suppressed ones included)."""
        return {flag for action in self._actions for flag in action.option_strings}


def add_setting_arguments(parser: argparse.ArgumentParser, only: Collection[str] | None = None) -> None:
    """One argument per Config field (or per field in ``only``): `--name VALUE`, or
    `--name/--no-name` for booleans.

    Defaults stay None so that load_config can tell "given on the command line" apart and
    apply CLI > env > file > default (issue 5).
    """
    groups: dict[str, Any] = {}
    declared = tuple(fld for fld in settings() if only is None or fld.name in only)
    # Remember which arguments are settings: a command's own options (e.g. `stop --timeout`)
    # must not be mistaken for the Config field of the same name.
    parser.set_defaults(setting_names=tuple(fld.name for fld in declared))
    for fld in declared:
        meta = fld.metadata
        group = groups.get(meta["group"])
        if group is None:
            group = groups[meta["group"]] = parser.add_argument_group(GROUP_TITLES.get(meta["group"], meta["group"]))
        # argparse %-formats help strings; the access-log format contains %(...)s.
        help_text = f"{meta['help']} [env {env_name(fld.name)}; default: {_show_default(fld.default)}]".replace(
            "%", "%%"
        )
        choices = getattr(meta["parse"], "choices", None)
        if meta["positional"]:
            group.add_argument(
                fld.name, nargs="?", default=None, metavar=meta["metavar"], help=meta["help"].replace("%", "%%")
            )
        elif meta["parse"] is parse_bool:
            negative = "--no-" + fld.name.replace("_", "-")
            group.add_argument(
                flag_name(fld.name), dest=fld.name, action="store_const", const=True,
                help=f"{help_text} ({negative} to turn off)",
            )  # fmt: skip
            group.add_argument(
                negative, dest=fld.name, action="store_const", const=False,
                help=argparse.SUPPRESS,
            )  # fmt: skip
        else:
            group.add_argument(
                flag_name(fld.name), dest=fld.name, metavar=meta["metavar"] or fld.name.upper(),
                choices=choices, help=help_text,
            )  # fmt: skip
        parser.set_defaults(**{fld.name: None})


def _show_default(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(value) or "(none)"
    return str(value) if value != "" else "(none)"


def config_from_args(args: argparse.Namespace) -> tuple[Config, dict[str, str]]:
    """The effective Config for a command: its setting arguments > env > config file > defaults.

    Management commands declare only the settings they use (e.g. control_dir); the rest
    still come from the environment and the config file, like for `run`.
    """
    cli_values = {name: getattr(args, name) for name in getattr(args, "setting_names", ())}
    config_arg = getattr(args, "config", None)
    config_file = Path(config_arg) if config_arg else find_default_config_file(Path.cwd())
    if config_arg and not config_file.is_file():  # type: ignore[union-attr]
        raise ConfigError(f"config file {config_arg!r} does not exist")
    return load_config(cli=cli_values, env=os.environ, config_file=config_file)


def parse_args(parser: Parser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; an unknown argument is an error (exit 2) that says what to use instead."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = parser.command_parser(args)
        top_level = parser.option_strings() if command is not parser else ()
        command.error(advice(unknown[0], command.option_strings(), top_level, parser.prog))
    return args


def add_common_arguments(parser: argparse.ArgumentParser, *, name: bool = True) -> None:
    """What every management command takes: the cluster NAME (optional when only one runs),
    ``--json``, and where the control sockets are (``--control-dir``)."""
    if name:
        parser.add_argument("name", nargs="?", metavar="NAME", help="cluster name (optional when only one runs)")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")
    add_setting_arguments(parser, only=("control_dir",))


__all__ = ["Parser", "add_common_arguments", "add_setting_arguments", "config_from_args", "parse_args"]
