"""Rolling reloads under load: how many requests fail, server by server (issue 4).

Every server runs this module's ``app`` (hello world plus an ``x-pid`` header, so we can see
which worker answered) with N workers on 127.0.0.1. The load generator of the test suite
(tests/loadgen.py: K keep-alive connections + M new-connection-per-request loops, strict
HTTP parsing, a real client's single retry of an idempotent request on a reused connection
per RFC 9112 §9.3.1, counted apart) runs throughout. Meanwhile the script sends the server's
reload signal R times. After each signal it waits until every response comes from a worker
that did not exist before the signal and N such workers answered (a reload is "complete"),
keeps the load on for a settle time, then signals again.

    python benchmarks/reload_under_load.py                       # every server, 3 reloads, 2 workers
    python benchmarks/reload_under_load.py --servers uvicorn --reloads 5 --workers 4

Reload signals: asynccluster HUP (readiness-gated, one slot at a time), uvicorn HUP
(``--workers``: restarts one worker at a time, waiting for the new one's health check),
gunicorn HUP (starts new workers, then stops the old ones gracefully), granian HUP
(respawns workers one by one with a fixed ``--respawn-interval`` sleep, no readiness check).

The table goes to stdout and to benchmarks/results/reload.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.metadata
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "reload.md"
HOST = "127.0.0.1"
APP = "benchmarks.reload_under_load:app"
READY_TIMEOUT = 30.0  # seconds a server gets to answer its first request
RELOAD_TIMEOUT = 60.0  # seconds a reload gets to replace every worker
STOP_TIMEOUT = 15.0  # seconds a server gets to exit on SIGTERM before SIGKILL

# ---------------------------------------------------------------- the app every server runs

_BODY = b"Hello, world!"
_HEADERS = [
    (b"content-type", b"text/plain"),
    (b"content-length", str(len(_BODY)).encode()),
    (b"x-pid", str(os.getpid()).encode()),  # evaluated in each worker process at import
]


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    """Hello world, telling which process answered; acknowledges lifespan."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": _BODY})
    elif scope["type"] == "lifespan":
        # Imported here: the servers run from the repo root, the script itself from benchmarks/.
        from examples.hello import lifespan

        await lifespan(receive, send)


# ---------------------------------------------------------------- the servers


@dataclass(frozen=True)
class Server:
    name: str
    package: str  # for the version column
    reload_signal: signal.Signals
    command: Callable[[int, int], list[str]]  # (port, workers) -> argv
    note: str = ""


SERVERS: dict[str, Server] = {
    server.name: server
    for server in (
        Server(
            "asynccluster",
            "asynccluster",
            signal.SIGHUP,
            lambda port, n: [sys.executable, "-m", "asynccluster", "run", APP, "--workers", str(n),
                             "--port", str(port), "--log-level", "warning", "--no-access-log"],
        ),
        Server(
            "uvicorn",
            "uvicorn",
            signal.SIGHUP,
            lambda port, n: [sys.executable, "-m", "uvicorn", APP, "--workers", str(n), "--port", str(port),
                             "--log-level", "warning", "--no-access-log"],
        ),
        Server(
            "gunicorn+uvicorn",
            "gunicorn",
            signal.SIGHUP,
            lambda port, n: [sys.executable, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", str(n),
                             "-b", f"{HOST}:{port}", "--log-level", "warning", APP],
        ),
        Server(
            "gunicorn asgi",
            "gunicorn",
            signal.SIGHUP,
            lambda port, n: [sys.executable, "-m", "gunicorn", "-k", "asgi", "-w", str(n),
                             "-b", f"{HOST}:{port}", "--log-level", "warning", APP],
        ),
        Server(
            "granian",
            "granian",
            signal.SIGHUP,
            lambda port, n: [sys.executable, "-m", "granian", "--interface", "asgi", "--workers", str(n),
                             "--host", HOST, "--port", str(port), "--log-level", "warning", APP],
        ),
    )
}  # fmt: skip


# ---------------------------------------------------------------- one run


@dataclass
class RunResult:
    server: str
    version: str
    workers: int
    reloads_sent: int = 0
    reloads_complete: int = 0
    reload_seconds: list[float] = field(default_factory=list)
    requests: int = 0
    ok: int = 0
    failed: int = 0
    retried: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    retry_causes: dict[str, int] = field(default_factory=dict)
    pids: int = 0
    elapsed: float = 0.0
    error: str = ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:  # e.g. asynccluster run from a checkout
        module = importlib.import_module(package)
        return str(getattr(module, "__version__", "?"))


