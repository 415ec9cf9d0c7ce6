"""What running several workers costs: CPU per request with 1, 2 and 4 workers on one core,
how evenly SO_REUSEPORT spreads 64 keep-alive connections, and the master's own CPU (issue 16, item 4).

Every cluster serves examples.hello:app and is pinned, master and workers alike, to one core
(``taskset -c 1``); wrk runs on the other (``taskset -c 0``). Clusters of 1, 2 and 4 workers are
started once and measured in interleaved rounds, like benchmarks/http_bench.py, so drift of a
shared machine hits them alike.

- **Overhead**: the whole tree's CPU per request with N workers, against 1 worker. With N
  workers on one core it includes what N processes cost that one does not: the master's
  heartbeat handling, N listening sockets, more context switches.
- **Balance**: during each run, the ESTABLISHED connections each worker holds on the server port
  (``/proc/PID/fd`` matched against ``/proc/net/tcp``) and each worker's share of the tree's CPU.
  SO_REUSEPORT hashes the 4-tuple, so 64 connections over 4 workers is a multinomial draw, not 16 each.
- **Master**: the master process's CPU per second at rest (``--rest`` seconds with no traffic)
  and under load (during the wrk runs).

    python benchmarks/multiworker_bench.py                # 3 rounds x 5 s
    python benchmarks/multiworker_bench.py --rounds 1 --duration 2 --rest 5
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_bench as hb  # sibling script, not a package

KEEPALIVE = hb.SCENARIOS["keepalive"]
WORKER_COUNTS = (1, 2, 4)
SETTLE_SECONDS = 30.0  # deadline for every worker of a cluster to be up


SERVERS = ("asynccluster", "uvicorn")


def cluster_spec(server: str, workers: int) -> hb.ServerSpec:
    """asynccluster, or uvicorn --workers N (a shared listening socket, no SO_REUSEPORT) for reference."""

    def argv(port: str) -> list[str]:
        if server == "uvicorn":
            head = [sys.executable, "-m", "uvicorn", hb.APP, "--loop", "uvloop", "--http", "httptools"]
        else:
            head = [sys.executable, "-m", "asynccluster", "run", hb.APP]
        return [*head, "--workers", str(workers), "--no-access-log", "--host", hb.HOST, "--port", port]

    return hb.ServerSpec(f"{server}-{workers}w", argv, f"{server}, {workers} worker(s) on one core")


def children_of(master: int) -> list[int]:
    return sorted(hb._children_by_parent().get(master, []))


def workers_of(server: hb.RunningServer) -> list[int]:
    """The master's children that listen on the server port (multiprocessing's helpers do not)."""
    table = _tcp_sockets(server.port)
    children = children_of(server.process.pid)
    listening = [pid for pid in children if any(table.get(inode) == "0A" for inode in _socket_inodes(pid))]
    # uvicorn with one worker serves in its main process: no children.
    return listening or [server.process.pid]


def wait_for_workers(server: hb.RunningServer, count: int) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        if len(workers_of(server)) >= count:
            return
        time.sleep(0.1)  # polling interval, bounded by the deadline
    raise hb.ServerFailed(f"{server.spec.name}: {count} workers not up within {SETTLE_SECONDS:.0f} s")


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass
    return inodes


def _tcp_sockets(port: int) -> dict[int, str]:
    """inode -> TCP state code ('01' ESTABLISHED, '0A' LISTEN) for local port `port`."""
    table: dict[int, str] = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(path).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                table[int(fields[9])] = fields[3]
    return table


def precise_cpu(pid: int) -> float:
    """CPU seconds of every thread of `pid`, from /proc/PID/task/*/schedstat (nanoseconds).

    /proc/PID/stat counts in clock ticks (10 ms): too coarse for a master that uses a few
    milliseconds per second.
    """
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def connections_per_worker(server: hb.RunningServer) -> dict[int, int]:
    table = _tcp_sockets(server.port)
    return {pid: sum(1 for inode in _socket_inodes(pid) if table.get(inode) == "01") for pid in workers_of(server)}


@dataclass
class Run:
    server: str
    cluster: str
    workers: int
    round: int
    requests: int
    errors: int
    cpu_us_per_request: float
    master_cpu_per_second: float
    master_share: float  # the master's part of the tree's CPU during the run
    has_master: bool  # False: the root process serves itself (uvicorn with one worker)
    connections: list[int]  # per worker, sorted descending
    cpu_share: list[float]  # per worker, sorted descending


def measure(server: hb.RunningServer, name: str, workers: int, duration: int, wrk_cpu: int, round_no: int) -> Run:
    """One keep-alive wrk run; connections are counted halfway through it."""
    import threading

    before = hb.tree_cpu(server.process.pid)
    master_before = precise_cpu(server.process.pid)
    seen: dict[int, int] = {}

    def sample() -> None:
        time.sleep(duration / 2)  # halfway through the run: wrk's connections are all open
        seen.update(connections_per_worker(server))

    sampler = threading.Thread(target=sample)
    started = time.monotonic()
    sampler.start()
    result = hb.run_wrk(server.url, KEEPALIVE, duration, wrk_cpu)
    wall = time.monotonic() - started
    sampler.join()
    used = hb.cpu_delta(before, hb.tree_cpu(server.process.pid))
    master = precise_cpu(server.process.pid) - master_before
    total = sum(used.values())
    worker_cpu = [used.get(pid, 0.0) for pid in workers_of(server)]
    return Run(
        server=name,
        cluster=server.spec.name,
        workers=workers,
        round=round_no,
        requests=result.requests,
        errors=result.errors,
        cpu_us_per_request=round(total / result.requests * 1e6, 2),
        master_cpu_per_second=round(master / wall, 6),
        master_share=round(master / total, 6),
        has_master=workers_of(server) != [server.process.pid],
        connections=sorted(seen.values(), reverse=True),
        cpu_share=sorted((round(c / total, 3) for c in worker_cpu), reverse=True),
    )


def master_at_rest(server: hb.RunningServer, seconds: float) -> float:
    """The master's CPU seconds per second with no traffic at all."""
    before = precise_cpu(server.process.pid)
    time.sleep(seconds)  # the measurement window itself, not synchronisation
    return round((precise_cpu(server.process.pid) - before) / seconds, 6)


def summarize(runs: list[Run], rest: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for name, workers in itertools.product(SERVERS, WORKER_COUNTS):
        mine = [r for r in runs if r.workers == workers and r.server == name]
        ones = [r.cpu_us_per_request for r in runs if r.workers == 1 and r.server == name]
        if not mine or not ones:
            continue
        base = statistics.median(ones)
        cpu = statistics.median(r.cpu_us_per_request for r in mine)
        rows.append(
            {
                "server": name,
                "workers": workers,
                "cpu_us_per_request": round(cpu, 2),
                "spread": [min(r.cpu_us_per_request for r in mine), max(r.cpu_us_per_request for r in mine)],
                "overhead_vs_1": round(cpu / base - 1, 4),
                "errors": sum(r.errors for r in mine),
                "master_cpu_ms_per_s_load": round(statistics.median(r.master_cpu_per_second for r in mine) * 1e3, 3),
                "has_master": all(r.has_master for r in mine),
                "master_share_of_cpu": round(statistics.median(r.master_share for r in mine), 5),
                "master_cpu_ms_per_s_rest": round(rest[f"{name}-{workers}w"] * 1e3, 3),
                "connections_per_worker": [r.connections for r in mine],
                "cpu_share_per_worker": [r.cpu_share for r in mine],
            }
        )
    return rows


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Multi-worker overheads (issue 16, item 4)",
        "",
        f"{report['machine']['cpu_model']}; master and workers pinned to core {report['server_cpu']}, "
        f"wrk on core {report['wrk_cpu']}; {report['rounds']} interleaved rounds x {report['duration']} s, "
        f"keep-alive, 64 connections, examples.hello:app; `python benchmarks/multiworker_bench.py`.",
        "",
        "| server | workers | CPU µs/request (median, spread) | vs 1 worker | master CPU ms/s, rest | "
        "master CPU ms/s, load | master share of CPU | connections per worker (each round) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        spread = "-".join(f"{v:.1f}" for v in row["spread"])
        if not row["has_master"]:
            master = "no master process | | | "
        else:
            master = (
                f"{row['master_cpu_ms_per_s_rest']:.2f} | {row['master_cpu_ms_per_s_load']:.2f} | "
                f"{row['master_share_of_cpu']:.2%} | "
            )
        conns = "; ".join("/".join(map(str, c)) for c in row["connections_per_worker"])
        lines.append(
            f"| {row['server']} | {row['workers']} | {row['cpu_us_per_request']:.1f} ({spread}) | "
            f"{row['overhead_vs_1']:+.1%} | "
            f"{master}{conns} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--rest", type=float, default=10.0, help="seconds of idle for the master's rest CPU")
    parser.add_argument("--server-cpu", type=int, default=1)
    parser.add_argument("--wrk-cpu", type=int, default=0)
    parser.add_argument("--out", type=Path, default=hb.BENCH_DIR / "results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    hb.check_tools()
    runs: list[Run] = []
    rest: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as logs:
        servers = []
        try:
            for name, workers in itertools.product(SERVERS, WORKER_COUNTS):
                server = hb.start_server(cluster_spec(name, workers), args.server_cpu, Path(logs))
                servers.append((name, workers, server))
                hb.wait_ready(server)
                wait_for_workers(server, workers)
            for _, _, server in servers:
                hb.run_wrk(server.url, KEEPALIVE, hb.WARMUP_SECONDS, args.wrk_cpu)
                rest[server.spec.name] = master_at_rest(server, args.rest)
            for round_no in range(1, args.rounds + 1):
                for name, workers, server in servers:
                    run = measure(server, name, workers, args.duration, args.wrk_cpu, round_no)
                    runs.append(run)
                    print(
                        f"round {round_no} {run.cluster}: {run.cpu_us_per_request} µs/req {run.connections}",
                        file=sys.stderr,
                    )
        finally:
            for _, _, server in servers:
                hb.stop_server(server)
    report = {
        "machine": hb.machine_info(args.server_cpu, args.wrk_cpu),
        "versions": hb.versions(),
        "server_cpu": args.server_cpu,
        "wrk_cpu": args.wrk_cpu,
        "rounds": args.rounds,
        "duration": args.duration,
        "rows": summarize(runs, rest),
        "runs": [asdict(r) for r in runs],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "multiworker.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.out / "multiworker.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
