"""The per-user state directory: what ``start`` launched, what ``save`` recorded (issue 11).

``$XDG_STATE_HOME/asynccluster``, else ``~/.local/state/asynccluster`` (``ASYNCCLUSTER_STATE_DIR``
overrides it: tests, several users of one account). Private like the control directory:
mode 0700, files 0600, refused if it belongs to someone else or others can write it.

- ``apps/NAME.json``: one record per cluster started in the background (asynccluster/cli/daemon.py):
  ``{"name", "argv" (the arguments of ``asynccluster run``), "cwd", "env" (what the apps
  file or --env-file added), "log_file"}``;
- ``logs/NAME.log``: such a cluster's log file, unless it was given one;
- ``dump.json``: the records ``save`` wrote, that ``resurrect`` starts again.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from asynccluster.contracts.control import ControlError

STATE_ENV = "ASYNCCLUSTER_STATE_DIR"
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def state_dir(create: bool = False) -> Path:
    configured = os.environ.get(STATE_ENV, "")
    if configured:
        path = Path(configured)
    else:
        base = os.environ.get("XDG_STATE_HOME", "") or str(Path.home() / ".local" / "state")
        path = Path(base) / "asynccluster"
    if create:
        for sub in ("", "apps", "logs"):
            (path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_private(path)
    return path


def _check_private(path: Path) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise ControlError(
            f"state directory {path} must be a directory of ours that others cannot write (chmod 700 {path})"
        )


def record_path(name: str) -> Path:
    if not _NAME.fullmatch(name):
        raise ControlError(f"not a cluster name: {name!r:.80}", usage=True)
    return state_dir() / "apps" / f"{name}.json"


def write_json(path: Path, data: Any) -> None:
    """Replace ``path`` atomically with ``data`` as JSON, mode 0600 (it may hold env values)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(data, file, indent=2, sort_keys=True)
        file.write("\n")
    os.replace(temporary, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ControlError(f"{path} is not valid JSON ({exc}); remove it") from None


def records() -> list[dict[str, Any]]:
    """Every cluster record of ``apps/``, by name."""
    directory = state_dir() / "apps"
    found = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        data = read_json(path)
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            found.append(data)
    return found


__all__ = ["read_json", "record_path", "records", "state_dir", "write_json"]
