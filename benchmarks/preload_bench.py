"""--preload (issue 16 item 3): respawn time after kill -9 and the memory of 4 workers.

For a FastAPI app (benchmarks/realapps.py ``fastapi_app``: a pydantic response model):

- **respawn**: a 4-worker cluster; N times (round robin over the slots) SIGKILL one worker
  and time from the kill to the master's "worker S (pid P, incarnation I) ready" line as
  this script reads it (the master reports ready once the new worker's lifespan startup is
  done and it accepts); median and p90, spawn mode vs --preload;
- **memory**: after a warm-up (requests on fresh connections until every worker answered
  ``WARMUP_PER_WORKER`` times), the total PSS (``/proc/PID/smaps_rollup``: shared pages
  split between the processes sharing them) of the 4 workers, and of the whole process
  tree (master, helper, resource tracker); for spawn mode, --preload and uvicorn --workers 4.

    python benchmarks/preload_bench.py                  # 15 kills per mode, results committed
    python benchmarks/preload_bench.py --kills 5 --no-save

Results: benchmarks/results/preload.json and preload.md.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
APP = "benchmarks.realapps:fastapi_app"
WORKERS = 4
READY = re.compile(r"worker (\d+) \(pid (\d+), incarnation (\d+)\) ready")
READY_TIMEOUT = 60.0  # seconds for a cluster (or one respawn) to become ready
WARMUP_PER_WORKER = 50  # responses each worker must have sent before memory is read


class LogReader:
    """A server's combined output, each line stamped with time.monotonic() on arrival."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[tuple[float, str]] = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self.cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self.cond.notify_all()

    def wait(self, pattern: str, start: int = 0, timeout: float = READY_TIMEOUT) -> tuple[float, re.Match[str], int]:
        """(arrival time, match, index) of the first line from ``start`` matching ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        index = start
        with self.cond:
            while True:
                while index < len(self.lines):
                    stamp, line = self.lines[index]
                    match = regex.search(line)
                    if match:
                        return stamp, match, index
                    index += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    tail = "\n".join(line for _, line in self.lines[-30:])
                    raise TimeoutError(f"no line matching {pattern!r} in {timeout} s:\n{tail}")
                self.cond.wait(remaining)

    def mark(self) -> int:
        with self.cond:
            return len(self.lines)


@contextlib.contextmanager
def server(argv: list[str]) -> Iterator[tuple[subprocess.Popen[str], LogReader]]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ASYNCCLUSTER_CONTROL_DIR": f"/tmp/preload-bench-{os.getpid()}"}
    proc = subprocess.Popen(
        argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, errors="replace", start_new_session=True,
    )  # fmt: skip
    try:
        yield proc, LogReader(proc)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def asynccluster_argv(port: int, preload: bool) -> list[str]:
    argv = [sys.executable, "-m", "asynccluster", "run", APP, "--workers", str(WORKERS), "--port", str(port)]
    argv += ["--no-access-log", "--name", f"preload-bench-{os.getpid()}-{int(preload)}"]
    return [*argv, "--preload"] if preload else argv


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def tree(pid: int) -> list[int]:
    found = [pid]
    for child in children(pid):
        found += tree(child)
    return found


def pss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def get_json(port: int) -> None:
    """One GET /json on a fresh connection (reuseport hashes it to one of the slots)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/json")
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"GET /json: {response.status}")
    finally:
        connection.close()


def warm_up(port: int, workers: int) -> None:
    """Requests on fresh connections (reuseport spreads them over the slots), bounded."""
    deadline = time.monotonic() + 60
    for _ in range(WARMUP_PER_WORKER * workers * 2):
        get_json(port)
        if time.monotonic() > deadline:
            break


def memory(worker_pids: list[int], root: int) -> dict[str, int]:
    return {
        "workers_pss_kib": sum(pss_kib(pid) for pid in worker_pids),
        "tree_pss_kib": sum(pss_kib(pid) for pid in tree(root)),
    }


