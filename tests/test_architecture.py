"""Import boundaries (DESIGN.md §2): the layers stay separable.

- ``asynccluster/http/`` is sans-IO: nothing from asyncio, socket, selectors or the rest of
  the package (``asynccluster.config`` is allowed: it has no I/O).
- ``asynccluster/master/`` never imports ``asynccluster.http`` or ``asynccluster.worker.protocol``:
  the master never touches client traffic.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "asynccluster"


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package_parts = ["asynccluster", *path.relative_to(PACKAGE).parent.parts]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def sources(subpackage: str) -> list[Path]:
    return sorted((PACKAGE / subpackage).glob("**/*.py"))


def test_resolves_relative_imports() -> None:
    names = imported_modules(PACKAGE / "http" / "parser.py")
    assert "asynccluster.http.errors" in names and "httptools" in names


@pytest.mark.parametrize("path", sources("http"), ids=lambda p: p.name)
def test_http_is_sans_io(path: Path) -> None:
    forbidden = {"asyncio", "socket", "selectors", "ssl", "uvloop", "threading", "multiprocessing"}
    for name in imported_modules(path):
        top = name.split(".")[0]
        assert top not in forbidden, f"{path.name} imports {name}"
        if name.startswith("asynccluster") and name != "asynccluster":
            assert name.startswith(("asynccluster.http", "asynccluster.config")), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", sources("master"), ids=lambda p: p.name)
def test_master_does_not_import_the_http_stack(path: Path) -> None:
    for name in imported_modules(path):
        assert not name.startswith("asynccluster.http"), f"{path.name} imports {name}"
        assert not name.startswith("asynccluster.worker.protocol"), f"{path.name} imports {name}"


def test_master_supervisor_import_leaves_http_unloaded() -> None:
    if not (PACKAGE / "master" / "supervisor.py").exists():
        pytest.skip("asynccluster/master/supervisor.py not written yet")
    code = (
        "import sys, asynccluster.master.supervisor\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('asynccluster.http', 'asynccluster.worker.protocol')))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"importing the supervisor loads {result.stdout.strip()}"
