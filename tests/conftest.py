"""Suite-wide hygiene: what one test attaches to this process's logging does not outlive it.

The master's log ring (observe/events.py, master/logbuffer.py) is attached to the
``asynccluster`` logger "for the process's life" by design; in the test process that life is
one test. Left attached, it turned off the access log's fast path (logs.line_writer declines
when another handler is on the way) for every later test in the run.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _detach_log_rings() -> Iterator[None]:
    yield
    from asynccluster.master import logbuffer
    from asynccluster.observe import events

    logbuffer.uninstall()
    events.remove_log_ring()
