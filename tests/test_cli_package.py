"""The command line as a package (issue 10): one behaviour through both doors, and the CLI
stays a client of the control socket, never loading the server module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from asynccluster import exitcodes

ROOT = Path(__file__).resolve().parent.parent
# The console script pip installed beside this interpreter (pyproject's [project.scripts]).
SCRIPT = Path(sys.executable).parent / "asynccluster"


def run(command: list[str], tmp_path: Path) -> tuple[int, str, str]:
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--help"], exitcodes.OK),
        (["--version"], exitcodes.OK),
        ([], exitcodes.USAGE),  # no command: the help, and a usage error
        (["run", "--help"], exitcodes.OK),
        (["status", "--help"], exitcodes.OK),
        (["run", "--bind", "0:80"], exitcodes.USAGE),  # a gunicorn flag: the advice, exit 2
        (["scale"], exitcodes.USAGE),  # a missing argument
        (["stauts"], exitcodes.USAGE),  # a misspelt command: did you mean 'status'?
        (["run", "--workers", "two", "m:app"], exitcodes.USAGE),  # a wrong value: as a wrong flag
        (["run", "--reload-dir", ".", "--print-config"], exitcodes.OK),  # warns, as uvicorn
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else str(value),
)
@pytest.mark.integration  # real processes (tests/conftest.py: the tiers)
def test_the_console_script_and_python_m_behave_alike(argv: list[str], code: int, tmp_path: Path) -> None:
    assert SCRIPT.is_file(), f"the console script is not installed at {SCRIPT} (pip install -e .)"
    module = run([sys.executable, "-m", "asynccluster", *argv], tmp_path)
    script = run([str(SCRIPT), *argv], tmp_path)
    assert module[0] == code, module
    assert script == module
    assert (module[1] + module[2]).strip(), "nothing printed"


@pytest.mark.integration  # real processes (tests/conftest.py: the tiers)
def test_the_cli_never_loads_the_control_server(tmp_path: Path) -> None:
    # Build the whole parser and run a command that reaches for the control directory (ls on
    # an empty one): every lazy import on that path has run by then.
    code = (
        "import sys\n"
        "from asynccluster.cli import main\n"
        f"status = main(['ls', '--control-dir', {str(tmp_path / 'ctl')!r}])\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('asynccluster.master.control'))\n"
        "print(status, ','.join(loaded) or '-', 'asynccluster.contracts.control' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 - True"
