"""The command line never misreads a flag (issue 8 item 9).

No prefix matching anywhere (``--reload`` was read as ``--reload-batch``, ``--header`` as
``--header-timeout``); an unknown flag is exit 2 with the closest real flags; uvicorn's and
gunicorn's flags we do not have say what to use instead (one table, cli/flags.py's FOREIGN_FLAGS).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from asynccluster import exitcodes
from asynccluster.cli import build_parser, main
from asynccluster.cli.flags import FOREIGN_FLAGS, advice, flag_of
from asynccluster.cli.parser import Parser

ROOT = Path(__file__).resolve().parent.parent


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """main(argv) in-process: (exit code, stderr)."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def subcommand_parsers() -> dict[str, Parser]:
    commands = build_parser().commands
    assert "run" in commands and "status" in commands
    return commands


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["run", "--reload-b", "2", "m:app"], "--reload-b"),  # would be read as --reload-batch
        (["run", "--header", "x-a:1", "m:app"], "--header"),  # was read as --header-timeout
        (["run", "--work", "2", "m:app"], "--work"),  # was read as --workers
    ],
)
def test_no_prefix_matching(argv: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli([*argv, "--print-config"], capsys)
    assert code == exitcodes.USAGE
    assert f"unknown option {named}" in err


def test_every_parser_refuses_abbreviations() -> None:
    parsers = {"": build_parser(), **subcommand_parsers()}
    for name, parser in parsers.items():
        assert isinstance(parser, Parser), name
        assert parser.allow_abbrev is False, name


def test_subcommand_flag_abbreviation_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["status", "--js"], capsys)  # --json exists; --js must not mean it
    assert code == exitcodes.USAGE
    assert "unknown option --js: did you mean --json?" in err


@pytest.mark.parametrize(("argv", "suggested"), [(["--worker", "2"], "--workers"), (["--prot", "1"], "--port")])
def test_unknown_flag_gets_a_close_match(argv: list[str], suggested: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["run", *argv, "m:app"], capsys)
    assert code == exitcodes.USAGE
    assert "did you mean" in err and suggested in err


def test_foreign_flags_are_not_real_flags() -> None:
    # A flag `run` gained must leave the table, or its hint would be wrong. (Another command
    # may own one, e.g. `logs -n`: advice() only looks at the table for flags it lacks.)
    assert not subcommand_parsers()["run"].option_strings() & set(FOREIGN_FLAGS)
    assert advice("-n", {"-n", "--json"}) != advice("-n", {"--json"})


@pytest.mark.parametrize("flag", sorted(FOREIGN_FLAGS))
def test_each_foreign_flag_says_what_to_do(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["run", flag, "value", "m:app", "--print-config"], capsys)
    assert code == exitcodes.USAGE
    assert f"unknown option {flag}: {FOREIGN_FLAGS[flag]}" in err


def test_forms_of_an_unknown_argument() -> None:
    assert flag_of("--bind=0.0.0.0:80") == "--bind"
    assert flag_of("-w4") == "-w"
    assert advice("-w4", {"--workers"}).startswith("unknown option -w: use --workers")
    assert advice("stray", {"--workers"}) == "unexpected argument 'stray'"
    assert advice("--zzzzzz", {"--workers"}) == "unknown option --zzzzzz (see --help)"


def test_real_flags_still_parse(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--reload-batch=2", "--header-timeout", "3", "--print-config", "m:app"]) == exitcodes.OK
    out = capsys.readouterr().out
    assert "reload_batch" in out and "= 2  (cli)" in out
    assert "header_timeout" in out and "= 3.0  (cli)" in out


@pytest.mark.integration  # real processes (tests/conftest.py: the tiers)
def test_the_installed_command_refuses_a_foreign_flag_with_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "asynccluster", "run", "--log-config", "x.ini", "examples.hello:app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == exitcodes.USAGE
    assert "unknown option --log-config: not supported yet" in result.stderr
    assert result.stdout == ""


@pytest.mark.integration  # real processes (tests/conftest.py: the tiers)
def test_a_reader_that_goes_away_gets_no_traceback() -> None:
    """`asynccluster status | head`: a closed pipe ends the command quietly (attack run, issue 9)."""
    import subprocess
    import sys

    script = (
        "import argparse, sys\n"
        "from asynccluster import cli\n"
        "def command(args):\n"
        "    raise BrokenPipeError(32, 'Broken pipe')\n"
        "cli.parse_args = lambda parser, argv: argparse.Namespace(func=command)\n"
        "sys.exit(cli.main([]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
