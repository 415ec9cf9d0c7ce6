"""WebSocket settings in the form the sessions use, and the keepalive ping clock (issue 13).

:class:`WsOptions` is built once per worker from the ``--ws-*`` settings (held by
:class:`~asynccluster.worker.state.ServerState`). :class:`KeepAlive` is one connection's ping
schedule, driven by the server's once-a-tick sweep (no timer per connection): a ping goes out
``ping_interval`` seconds after the last pong (or the accept); a peer that has not answered
it within ``ping_timeout`` is gone (RFC 6455 §5.5.2: a pong echoes the ping's payload).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from asynccluster.config import Config


@dataclass(frozen=True)
class WsOptions:
    max_size: int = 16 * 1024 * 1024  # bytes of one message (inflated); larger: 1009
    max_queue: int = 32  # received messages buffered for the app before reading pauses
    ping_interval: float = 20.0  # seconds; 0: no pings
    ping_timeout: float = 20.0  # seconds; 0: a peer is never closed for not answering
    per_message_deflate: bool = True
    drain_grace: float = 1.0  # seconds a drain leaves open sockets before closing them (1012)

    @classmethod
    def from_config(cls, config: Config) -> WsOptions:
        return cls(
            max_size=config.ws_max_size,
            max_queue=config.ws_max_queue,
            ping_interval=config.ws_ping_interval,
            ping_timeout=config.ws_ping_timeout,
            per_message_deflate=config.ws_per_message_deflate,
            drain_grace=config.ws_drain_grace,
        )

    def shortest_timer(self) -> float:
        """The shortest of the keepalive timers in use (the server's tick follows it); inf if none."""
        timers = [t for t in (self.ping_interval, self.ping_timeout) if t > 0] if self.ping_interval > 0 else []
        return min(timers, default=float("inf"))


class KeepAlive:
    """One connection's ping schedule; all times are the loop's clock, in seconds."""

    __slots__ = ("interval", "next_ping", "pong_deadline", "timeout", "waiting")

    def __init__(self, interval: float, timeout: float, now: float) -> None:
        self.interval = interval
        self.timeout = timeout
        self.next_ping = now + interval if interval > 0 else 0.0
        self.waiting: bytes | None = None  # the payload of the ping not answered yet
        self.pong_deadline = 0.0

    def ping_due(self, now: float) -> bytes | None:
        """The payload of a ping to send now, or None."""
        if not self.next_ping or self.waiting is not None or now < self.next_ping:
            return None
        self.waiting = payload = os.urandom(4)
        self.pong_deadline = now + self.timeout if self.timeout > 0 else 0.0
        return payload

    def pong(self, payload: bytes, now: float) -> None:
        """A pong arrived; the one answering our ping restarts the interval (others are ignored)."""
        if self.waiting is not None and payload == self.waiting:
            self.waiting = None
            self.pong_deadline = 0.0
            self.next_ping = now + self.interval

    def timed_out(self, now: float) -> bool:
        return self.waiting is not None and bool(self.pong_deadline) and now >= self.pong_deadline
