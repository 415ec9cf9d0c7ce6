"""The live view: frames rendered from status JSON, and the terminal loop in a pseudo-terminal."""

from __future__ import annotations

import io
import os
import select
import termios
from typing import Any

from asynccluster.observe import top
from asynccluster.observe.aggregate import Monitor
from tests.control.fakes import FakeSupervisor


def test_sparkline_scales_to_its_peak() -> None:
    assert top.sparkline([], 4) == "    "
    line = top.sparkline([0, 5, 10], 5)
    assert line == "  ▁▅█"
    assert len(top.sparkline(list(range(100)), 20)) == 20


def test_frame_has_a_row_per_worker_and_fits_the_terminal() -> None:
    view = Monitor(FakeSupervisor().status).view()
    view["workers"][0]["req_history"] = [1.0, 2.0, 3.0]
    lines = top.render_frame(view, width=60, height=30)
    assert all(len(line) <= 60 for line in lines)
    text = "\n".join(top.render_frame(view, width=200, height=30))
    assert "fake" in text and "master 4242" in text
    assert "SLOT" in text and "P99" in text and "RESTARTS" in text
    assert "1000" in text and "1001" in text  # both worker pids
    assert "▃▆█" in text
    assert text.splitlines()[-1].startswith("q or Ctrl-C")
    assert len(top.render_frame(view, width=200, height=5)) <= 5


def test_json_mode_prints_one_object_per_refresh() -> None:
    out = io.StringIO()
    views = iter([{"name": "a"}, {"name": "b"}])
    code = top.run_top(lambda: next(views), interval=0.01, stdin=io.StringIO(), out=out, as_json=True, iterations=2)
    assert code == 0
    assert out.getvalue().splitlines() == ['{"name": "a"}', '{"name": "b"}']


def read_available(fd: int) -> str:
    data = b""
    while select.select([fd], [], [], 0.5)[0]:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        data += chunk
    return data.decode()


def test_q_quits_and_the_terminal_is_restored() -> None:
    controller, terminal = os.openpty()
    try:
        before = termios.tcgetattr(terminal)
        calls = 0

        def fetch() -> dict[str, Any]:
            nonlocal calls
            calls += 1
            if calls == 2:
                os.write(controller, b"q")  # typed while the second frame is shown
            return Monitor(FakeSupervisor().status).view()

        with open(terminal, closefd=False) as stdin, open(terminal, "w", closefd=False) as out:
            code = top.run_top(fetch, interval=0.05, stdin=stdin, out=out, iterations=50)
        assert code == 0 and calls == 2
        assert termios.tcgetattr(terminal) == before  # cbreak undone
        screen = read_available(controller)
        assert screen.startswith(top.ENTER_SCREEN) and screen.endswith(top.LEAVE_SCREEN)
        assert screen.count("SLOT") == 2 and "1001" in screen
    finally:
        os.close(controller)
        os.close(terminal)
