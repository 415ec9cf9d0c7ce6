"""Suite-wide hygiene: what one test attaches to this process's logging does not outlive it.

The master's log ring (observe/events.py, master/logbuffer.py) is attached to the
``asynccluster`` logger "for the process's life" by design; in the test process that life is
one test. Left attached, it turned off the access log's fast path (logs.line_writer declines
when another handler is on the way) for every later test in the run.

Two tiers (issue 10): every test that runs real clusters or other subprocesses carries the
``integration`` marker, given here by directory (INTEGRATION_DIRS) or by the ``cluster_factory``
fixture, or in the module itself (``pytestmark``) elsewhere; ``pytest -m "not integration"`` is
the fast tier. The order is shuffled by pytest-randomly; the seed is printed at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# Every test under these starts real clusters or subprocesses (or sits beside ones that do).
INTEGRATION_DIRS = ("integration", "control", "chaos", "compat", "dashboard", "deploy", "diagnose")


@pytest.fixture(autouse=True)
def _detach_log_rings() -> Iterator[None]:
    yield
    from asynccluster import logs
    from asynccluster.master import logbuffer
    from asynccluster.observe import events

    logbuffer.uninstall()
    events.remove_log_ring()
    # relay_line binds its sinks to sys.stdout/sys.stderr at first use: in a test, to that test's
    # capture, closed after it. Kept, a later test's relayed lines went there and were lost
    # ("could not write N log line(s)" at a later flush or at exit). The next use binds anew.
    logs._relays.clear()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the integration tier: by directory, and every test that asks for ``cluster_factory``."""
    marker = pytest.mark.integration
    for item in items:
        if is_integration(item):
            item.add_marker(marker)


def is_integration(item: pytest.Item) -> bool:
    path = Path(str(item.path)).resolve()
    try:
        top = path.relative_to(TESTS).parts[0]
    except (ValueError, IndexError):
        return False
    return top in INTEGRATION_DIRS or "cluster_factory" in getattr(item, "fixturenames", ())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """The shuffle's seed (also in the header, which ``-q`` hides), so CI's order can be replayed."""
    seed = getattr(config.option, "randomly_seed", None)
    shuffled = config.pluginmanager.has_plugin("randomly") and getattr(config.option, "randomly_reorganize", False)
    if shuffled and isinstance(seed, int):
        terminalreporter.write_line(f"order shuffled by pytest-randomly; replay it: --randomly-seed={seed}")