@contextlib.contextmanager
def running(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server in its own process group; SIGTERM it (then SIGKILL the group) on exit."""
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers: workers that outlived their master
    proc.wait()


async def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering")
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            if data.startswith(b"HTTP/1.1 200"):
                return
        except (OSError, asyncio.TimeoutError):
            pass
        await asyncio.sleep(0.1)  # polling a server that is starting; bounded by the deadline
    raise RuntimeError(f"server did not answer within {READY_TIMEOUT}s")


async def wait_reloaded(gen: Any, old: set[str], workers: int, window: int = 200) -> bool:
    """True once a window of responses came only from new pids, and `workers` of them answered."""
    deadline = time.monotonic() + RELOAD_TIMEOUT
    fresh: set[str] = set()
    while time.monotonic() < deadline:
        mark = gen.mark()
        if not await gen.wait_for_responses(window, timeout=max(0.1, deadline - time.monotonic())):
            return False
        seen = gen.pids_since(mark)
        fresh |= seen - old
        if not seen & old and len(fresh) >= workers:
            return True
    return False


async def measure(server: Server, args: argparse.Namespace, log_dir: Path) -> RunResult:
    from tests.loadgen import LoadGenerator  # the test suite's client, imported only when measuring

    result = RunResult(server.name, version_of(server.package), args.workers)
    port = free_port()
    with running(server.command(port, args.workers), log_dir / f"{server.name.replace(' ', '_')}.log") as proc:
        try:
            await wait_ready(port, proc)
        except RuntimeError as exc:
            result.error = str(exc)
            return result
        gen = LoadGenerator(HOST, port, keepalive=args.keepalive, fresh=args.fresh,
                            max_requests=args.max_requests, duration=args.max_seconds)  # fmt: skip
        load = asyncio.ensure_future(gen.run())
        await asyncio.sleep(args.settle)  # steady load before the first reload
        for _ in range(args.reloads):
            old = set(gen.result.pids)
            started = time.monotonic()
            proc.send_signal(server.reload_signal)
            result.reloads_sent += 1
            if not await wait_reloaded(gen, old, args.workers):
                result.error = f"reload {result.reloads_sent} not complete within {RELOAD_TIMEOUT}s"
                break
            result.reloads_complete += 1
            result.reload_seconds.append(time.monotonic() - started)
            await asyncio.sleep(args.settle)  # steady load between reloads
        gen.stop()
        final = await load
    result.requests, result.ok, result.failed, result.retried = final.requests, final.ok, final.failed, final.retried
    result.failures, result.retry_causes = dict(final.failures), dict(final.retry_causes)
    result.pids, result.elapsed = len(final.pids), final.elapsed
    return result


# ---------------------------------------------------------------- report


def table(results: list[RunResult]) -> str:
    lines = [
        "| server | version | workers | reloads done | requests | failed | failed by kind | retried (RFC 9112 §9.3.1) "
        "| s per reload |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r.failures.items(), key=lambda kv: -kv[1])) or "-"
        causes = ", ".join(f"{k} {v}" for k, v in r.retry_causes.items())
        retried = f"{r.retried} ({causes})" if r.retried else "0"
        per_reload = f"{sum(r.reload_seconds) / len(r.reload_seconds):.1f}" if r.reload_seconds else "-"
        done = f"{r.reloads_complete}/{r.reloads_sent}" + (f" ({r.error})" if r.error else "")
        lines.append(
            f"| {r.server} | {r.version} | {r.workers} | {done} | {r.requests} | **{r.failed}** | {kinds} "
            f"| {retried} | {per_reload} |"
        )
    return "\n".join(lines) + "\n"


def report(results: list[RunResult], args: argparse.Namespace) -> str:
    migrate = Path("/proc/sys/net/ipv4/tcp_migrate_req")
    sysctl = migrate.read_text().strip() if migrate.exists() else "n/a"
    return (
        "# Rolling reloads under load\n\n"
        f"`python benchmarks/reload_under_load.py --workers {args.workers} --reloads {args.reloads} "
        f"--keepalive {args.keepalive} --fresh {args.fresh}`\n\n"
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.platform()}, Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, net.ipv4.tcp_migrate_req={sysctl}. "
        f"Load: {args.keepalive} keep-alive connections + {args.fresh} new-connection-per-request loops on "
        f"127.0.0.1; {args.reloads} reload signals, each after the previous reload completed "
        f"and {args.settle}s of steady load.\n\n" + table(results)
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated: " + ", ".join(SERVERS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reloads", type=int, default=3)
    parser.add_argument("--keepalive", type=int, default=4, help="keep-alive connections")
    parser.add_argument("--fresh", type=int, default=2, help="new-connection-per-request loops")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds of steady load around reloads")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="hard bound on each run's load")
    parser.add_argument("--max-requests", type=int, default=2_000_000, help="hard bound on each run's requests")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    unknown = set(args.servers.split(",")) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    return args


async def main_async(args: argparse.Namespace) -> list[RunResult]:
    log_dir = Path(tempfile.mkdtemp(prefix="reload-under-load-"))
    print(f"server logs: {log_dir}", flush=True)
    results = []
    for name in args.servers.split(","):
        print(f"--- {name}", flush=True)
        result = await measure(SERVERS[name], args, log_dir)
        print(f"    {result}", flush=True)
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    args = parse_args(argv)
    results = asyncio.run(main_async(args))
    text = report(results, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
