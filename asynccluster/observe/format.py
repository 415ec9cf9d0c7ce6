"""Human-readable text for ``asynccluster ls`` and ``status`` (and the cells of ``top``).

Pure functions from the status JSON (observe/aggregate.py ``Monitor.view``) to text, so the
same numbers are shown by the table, by ``--json`` and by the admin ``/status``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from asynccluster.observe.columns import Layout, fit_table, wrap_fields

MISSING = "-"


def duration(seconds: float | None) -> str:
    """``42s``, ``5m07s``, ``3h12m``, ``2d04h``: short, like ``ps`` and pm2."""
    if seconds is None:
        return MISSING
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 86400}d{total % 86400 // 3600:02d}h"


def size(count: float | None) -> str:
    """Bytes in binary units: ``812K``, ``52.3M``, ``1.2G``."""
    if count is None:
        return MISSING
    value = float(count)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit in ("B", "K") else f"{value:.1f}{unit}"
        value /= 1024
    return MISSING  # pragma: no cover - the loop always returns


def millis(seconds: float | None) -> str:
    if seconds is None:
        return MISSING
    ms = seconds * 1000
    return f"{ms:.2f}ms" if ms < 10 else f"{ms:.0f}ms"


def rate(value: float | None) -> str:
    if value is None:
        return MISSING
    return f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def percent(value: float | None) -> str:
    return MISSING if value is None else f"{value:.0f}%"


def count(value: Any) -> str:
    return MISSING if value is None else str(value)


def address(value: Any) -> str:
    if value is None or value == "":
        return MISSING
    if isinstance(value, (list, tuple)):
        return ", ".join(str(part) for part in value)
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()) -> list[str]:
    """Aligned columns; the indexes in ``right`` are right-aligned (numbers)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(parts).rstrip()

    return [line(headers), *(line(row) for row in rows)]


# ---------------------------------------------------------------- ls


LS_HEADERS = ("NAME", "PID", "STATE", "WORKERS", "ADDRESS", "UPTIME")


def ls_row(view: dict[str, Any]) -> dict[str, Any]:
    """The fields of one ``ls`` line (also its --json form)."""
    totals = view.get("totals") or {}
    return {
        "name": view.get("name"),
        "pid": view.get("pid"),
        "state": view.get("state"),
        "workers_ready": totals.get("workers_ready", 0),
        "workers_total": workers_wanted(view),
        "address": view.get("address"),
        "uptime": view.get("uptime"),
        "admin": view.get("admin"),
        "control_socket": view.get("control_socket"),
    }


def workers_wanted(view: dict[str, Any]) -> int:
    """The denominator of "N/M ready": the desired count, which includes slots waiting for a
    respawn (a backoff), or more while a reload's candidates run next to the old workers."""
    totals = view.get("totals") or {}
    return max(int(view.get("desired_workers") or 0), int(totals.get("workers_total") or 0))


def ls_text(rows: Sequence[dict[str, Any]]) -> str:
    cells = [
        [
            str(row["name"]),
            count(row["pid"]),
            str(row["state"] or MISSING),
            f"{row['workers_ready']}/{row['workers_total']}",
            address(row["address"]),
            duration(row["uptime"]),
        ]
        for row in rows
    ]
    return "\n".join(table(LS_HEADERS, cells, right=frozenset({1, 3, 5})))


# ---------------------------------------------------------------- status


STATUS_HEADERS = (
    "SLOT", "PID", "STATE", "UPTIME", "RESTARTS", "LAST EXIT", "REQUESTS", "REQ/S", "IN-FLIGHT", "CONNS",
    "LOOP LAG", "CPU", "RSS",
)  # fmt: skip
STATUS_RIGHT = frozenset({0, 1, 3, 4, 6, 7, 8, 9, 10, 11, 12})


