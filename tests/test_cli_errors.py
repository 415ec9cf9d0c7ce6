"""The newcomer's CLI papercuts (issue 10): every wrong input gets one answer that says what to
do, in one style (``asynccluster CMD: error: ...``, exit 2), and watcher flags without
--reload are not silently ignored."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from asynccluster import exitcodes
from asynccluster.cli import main
from asynccluster.cli.flags import FOREIGN_VALUES, choice_advice
from asynccluster.cli.run import WATCH_SETTINGS, reload_warning
from asynccluster.config import Config, flag_name


@pytest.fixture(autouse=True)
def no_settings_from_outside(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The answers compared here are the whole stderr: no ASYNCCLUSTER_* variable of the
    caller's (an unknown one adds a warning) and no config file of the checkout."""
    for key in [key for key in os.environ if key.startswith("ASYNCCLUSTER_") or key == "WEB_CONCURRENCY"]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """main(argv) in-process: (exit code, stdout, stderr)."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("flag", ["--reload-dir", "--reload-include", "--reload-exclude"])
def test_a_watcher_flag_without_reload_warns_once(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["run", "m:app", flag, "x", "--print-config"], capsys)
    assert code == exitcodes.OK and "reload " in out  # uvicorn warns and runs; so do we
    warning = f"asynccluster run: warning: {flag} has no effect without --reload (nothing is watched)"
    assert warning in err.splitlines() and err.count("no effect without --reload") == 1


def test_watcher_flags_with_reload_are_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["run", "m:app", "--reload", "--reload-dir", ".", "--print-config"], capsys)
    assert code == exitcodes.OK and err == ""


def test_several_watcher_flags_are_one_line() -> None:
    sources = {name: "cli" for name in WATCH_SETTINGS}
    warning = reload_warning(Config(app="m:app"), sources)
    assert (
        warning == f"{', '.join(map(flag_name, WATCH_SETTINGS))} have no effect without --reload (nothing is watched)"
    )


def test_watcher_settings_from_a_file_or_env_do_not_warn() -> None:
    # A project keeps the watcher's settings for its `--reload` runs; production runs stay quiet.
    sources = {name: "env ASYNCCLUSTER_RELOAD_DIR" for name in WATCH_SETTINGS}
    assert reload_warning(Config(app="m:app", reload_dir=("src",)), sources) is None


@pytest.mark.parametrize(("flag", "value"), sorted(FOREIGN_VALUES))
def test_a_uvicorn_value_says_what_to_use(flag: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["run", "m:app", flag, value, "--print-config"], capsys)
    assert code == exitcodes.USAGE and out == ""
    assert err.startswith(f"asynccluster run: error: argument {flag}: invalid choice: {value!r}: ")
    assert FOREIGN_VALUES[(flag, value)] in err


def test_http_httptools_points_to_http_1_1(capsys: pytest.CaptureFixture[str]) -> None:
    _, _, err = run_cli(["run", "m:app", "--http", "httptools"], capsys)
    assert "httptools" in err and "--http 1.1" in err


def test_every_foreign_value_is_refused_by_its_flag(capsys: pytest.CaptureFixture[str]) -> None:
    # A value that becomes valid must leave the table: its advice would then never show.
    for flag, value in FOREIGN_VALUES:
        code, _, _ = run_cli(["run", "m:app", flag, value, "--print-config"], capsys)
        assert code == exitcodes.USAGE, (flag, value)


def test_a_misspelt_choice_gets_the_close_one(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["run", "m:app", "--log-level", "inof"], capsys)
    assert code == exitcodes.USAGE
    assert "argument --log-level: invalid choice: 'inof': did you mean 'info'?" in err


def test_a_misspelt_command_gets_the_close_one(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["stauts"], capsys)
    assert code == exitcodes.USAGE
    assert err.startswith("asynccluster: error: unknown command 'stauts': did you mean 'status'?\n")


def test_an_unknown_command_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["xyzzy"], capsys)
    assert code == exitcodes.USAGE
    assert "unknown command 'xyzzy' (choose from 'run', 'ls', 'status'," in err


def test_choice_advice_without_a_close_match() -> None:
    assert choice_advice("--http", "3", ("1.1", "2", "auto")).endswith("(choose from '1.1', '2', 'auto')")


@pytest.mark.parametrize("command", ["run", "status", "logs"])
def test_version_after_a_command_points_to_the_top(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli([command, "--version"], capsys)
    assert code == exitcodes.USAGE
    assert f"asynccluster {command}: error: --version is a top-level flag: asynccluster --version\n" in err
    assert "did you mean" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "m:app", "--workers", "two"], "workers: expected a number of workers"),
        (["run", "m:app", "--config", "no-such-file.toml"], "config file 'no-such-file.toml' does not exist"),
        (["run"], "no app given: asynccluster run module:attribute"),
    ],
)
def test_a_wrong_value_is_answered_like_a_wrong_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(argv, capsys)
    flag_code, _, flag_err = run_cli(["run", "m:app", "--nope"], capsys)
    assert code == flag_code == exitcodes.USAGE and out == ""
    for answer in (err, flag_err):  # one style: argparse's prefix, then where to look
        assert answer.startswith("asynccluster run: error: ")
        assert answer.endswith("\n(all options: asynccluster run --help)\n")
    assert err.startswith(f"asynccluster run: error: {message}")


def test_a_wrong_value_of_a_management_command_is_bad_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCCLUSTER_WORKERS", "two")  # read (and refused) by every command's config
    code, _, err = run_cli(["status"], capsys)
    assert code == exitcodes.USAGE
    assert err.startswith("asynccluster status: error: ") and "workers" in err


def test_main_returns_2_for_a_wrong_value(capsys: pytest.CaptureFixture[str]) -> None:
    # Callers of main() (tests, embedders) get the status back, as before: no SystemExit.
    assert main(["run", "m:app", "--workers", "two"]) == exitcodes.USAGE
    assert capsys.readouterr().err.startswith("asynccluster run: error: workers: ")