def measure_asynccluster(preload: bool, kills: int) -> dict[str, Any]:
    port = free_port()
    with server(asynccluster_argv(port, preload)) as (proc, log):
        started = time.monotonic()
        log.wait(r"all \d+ workers ready")
        first_start = time.monotonic() - started
        workers: dict[int, int] = {}
        incarnations: dict[int, int] = {}
        for _, line in list(log.lines):
            match = READY.search(line)
            if match:
                workers[int(match.group(1))] = int(match.group(2))
                incarnations[int(match.group(1))] = int(match.group(3))
        warm_up(port, WORKERS)
        mem = memory(list(workers.values()), proc.pid)
        respawns = []
        for index in range(kills):
            slot = index % WORKERS
            mark = log.mark()
            killed_at = time.monotonic()
            os.kill(workers[slot], signal.SIGKILL)
            stamp, match, _ = log.wait(
                rf"worker {slot} \(pid (\d+), incarnation {incarnations[slot] + 1}\) ready", mark
            )
            respawns.append(stamp - killed_at)
            workers[slot] = int(match.group(1))
            incarnations[slot] += 1
            get_json(port)  # the cluster serves between kills
    return {"mode": "--preload" if preload else "spawn", "first_start_s": round(first_start, 3),
            "respawn_s": [round(s, 4) for s in respawns], **summary(respawns), **mem}  # fmt: skip


def measure_uvicorn() -> dict[str, Any]:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", APP, "--workers", str(WORKERS), "--port", str(port), "--no-access-log"]
    argv += ["--loop", "uvloop", "--http", "httptools"]
    with server(argv) as (proc, log):
        index = 0
        for _ in range(WORKERS):
            _, _, index = log.wait(r"Application startup complete", index)
            index += 1
        warm_up(port, WORKERS)
        workers = [pid for pid in tree(proc.pid) if pid != proc.pid and "spawn_main" in cmdline(pid)]
        workers = [pid for pid in workers if "resource_tracker" not in cmdline(pid)]
        return {"mode": "uvicorn --workers 4", **memory(workers, proc.pid)}


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"median_ms": round(statistics.median(ordered) * 1000, 1), "p90_ms": round(p90 * 1000, 1)}


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("fastapi", "pydantic", "uvicorn", "uvloop", "httptools")}


def markdown(results: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    lines = [
        "# --preload: respawn after kill -9 and memory of 4 workers (issue 16 item 3)",
        "",
        f"`python benchmarks/preload_bench.py --kills {machine['kills']}` on {machine['cpus']} CPUs "
        f"({machine['platform']}), Python {machine['python']}; {json.dumps(machine['versions'])}; "
        f"1-minute load average before/after: {machine['load_average_1min']} (a shared machine: other "
        "work inflates the spawn-mode figures most, since a spawned worker imports everything).",
        f'App: `{APP}`; {WORKERS} workers. Respawn: from the SIGKILL to the master\'s "ready" line '
        "(lifespan done, accepting). PSS from /proc/PID/smaps_rollup after a warm-up; "
        '"tree" adds the master, the resource tracker and (--preload) the helper.',
        "",
        "| mode | first start s | respawn median ms | respawn p90 ms | PSS 4 workers MiB | PSS tree MiB |",
        "|---|---|---|---|---|---|",
    ]
    for row in results:
        lines.append(
            f"| {row['mode']} | {row.get('first_start_s', '-')} | {row.get('median_ms', '-')} | "
            f"{row.get('p90_ms', '-')} | {row['workers_pss_kib'] / 1024:.1f} | {row['tree_pss_kib'] / 1024:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=15, help="SIGKILLs per mode (default 15)")
    parser.add_argument("--no-save", action="store_true", help="print only; do not write benchmarks/results")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    results = [measure_asynccluster(False, args.kills), measure_asynccluster(True, args.kills), measure_uvicorn()]
    machine = {"kills": args.kills, "cpus": os.cpu_count(), "platform": platform.platform(),
               "python": platform.python_version(), "versions": versions(),
               "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}  # fmt: skip
    text = markdown(results, machine)
    print(text)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "preload.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
        (RESULTS / "preload.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