def last_exit(value: Any) -> str:
    """The supervisor's last exit record as a few words (a string, or a dict with a reason)."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, dict):
        for key in ("reason", "description", "message"):
            if value.get(key):
                return str(value[key])
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


# What gives way when ``status`` is narrower than the table (issue 11 item 7): the last exit
# is cut first, then these columns go, least useful first. --json always has everything.
STATUS_LAYOUT = Layout(
    drop=("CONNS", "IN-FLIGHT", "LOOP LAG", "REQUESTS", "UPTIME", "CPU", "RSS", "REQ/S", "RESTARTS"),
    flexible=(("LAST EXIT", 20),),
    right=frozenset(STATUS_HEADERS[i] for i in STATUS_RIGHT),
)
STATUS_WIDTH = 100  # when stdout is not a terminal
_OWN_NAME = re.compile(r"^worker \d+ \(pid \d+, incarnation \d+\) (exited with )?")


def worker_cells(worker: dict[str, Any]) -> list[str]:
    return [
        count(worker.get("slot")),
        count(worker.get("pid")),
        str(worker.get("state") or MISSING),
        duration(worker.get("uptime")),
        count(worker.get("restarts", 0)),
        _OWN_NAME.sub("", last_exit(worker.get("last_exit"))),  # the row already says which worker
        count(worker.get("requests")),
        rate(worker.get("req_per_s")),
        count(worker.get("in_flight")),
        count(worker.get("connections")),
        millis(worker.get("loop_lag")),
        percent(worker.get("cpu_percent")),
        size(worker.get("rss")),
    ]


def preload_text(preload: dict[str, Any]) -> str:
    """--preload's state (status["preload"]): "on, helper pid 4242", or while no helper can
    fork "on, no helper (3 failed tries, next in 8s): workers are spawned from disk"."""
    if preload.get("helper_pid"):
        return f"on, helper pid {preload['helper_pid']}"
    failures = int(preload.get("failures") or 0)
    streak = f"{failures} failed {'try' if failures == 1 else 'tries'}, next in {duration(preload.get('retry_in'))}"
    return f"on, no helper ({streak if failures else 'starting one'}): workers are spawned from disk"


def waiting_cells(slot: dict[str, Any]) -> list[str]:
    """A slot with no worker that waits for its respawn (status["respawning"][i])."""
    cells = [MISSING] * len(STATUS_HEADERS)
    cells[0] = count(slot.get("slot"))
    cells[2] = f"respawning in {duration(slot.get('respawn_in'))}"
    cells[4] = count(slot.get("restarts", 0))
    cells[5] = _OWN_NAME.sub("", last_exit(slot.get("last_exit")))
    return cells


def status_text(view: dict[str, Any], width: int = STATUS_WIDTH) -> str:
    """The status page, no line wider than ``width`` (issue 11: it fits 100 columns)."""
    totals = view.get("totals") or {}
    queue = view.get("accept_queue") or {}
    lines = [
        f"cluster  {view.get('name')}  (master pid {view.get('pid')}, {view.get('state')}, "
        f"up {duration(view.get('uptime'))})",
        f"app      {view.get('app') or MISSING}",
        *([f"preload  {preload_text(view['preload'])}"] if view.get("preload") else []),
        f"address  {address(view.get('address'))}  listener {view.get('listener') or MISSING}",
    ]
    lines += wrap_fields(
        "workers  ",
        [
            f"{totals.get('workers_ready', 0)}/{workers_wanted(view)} ready",
            f"{totals.get('requests', 0)} requests",
            f"{rate(totals.get('req_per_s'))} req/s",
            f"{totals.get('in_flight', 0)} in flight",
            f"{totals.get('connections', 0)} connections",
        ],
        width,
    )
    if queue:
        depths = [f"slot {slot}: {count(depth)}" for slot, depth in sorted(queue.items(), key=_slot_key)]
        depths[0] = "accept-queue depth " + depths[0]
        lines += wrap_fields("queue    ", depths, width)
    if view.get("admin"):
        lines.append(f"admin    http://{view['admin']}/metrics")
    if view.get("log_file"):
        lines.append(f"log      {view['log_file']}")
    rows = [(w.get("slot", 0), w.get("incarnation", 0), worker_cells(w)) for w in view.get("workers", [])]
    rows += [(s.get("slot", 0), 0, waiting_cells(s)) for s in view.get("respawning") or []]
    lines.append("")
    lines.extend(fit_table(STATUS_HEADERS, [cells for *_, cells in sorted(rows)], STATUS_LAYOUT, width))
    return "\n".join(line[:width] for line in lines)


def _slot_key(item: tuple[Any, Any]) -> tuple[int, str]:
    key = str(item[0])
    return (int(key), key) if key.isdigit() else (1 << 30, key)
