"""``asynccluster top``: a live view of a cluster, like ``pm2 monit``, refreshed every second.

Plain ANSI and termios (no curses): the alternate screen and a hidden cursor while it runs,
cbreak mode so a single ``q`` quits without Enter. Ctrl-C still raises SIGINT (cbreak keeps
ISIG) and quits too. Whatever ends it — q, Ctrl-C, the cluster stopping, an exception —
the ``finally`` restores the terminal attributes, the main screen and the cursor.

:func:`render_frame` is a pure function of the status JSON, tested without a terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from asynccluster.observe import format as fmt

SPARKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 20
ENTER_SCREEN = "\x1b[?1049h\x1b[?25l"  # alternate screen, hide cursor
LEAVE_SCREEN = "\x1b[?25h\x1b[?1049l"  # show cursor, main screen
HOME = "\x1b[H"
CLEAR_LINE = "\x1b[K"
CLEAR_BELOW = "\x1b[J"
BOLD, DIM, RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"
QUIT_KEYS = (b"q", b"Q", b"\x03")

Fetch = Callable[[], dict[str, Any]]


class TopStopped(Exception):
    """The cluster went away while we watched it; the message says so."""


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH) -> str:
    """The last ``width`` values as block characters, scaled to their maximum."""
    recent = list(values)[-width:]
    if not recent:
        return " " * width
    peak = max(max(recent), 1e-9)
    bars = "".join(SPARKS[min(len(SPARKS) - 1, int(value / peak * (len(SPARKS) - 1) + 0.5))] for value in recent)
    return bars.rjust(width)


TOP_HEADERS = ("SLOT", "PID", "STATE", "REQ/S", "HISTORY", "P50", "P99", "LAG", "CPU", "RSS", "RESTARTS")
TOP_RIGHT = frozenset({0, 1, 3, 5, 6, 7, 8, 9, 10})


def worker_row(worker: dict[str, Any]) -> list[str]:
    return [
        fmt.count(worker.get("slot")),
        fmt.count(worker.get("pid")),
        str(worker.get("state") or fmt.MISSING),
        fmt.rate(worker.get("req_per_s")),
        sparkline(worker.get("req_history") or []),
        fmt.millis(worker.get("latency_p50")),
        fmt.millis(worker.get("latency_p99")),
        fmt.millis(worker.get("loop_lag")),
        fmt.percent(worker.get("cpu_percent")),
        fmt.size(worker.get("rss")),
        fmt.count(worker.get("restarts", 0)),
    ]


def render_frame(view: dict[str, Any], width: int = 120, height: int = 40) -> list[str]:
    """The lines of one refresh, cut to the terminal's size."""
    totals = view.get("totals") or {}
    header = (
        f"asynccluster top  {view.get('name')}  master {view.get('pid')}  {view.get('state')}  "
        f"up {fmt.duration(view.get('uptime'))}  workers {totals.get('workers_ready', 0)}/"
        f"{totals.get('workers_total', 0)}  {fmt.rate(totals.get('req_per_s'))} req/s  "
        f"{totals.get('in_flight', 0)} in flight"
    )
    workers = sorted(view.get("workers", []), key=lambda w: (w.get("slot", 0), w.get("incarnation", 0)))
    lines = [header, f"address {fmt.address(view.get('address'))}  listener {view.get('listener') or '-'}", ""]
    lines += fmt.table(TOP_HEADERS, [worker_row(w) for w in workers], right=TOP_RIGHT)
    lines = lines[: max(1, height - 2)]
    lines += ["", "q or Ctrl-C: quit"]
    return [line[:width] for line in lines]


# ---------------------------------------------------------------- the terminal


@contextlib.contextmanager
def cbreak(fd: int | None) -> Iterator[bool]:
    """Single keys without echo while inside; restores the attributes however we leave."""
    if fd is None or not os.isatty(fd):
        yield False
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def wait_for_key(fd: int | None, timeout: float) -> bytes:
    """Keys typed within ``timeout`` (b"" if none); EOF on a non-terminal reads as no key."""
    if fd is None:
        time.sleep(timeout)
        return b""
    readable, _, _ = select.select([fd], [], [], max(0.0, timeout))
    if not readable:
        return b""
    data = os.read(fd, 64)
    if not data:  # stdin closed: stop watching it, keep refreshing
        raise EOFError
    return data


def draw(out: TextIO, lines: list[str], styled: bool) -> None:
    if not styled:
        out.write("\n".join(lines) + "\n\n")
    else:
        first, *rest = lines
        body = f"{BOLD}{first}{RESET}" + "".join(f"{CLEAR_LINE}\n{line}" for line in rest)
        out.write(HOME + body + CLEAR_LINE + CLEAR_BELOW)
    out.flush()


def terminal_size(out: TextIO) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(out.fileno())
    except (OSError, ValueError):
        return 120, 40
    # A pty nobody sized reports 0x0: draw for a common terminal instead of nothing.
    return size.columns or 120, size.lines or 40


def run_top(
    fetch: Fetch,
    *,
    interval: float = 1.0,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    as_json: bool = False,
    iterations: int | None = None,
) -> int:
    """Refresh until q / Ctrl-C (exit 0) or the cluster stops (TopStopped propagates)."""
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    styled = out.isatty() and not as_json
    key_fd = _fileno(stdin)
    with cbreak(key_fd) as raw_keys:
        if styled:
            out.write(ENTER_SCREEN)
        try:
            shown = 0
            while iterations is None or shown < iterations:
                view = fetch()
                if as_json:
                    out.write(json.dumps(view, default=str) + "\n")
                    out.flush()
                else:
                    width, height = terminal_size(out)
                    draw(out, render_frame(view, width, height), styled)
                shown += 1
                if iterations is not None and shown >= iterations:
                    break
                key_fd = _wait(key_fd, time.monotonic() + interval, raw_keys)
                if key_fd == -1:
                    return 0
            return 0
        except KeyboardInterrupt:
            return 0
        finally:
            if styled:
                out.write(LEAVE_SCREEN)
                out.flush()


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):
        return None  # not a real file (closed, or a StringIO): refresh without reading keys


def _wait(key_fd: int | None, deadline: float, raw_keys: bool) -> int | None:
    """Wait until the deadline; -1 if a quit key came. Returns the fd still worth reading."""
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            keys = wait_for_key(key_fd, remaining)
        except EOFError:
            key_fd = None
            continue
        if any(key in keys for key in QUIT_KEYS) or (not raw_keys and keys.strip().lower() == b"q"):
            return -1
    return key_fd
