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


# ---------------------------------------------------------------- app factories (issue 8 item 8)


def test_a_factory_without_the_flag_is_called_with_a_warning() -> None:
    from tests.apps import factory

    warnings: list[str] = []
    calls = len(factory.CALLS)
    app = load_app("tests.apps.factory:create_app", warn=warnings.append)
    assert type(app).__name__ == "Starlette"
    assert len(factory.CALLS) == calls + 1  # called exactly once
    (warning,) = warnings
    assert "'tests.apps.factory:create_app' is an app factory" in warning and "--factory" in warning


def test_a_factory_with_the_flag_gives_no_warning() -> None:
    warnings: list[str] = []
    app = load_app("tests.apps.factory:create_app", factory=True, warn=warnings.append)
    assert type(app).__name__ == "Starlette" and warnings == []


def test_a_class_with_a_no_argument_constructor_is_instantiated() -> None:
    from tests.apps import factory

    warnings: list[str] = []
    assert isinstance(load_app("tests.apps.factory:App", warn=warnings.append), factory.App)
    assert len(warnings) == 1


def test_an_async_factory_is_refused_at_load() -> None:
    with pytest.raises(AppImportError) as info:
        load_app("tests.apps.factory:create_app_async")
    assert "async function without parameters" in str(info.value)


@pytest.mark.parametrize("spec", ["good_app_mod:app", "tests.apps.basic:app", "tests.apps.factory:create_app"])
def test_apps_are_not_mistaken_for_factories(app_dir: Path, spec: str) -> None:
    from asynccluster.importer import looks_like_factory

    app = load_app(spec, app_dir=str(app_dir), warn=lambda _: None)
    assert not looks_like_factory(app)  # the ASGI app itself: a coroutine function or app object


def test_asgi2_apps_are_not_factories(app_dir: Path) -> None:
    from asynccluster.importer import looks_like_factory

    class Asgi2:
        def __init__(self, scope: dict[str, object]) -> None:
            self.scope = scope

    def asgi2_function(scope: dict[str, object]) -> object:
        return scope

    assert not looks_like_factory(Asgi2) and not looks_like_factory(asgi2_function)
