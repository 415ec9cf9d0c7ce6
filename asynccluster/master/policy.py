"""The supervisor's rules as pure functions: respawn backoff and recycle thresholds.

Kept apart from the event handling so each rule is tested on its own (tests/master/).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from asynccluster.config import Config
from asynccluster.master.process import WorkerHandle


@dataclass(frozen=True)
class Timing:
    """Supervisor constants that are not user settings (tests shrink them)."""

    # How often a worker sends its heartbeat (the master passes it in the worker's start
    # arguments: one source); a heartbeat is "late by --timeout" when none came for
    # interval + timeout.
    heartbeat_interval: float = 1.0
    backoff_base: float = 0.5  # second consecutive early death waits this long, then doubles
    backoff_cap: float = 30.0
    # A worker that served this long before dying was healthy: its slot's backoff resets
    # (issue 3: "reset after a stable period").
    stable_after: float = 10.0
    # While no worker has ever been ready: early deaths per slot before the cluster gives up.
    startup_attempts: int = 3
    # A stopping worker has two phases with separate budgets (issue 4): the drain gets
    # --graceful-timeout, then lifespan shutdown gets shutdown_budget() (at most
    # shutdown_cap), then the exit itself gets kill_grace; only past all three is it
    # SIGKILLed (Supervisor.kill_deadline). The worker bounds its phases the same way
    # (worker/main.py), so a drain that uses its whole timeout still leaves shutdown its time.
    shutdown_cap: float = 10.0
    kill_grace: float = 1.0
    # After SIGUSR2: how long to wait for the stacks, and the quiet gap that ends the dump.
    stacks_wait: float = 2.0
    stacks_quiet: float = 0.3
    # Event callbacks (Cluster.on with an async function) still running when the cluster has
    # stopped get this long to finish before serve() cancels them and returns.
    callback_grace: float = 5.0
    # Scale down: how often the retiring socket's accept queue is checked while it empties.
    queue_poll: float = 0.05


def shutdown_budget(config: Config, timing: Timing) -> float:
    """Seconds a worker's lifespan shutdown gets after its drain: the graceful timeout, capped."""
    return min(config.graceful_timeout, timing.shutdown_cap)


def backoff_delay(failures: int, timing: Timing) -> float:
    """Delay before respawning a slot after ``failures`` consecutive early deaths.

    The first death respawns at once (a crash of a healthy worker should cost nothing);
    then base, 2*base, 4*base ... up to the cap, like pm2's exponential backoff restart.
    """
    if failures <= 1:
        return 0.0
    return float(min(timing.backoff_cap, timing.backoff_base * 2 ** (failures - 2)))


def died_young(handle: WorkerHandle, now: float, timing: Timing) -> bool:
    """Never ready, or ready for less than the stable period."""
    if handle.ready_at is None:
        return True
    return now - handle.ready_at < timing.stable_after


def draw_recycle_limits(config: Config, rng: random.Random) -> tuple[int, float]:
    """Per-incarnation thresholds: the jitter spreads recycles so workers do not all go at once."""
    max_requests = 0
    if config.max_requests > 0:
        max_requests = config.max_requests + rng.randint(0, max(0, config.max_requests_jitter))
    max_lifetime = 0.0
    if config.max_lifetime > 0:
        max_lifetime = config.max_lifetime + rng.uniform(0, max(0.0, config.max_lifetime_jitter))
    return max_requests, max_lifetime


def recycle_reason(handle: WorkerHandle, config: Config, now: float) -> str | None:
    """Why a ready worker should be recycled now, or None."""
    stats = handle.heartbeat.get("stats") or {}
    requests = int(stats.get("requests", 0))
    if handle.max_requests and requests >= handle.max_requests:
        return f"max-requests: served {requests} requests (limit {handle.max_requests})"
    if handle.max_lifetime and handle.uptime(now) >= handle.max_lifetime:
        return f"max-lifetime: up {handle.uptime(now):.0f} s (limit {handle.max_lifetime:.0f} s)"
    rss = int(handle.heartbeat.get("rss", 0) or 0)
    if config.max_memory and rss > config.max_memory:
        return f"max-memory: RSS {rss / 2**20:.1f} MiB > {config.max_memory / 2**20:.1f} MiB"
    return None
