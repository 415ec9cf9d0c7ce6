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
    backoff_base: float = 0.5  # second consecutive never-ready death waits this long, then doubles
    backoff_cap: float = 30.0
    # The respawn budget (issue 9): a slot whose workers became ready and then crashed is
    # respawned at once up to this many times per window; past it the slot backs off.
    respawn_budget: int = 10
    budget_window: float = 60.0
    # The floor: with no other worker ready or starting, a slot waits at most this long.
    floor_delay: float = 0.5
    # This many crashes after serving within budget_window make one summary line (a
    # request that crashes workers, "poison request", looks like this in the log).
    crash_summary: int = 5
    # While no worker has ever been ready: early deaths per slot before the cluster gives up.
    startup_attempts: int = 3
    # A stopping worker has two phases with separate budgets (issue 4): the drain gets
    # --graceful-timeout, then lifespan shutdown gets shutdown_budget() (at most
    # shutdown_cap), then the exit itself gets kill_grace; only past all three is it
    # SIGKILLed (stopping.kill_delay). The worker bounds its phases the same way
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
    """Delay after ``failures`` consecutive deaths that do not count as "crashed after serving".

    The first respawns at once; then base, 2*base, 4*base ... up to the cap, like pm2's
    exponential backoff restart.
    """
    if failures <= 1:
        return 0.0
    return float(min(timing.backoff_cap, timing.backoff_base * 2 ** (failures - 2)))


@dataclass(frozen=True)
class RespawnDecision:
    delay: float  # seconds; 0: respawn now
    why: str  # for the "respawning worker N in S s (why)" line; "" when delay is 0


def respawn_decision(
    *, served: bool, failures: int, crashes: int, others_live: bool, timing: Timing
) -> RespawnDecision:
    """When to respawn a slot whose worker just died (issue 9: "the cluster never empties itself").

    - ``served`` (the worker became ready): a crash, not a crash loop: at once, while the
      slot's ``crashes`` (unplanned exits within ``timing.budget_window``, this one included)
      stay within ``timing.respawn_budget``; past the budget, exponential backoff by the excess.
    - never ready: ``failures`` consecutive such deaths, exponential backoff (a crash loop).
    - the floor: with no other worker ready or starting (``others_live`` False), the delay is
      at most ``timing.floor_delay``: the cluster never sits at 0 workers while a respawn could run.
    """
    if served and crashes <= timing.respawn_budget:
        return RespawnDecision(0.0, "")
    if served:
        excess = crashes - timing.respawn_budget
        delay = backoff_delay(excess + 1, timing)
        why = f"{crashes} crashes in {timing.budget_window:.0f} s, over the budget of {timing.respawn_budget}"
    else:
        delay = backoff_delay(failures, timing)
        why = f"{failures} exits before ready in a row"
    if not others_live and delay > timing.floor_delay:
        delay = timing.floor_delay
        why += "; no other worker is up"
    return RespawnDecision(delay, why if delay > 0 else "")


def recent(times: list[float], now: float, window: float) -> list[float]:
    """The times within ``window`` seconds before ``now`` (oldest dropped)."""
    return [t for t in times if now - t < window]


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


# --max-workers 0: this many workers per usable CPU, and never fewer than MIN_WORKER_LIMIT
# (issue 9: "scale 100000" bound ~20k sockets and stopped serving).
WORKERS_PER_CPU = 4
MIN_WORKER_LIMIT = 16


def worker_limit(config: Config, cpus: int) -> int:
    """The most workers this cluster may run: --max-workers, else 4 x ``cpus``, at least 16."""
    if config.max_workers > 0:
        return int(config.max_workers)
    return max(MIN_WORKER_LIMIT, WORKERS_PER_CPU * cpus)
