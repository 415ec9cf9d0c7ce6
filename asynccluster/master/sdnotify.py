"""systemd's notify protocol (sd_notify(3)) for `Type=notify` units.

The master tells systemd READY=1 once every worker is ready (so `systemctl start` and
dependent units wait for a serving cluster, not a started process), RELOADING=1 / READY=1
around a rolling reload, and STOPPING=1 when a stop begins. Without $NOTIFY_SOCKET every call
is a no-op, so this costs nothing outside systemd.
"""

from __future__ import annotations

import os
import socket
import time

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"


def notify_address(env: dict[str, str] | None = None) -> str | None:
    """The notify socket's address; a leading '@' names an abstract socket (sd_notify(3))."""
    value = (os.environ if env is None else env).get(NOTIFY_SOCKET_ENV, "")
    if not value or value[0] not in "/@":
        return None
    return "\0" + value[1:] if value[0] == "@" else value


def notify(*fields: str) -> bool:
    """Send "KEY=value" fields as one datagram; True if systemd was told."""
    address = notify_address()
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(fields).encode(), address)
    except OSError:
        return False  # systemd gone or not listening: never fatal for the cluster
    return True


def ready(status: str) -> bool:
    return notify("READY=1", f"STATUS={status}")


def reloading() -> bool:
    # MONOTONIC_USEC lets systemd (Type=notify-reload) match this reload to its READY=1.
    return notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")


def stopping() -> bool:
    return notify("STOPPING=1")
