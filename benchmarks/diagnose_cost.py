"""What diagnosing costs a serving worker (issue 15): CPU per request and req/s under wrk.

One cluster (``--workers 1``, access log off) runs tests/apps/diagnose_app.py pinned to CPU 1
(master, worker and the py-spy the master starts: the profiler's own CPU is charged to the
server); wrk (1 thread, 32 keep-alive connections, ``GET /``) runs on CPU 0. Interleaved
rounds of: nothing measured, ``asynccluster profile --tool py-spy``, nothing,
``asynccluster profile --tool sampler``, and a second cluster with
``--slow-request-threshold 1000 --slow-request-stacks`` (the slow log armed, no request slow).
A profile covers the whole wrk run (it starts first and lasts 2 s longer).

The headline figure is the cluster's CPU time (master, worker, py-spy: the whole process
tree, from /proc) per request, as in benchmarks/README.md: on a shared machine req/s swing
with the neighbours' load, the CPU a request costs does not. A worker that saturates its core
loses throughput in proportion to that cost.

    python benchmarks/diagnose_cost.py                 # 3 rounds x 8 s
    python benchmarks/diagnose_cost.py --rounds 1 --duration 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_bench as hb  # wrk output parsing

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def start_cluster(control: Path, name: str, *extra: str) -> tuple[subprocess.Popen[str], int]:
    argv = ["taskset", "-c", "1", PY, "-m", "asynccluster", "run", "tests.apps.diagnose_app:app", "--port", "0",
            "--workers", "1", "--no-access-log", "--name", name, "--control-dir", str(control), *extra]  # fmt: skip
    process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    port = 0
    deadline = time.monotonic() + 30
    for line in process.stdout:
        found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        port = int(found.group(1)) if found else port
        if re.search(r"all \d+ workers? ready", line):
            break
        if time.monotonic() > deadline:
            raise RuntimeError("cluster did not start")
    threading.Thread(target=process.stdout.read, daemon=True).start()  # keep the pipe drained
    ROOTS[port] = process.pid
    return process, port


Run = tuple[float, float]  # (req/s, CPU µs per request)
ROOTS: dict[int, int] = {}  # port -> the cluster's master pid


def wrk(port: int, seconds: int) -> Run:
    argv = ["taskset", "-c", "0", "wrk", "-t1", "-c32", f"-d{seconds}s", f"http://127.0.0.1:{port}/"]
    before = hb.tree_cpu(ROOTS[port])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True)
    used = sum(hb.cpu_delta(before, hb.tree_cpu(ROOTS[port])).values())
    result = hb.parse_wrk(done.stdout)
    return result.requests_per_second, 1e6 * used / max(1, result.requests)


def profiled(control: Path, name: str, port: int, seconds: int, tool: str, out: Path) -> tuple[Run, dict]:
    argv = [PY, "-m", "asynccluster", "profile", name, "--control-dir", str(control), "--worker", "0",
            "--seconds", str(seconds + 2), "--out", str(out), "--tool", tool, "--json"]  # fmt: skip
    profile = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # let the profiler attach before the measured run starts
    rate = wrk(port, seconds)
    stdout, stderr = profile.communicate(timeout=seconds + 60)
    if profile.returncode != 0:
        raise RuntimeError(f"profile failed: {stderr}")
    return rate, json.loads(stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8)
    args = parser.parse_args()
    rates: dict[str, list[Run]] = {"off": [], "py-spy": [], "sampler": [], "slow log armed": []}
    with tempfile.TemporaryDirectory(prefix="ac-diag-bench-") as tmp:
        control = Path(tmp) / "ctl"
        os.makedirs(control, mode=0o700)
        cluster, port = start_cluster(control, "bench")
        armed, armed_port = start_cluster(control, "armed", "--slow-request-threshold", "1000", "--slow-request-stacks")
        try:
            wrk(port, 2)  # warm up
            wrk(armed_port, 2)
            for round_no in range(1, args.rounds + 1):
                rates["off"].append(wrk(port, args.duration))
                rate, spy = profiled(control, "bench", port, args.duration, "py-spy", Path(tmp) / "p.svg")
                rates["py-spy"].append(rate)
                rates["off"].append(wrk(port, args.duration))
                rate, sampler = profiled(control, "bench", port, args.duration, "sampler", Path(tmp) / "s.svg")
                rates["sampler"].append(rate)
                rates["slow log armed"].append(wrk(armed_port, args.duration))
                line = ", ".join(f"{k} {v[-1][0]:.0f}/s {v[-1][1]:.0f}µs" for k, v in rates.items())
                print(f"round {round_no}: {line}", flush=True)
                print(f"  samples: py-spy {spy['samples']}, sampler {sampler['samples']}", flush=True)
        finally:
            for process in (cluster, armed):
                process.terminate()
                process.wait(30)
    base = statistics.median(cpu for _, cpu in rates["off"])
    print(f"\nmedians over {args.rounds} rounds of {args.duration} s (wrk -t1 -c32 on CPU 0, cluster on CPU 1):")
    print(f"  {'':<15} {'req/s':>9} {'CPU µs/req':>11}")
    for key, values in rates.items():
        cpu = statistics.median(c for _, c in values)
        rate = statistics.median(r for r, _ in values)
        print(f"  {key:<15} {rate:>9.0f} {cpu:>11.1f}  ({100.0 * (cpu - base) / base:+.1f}% CPU per request vs off)")


if __name__ == "__main__":
    main()
