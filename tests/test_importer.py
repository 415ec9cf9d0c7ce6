"""App loading errors say what to fix, in one message (issue 3)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from asynccluster.importer import AppImportError, load_app


@pytest.fixture
def app_dir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "good_app_mod.py").write_text(
        "async def app(scope, receive, send):\n    pass\n\ndef make():\n    return app\n"
    )
    (tmp_path / "raising_app_mod.py").write_text("x = 1\nraise RuntimeError('boom at import')\n")
    (tmp_path / "dep_app_mod.py").write_text("import not_installed_pkg_xyz\n")
    (tmp_path / "syntax_app_mod.py").write_text("x = 1\ndef broken(:\n    pass\n")
    yield tmp_path
    for name in ("good_app_mod", "raising_app_mod", "dep_app_mod", "syntax_app_mod"):
        sys.modules.pop(name, None)


def test_loads_attribute_and_factory(app_dir: Path) -> None:
    app = load_app("good_app_mod:app", app_dir=str(app_dir))
    assert callable(app)
    assert load_app("good_app_mod:make", factory=True, app_dir=str(app_dir)) is app


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "module:attribute"),
        ("missing_mod_xyz:app", "no module named 'missing_mod_xyz'"),
        ("good_app_mod:nope", "has no attribute 'nope' (it has: app, make)"),
        ("raising_app_mod:app", "RuntimeError: boom at import"),
        ("dep_app_mod:app", "imports 'not_installed_pkg_xyz', which is not installed"),
        ("syntax_app_mod:app", "syntax_app_mod.py:2: def broken(:"),
        ("raising_app_mod:app", "raising_app_mod.py:2 in <module>"),
    ],
)
def test_errors_are_one_clear_message(app_dir: Path, spec: str, message: str) -> None:
    with pytest.raises(AppImportError) as info:
        load_app(spec, app_dir=str(app_dir))
    assert message in str(info.value)
    assert "Traceback" not in str(info.value)
