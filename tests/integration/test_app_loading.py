"""App loading like uvicorn's, with a real `asynccluster run` (issue 8 item 8).

An app factory named without --factory is detected when the workers load the app: it is
called once per worker and served, with one warning that names --factory (not a 500 on
every request, as before).
"""

from __future__ import annotations

from collections.abc import Callable

from asynccluster import exitcodes
from tests.integration.conftest import ClusterProcess, get

Factory = Callable[..., ClusterProcess]
WARNING = r"WARNING.*'tests\.apps\.factory:create_app' is an app factory.*--factory"


def test_factory_without_the_flag_is_served_with_one_warning(cluster_factory: Factory) -> None:
    cluster = cluster_factory("tests.apps.factory:create_app", "--workers", "2", "--no-access-log")
    cluster.wait_ready()
    for _ in range(4):
        status, _, body = get(cluster.port, "/")
        assert (status, body) == (200, b"made by a factory")
    cluster.wait_for(WARNING)  # the worker's line reaches the master's output asynchronously
    assert cluster.stop() == 0
    assert cluster.count(WARNING) == 1  # one worker says it, not every worker (all lines are in by now)


def test_factory_with_the_flag_gives_no_warning(cluster_factory: Factory) -> None:
    cluster = cluster_factory("tests.apps.factory:create_app", "--factory", "--no-access-log")
    cluster.wait_ready()
    assert get(cluster.port, "/")[2] == b"made by a factory"
    assert cluster.stop() == 0
    assert cluster.count(r"is an app factory") == 0


def test_async_factory_is_refused_at_startup(cluster_factory: Factory) -> None:
    cluster = cluster_factory("tests.apps.factory:create_app_async")
    assert cluster.wait_exit() == exitcodes.APP_IMPORT
    assert cluster.count(r"async function without parameters") >= 1
