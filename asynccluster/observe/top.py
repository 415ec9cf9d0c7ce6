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
from asynccluster.observe.columns import Layout, fit_table, wrap_fields

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


# Narrow terminals (issue 11 item 7): the history gets what is left, at most MAX_SPARK and
# at least MIN_SPARK characters (else it goes), then these columns go, least useful first.
TOP_LAYOUT = Layout(
    drop=("HISTORY", "P50", "LAG", "RESTARTS", "CPU", "RSS", "P99"),
    right=frozenset(TOP_HEADERS[i] for i in TOP_RIGHT),
)
MIN_SPARK, MAX_SPARK = 8, 40
FOOTER = "q or Ctrl-C: quit"


def worker_row(worker: dict[str, Any], spark_width: int = SPARK_WIDTH) -> list[str]:
    return [
        fmt.count(worker.get("slot")),
        fmt.count(worker.get("pid")),
        str(worker.get("state") or fmt.MISSING),
        fmt.rate(worker.get("req_per_s")),
        sparkline(worker.get("req_history") or [], spark_width) if spark_width > 0 else "",
        fmt.millis(worker.get("latency_p50")),
        fmt.millis(worker.get("latency_p99")),
        fmt.millis(worker.get("loop_lag")),
        fmt.percent(worker.get("cpu_percent")),
        fmt.size(worker.get("rss")),
        fmt.count(worker.get("restarts", 0)),
    ]


def render_frame(view: dict[str, Any], width: int = 120, height: int = 40) -> list[str]:
    """The lines of one refresh, fitted to the terminal: at most ``height`` lines of at most
    ``width`` characters; columns give way on narrow terminals, workers that do not fit are
    counted on a last line (issue 11 item 7)."""
    totals = view.get("totals") or {}
    header = wrap_fields(
        "",
        [
            f"asynccluster top  {view.get('name')}", f"master {view.get('pid')}", str(view.get("state")),
            f"up {fmt.duration(view.get('uptime'))}",
            f"workers {totals.get('workers_ready', 0)}/{totals.get('workers_total', 0)}",
            f"{fmt.rate(totals.get('req_per_s'))} req/s", f"{totals.get('in_flight', 0)} in flight",
        ],
        width,
        sep="  ",
    )  # fmt: skip
    workers = sorted(view.get("workers", []), key=lambda w: (w.get("slot", 0), w.get("incarnation", 0)))
    lines = [*header, f"address {fmt.address(view.get('address'))}  listener {view.get('listener') or '-'}", ""]
    room = max(1, height - len(lines) - 3)  # the table's header row, a blank line, the footer
    shown = workers if len(workers) <= room else workers[: max(0, room - 1)]
    spark = _spark_width(shown, width)
    rows = [worker_row(w, spark) for w in shown]
    headers: list[str] = list(TOP_HEADERS)
    if not spark:  # no room for a useful history
        headers, rows = _without(headers, HISTORY), [_without(row, HISTORY) for row in rows]
    lines += fit_table(headers, rows, TOP_LAYOUT, width)
    if len(shown) < len(workers):
        lines.append(f"... {len(workers) - len(shown)} more workers (a taller terminal, or asynccluster status)")
    lines = lines[: max(1, height - 2)]
    lines += ["", FOOTER]
    return [line[:width] for line in lines][-height:] if height > 2 else [FOOTER[:width]]


def _spark_width(workers: list[dict[str, Any]], width: int) -> int:
    """What the HISTORY column can have once the other columns are laid out."""
    rows = [_without(worker_row(w, 0), HISTORY) for w in workers]
    others = fit_table(_without(list(TOP_HEADERS), HISTORY), rows, Layout(), 10_000)[0] if rows else ""
    spare = width - len(others) - 2
    return min(MAX_SPARK, spare) if spare >= MIN_SPARK else 0


HISTORY = TOP_HEADERS.index("HISTORY")


def _without(cells: list[str], index: int) -> list[str]:
    return cells[:index] + cells[index + 1 :]


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
    """Refresh until q / Ctrl-C (exit 0) or the cluster goes away (what ``fetch`` raises propagates)."""
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
