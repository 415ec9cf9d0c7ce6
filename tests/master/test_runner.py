"""asynccluster.run(): an app object is turned back into "module:attr" for spawned workers."""

from __future__ import annotations

import pytest

from asynccluster.master.runner import app_spec, run
from tests.apps import basic


def test_an_app_object_is_found_by_import_path() -> None:
    assert app_spec(basic.app) == "tests.apps.basic:app"


def test_an_unimportable_app_object_is_refused_with_a_hint() -> None:
    async def local_app(scope: object, receive: object, send: object) -> None:
        pass

    with pytest.raises(ValueError, match="module:attr"):
        app_spec(local_app)


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="did you mean 'workers'"):
        run("tests.apps.basic:app", worker=2)
