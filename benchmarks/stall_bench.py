"""Stalls under load (issue 16): a warm-up that wrk ends mid-pipeline, then a measured run.

Each run starts a FRESH server (pinned to CPU 1), sends one GET, loads it for 1 s with
pipelined wrk (256 connections x 16; wrk ends by closing every connection mid-pipeline),
then measures 4 s more of a scenario (pipelined, or keep-alive 64 connections) with wrk's
default 2 s timeout: p99 and max latency, timeouts, req/s and the server tree's CPU µs per
request. Variants: the access log off, to a file (stdout redirected), to a pipe (read by
``cat``, on the server's core), and the same for uvicorn and granian. Rounds interleave
every variant, so a busy shared machine hits all alike.

    python benchmarks/stall_bench.py                  # 3 rounds, every variant (~6 min)
    python benchmarks/stall_bench.py --rounds 1 --variants asynccluster,asynccluster-log-pipe
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_bench as hb  # the shared /proc, server and wrk helpers

PY = sys.executable
HELLO = "examples.hello:app"
WARMUP = ["-t1", "-c256", "-d1s", "-s", str(hb.BENCH_DIR / "pipeline.lua")]  # + url, "--", "16"
MEASURE_SECONDS = 4
SCENARIOS = {
    "pipelined": ["-t1", "-c256", "-s", str(hb.BENCH_DIR / "pipeline.lua")],  # + url, "--", "16"
    "keepalive": ["-t1", "-c64"],
}


def _ac(*extra: str) -> str:
    return shlex.join([PY, "-m", "asynccluster", "run", HELLO, "--workers", "1", "--host", hb.HOST, *extra])


def _uv(*extra: str) -> str:
    return shlex.join(
        [PY, "-m", "uvicorn", HELLO, "--loop", "uvloop", "--http", "httptools", "--host", hb.HOST, *extra]
    )


def _gr(*extra: str) -> str:
    return shlex.join([PY, "-m", "granian", "--interface", "asgi", "--workers", "1", "--host", hb.HOST, *extra, HELLO])


# name -> (shell command with {port}, where its output goes: "file" | "pipe")
VARIANTS: dict[str, tuple[str, str]] = {
    "asynccluster": (_ac("--no-access-log") + " --port {port}", "file"),
    # The same from the checkout given by --before (e.g. the commit before the accept fix).
    "asynccluster-before": (_ac("--no-access-log") + " --port {port}", "file"),
    "asynccluster-log-file": (_ac() + " --port {port}", "file"),
    "asynccluster-log-pipe": (_ac() + " --port {port}", "pipe"),
    "uvicorn": (_uv("--no-access-log") + " --port {port}", "file"),
    "uvicorn-log-file": (_uv() + " --port {port}", "file"),
    "granian": (_gr("--no-access-log") + " --port {port}", "file"),
}


@dataclass
class StallRun:
    variant: str
    scenario: str
    round: int
    requests: int
    requests_per_second: float
    latency_avg_ms: float | None
    latency_stdev_ms: float | None
    latency_max_ms: float | None
    latency_p99_ms: float | None
    timeouts: int
    other_errors: int
    cpu_us_per_request: float | None
    accept_queue_max: int  # connections waiting to be accepted, at the worst sample
    accept_queue_seconds: float  # time the accept queue was not empty (50 ms samples)


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNIT_MS[unit]


def parse_latency(output: str) -> dict[str, float | None]:
    """avg, stdev, max (Thread Stats) and p99 (--latency) in ms; p99 None when wrk gives 0."""
    found: dict[str, float | None] = {"avg": None, "stdev": None, "max": None, "p99": None}
    stats = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", output)
    if stats:
        found["avg"], found["stdev"], found["max"] = (_ms(value) for value in stats.groups())
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if p99 and _ms(p99.group(1)) > 0:
        found["p99"] = _ms(p99.group(1))
    return found


def wrk(args: list[str], url: str, depth: bool, wrk_cpu: int) -> str:
    tail = [url, "--", "16"] if depth else [url]
    argv = ["taskset", "-c", str(wrk_cpu), "wrk", *args, *tail]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout


def start(variant: str, server_cpu: int, log_dir: Path, source: Path) -> tuple[subprocess.Popen[bytes], int]:
    command, output = VARIANTS[variant]
    port = hb.free_port()
    shell = command.format(port=port)
    log = log_dir / f"{variant}.log"
    # The pipe's reader runs on the server's core too, as a log shipper on the same box would.
    shell = f"exec {shell} >{log} 2>&1" if output == "file" else f"{shell} 2>&1 | cat >/dev/null"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNCCLUSTER_", "GRANIAN_", "UVICORN_"))}
    env["PYTHONPATH"] = str(source)  # first on the path: --source runs another checkout's code
    process = subprocess.Popen(
        ["taskset", "-c", str(server_cpu), "sh", "-c", shell], cwd=source, env=env, start_new_session=True
    )
    server = hb.RunningServer(hb.ServerSpec(variant, lambda p: [], variant), port, process, log)
    hb.wait_ready(server)
    return process, port


def one_run(variant: str, scenario: str, round_no: int, args: argparse.Namespace, log_dir: Path) -> StallRun:
    source = args.before if variant.endswith("-before") else args.source
    process, port = start(variant, args.server_cpu, log_dir, source)
    url = f"http://{hb.HOST}:{port}/"
    try:
        wrk(WARMUP, url, True, args.wrk_cpu)  # ends by closing every connection mid-pipeline
        before = hb.tree_cpu(process.pid)
        measure = [*SCENARIOS[scenario], f"-d{MEASURE_SECONDS}s", "--timeout", "2s", "--latency"]
        with AcceptQueueWatch(port) as queue:
            output = wrk(measure, url, scenario == "pipelined", args.wrk_cpu)
        used = sum(hb.cpu_delta(before, hb.tree_cpu(process.pid)).values())
    finally:
        hb.stop_server(hb.RunningServer(hb.ServerSpec(variant, lambda p: [], variant), port, process, log_dir))
    result = hb.parse_wrk(output)
    latency = parse_latency(output)
    timeouts = result.socket_errors["timeout"]
    return StallRun(
        variant=variant,
        scenario=scenario,
        round=round_no,
        requests=result.requests,
        requests_per_second=result.requests_per_second,
        latency_avg_ms=latency["avg"],
        latency_stdev_ms=latency["stdev"],
        latency_max_ms=latency["max"],
        latency_p99_ms=latency["p99"],
        timeouts=timeouts,
        other_errors=result.errors - timeouts,
        cpu_us_per_request=round(used / result.requests * 1e6, 2) if result.requests else None,
        accept_queue_max=queue.peak,
        accept_queue_seconds=queue.busy_seconds,
    )


class AcceptQueueWatch:
    """Samples the listening socket's accept queue (``ss -Hlnt``, Recv-Q) every 50 ms in a thread:
    the peak, and for how long it was not empty (connections the kernel completed and the
    server had not accepted yet)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.peak = 0
        self.busy_seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> AcceptQueueWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            completed = subprocess.run(
                ["ss", "-Hlnt", f"sport = :{self.port}"], capture_output=True, text=True, check=False
            )
            depth = sum(int(line.split()[1]) for line in completed.stdout.splitlines() if line.split()[1:2])
            self.peak = max(self.peak, depth)
            if depth:
                self.busy_seconds = round(self.busy_seconds + 0.05, 2)


def summarize(runs: list[StallRun]) -> list[dict[str, Any]]:
    """Per scenario and variant: medians of req/s, CPU, p99; the worst max; timeouts per round."""
    rows = []
    keys = sorted({(r.scenario, r.variant) for r in runs}, key=lambda k: (k[0], list(VARIANTS).index(k[1])))
    for scenario, variant in keys:
        mine = [r for r in runs if (r.scenario, r.variant) == (scenario, variant)]
        p99s = [r.latency_p99_ms for r in mine if r.latency_p99_ms is not None]
        cpus = [r.cpu_us_per_request for r in mine if r.cpu_us_per_request is not None]
        rows.append(
            {
                "scenario": scenario,
                "variant": variant,
                "rounds": len(mine),
                "rps_median": round(statistics.median(r.requests_per_second for r in mine)),
                "cpu_us_median": round(statistics.median(cpus), 1) if cpus else None,
                "p99_ms_median": round(statistics.median(p99s), 1) if p99s else None,
                "max_ms_worst": max((r.latency_max_ms or 0.0) for r in mine),
                "stdev_ms_median": round(statistics.median((r.latency_stdev_ms or 0.0) for r in mine), 1),
                "timeouts_per_round": [r.timeouts for r in mine],
                "other_errors": sum(r.other_errors for r in mine),
                "accept_queue_max": max(r.accept_queue_max for r in mine),
                "accept_queue_seconds_median": statistics.median(r.accept_queue_seconds for r in mine),
            }
        )
    return rows


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        "## Stalls after a warm-up ended mid-pipeline (issue 16)",
        "",
        f"Machine: {machine['cpu_model']}, {machine['nproc']} CPUs, load average at start "
        f"{' '.join(machine['loadavg_at_start'])}; server (and the pipe's `cat`) on CPU {machine['server_cpu']}, "
        f"wrk on CPU {machine['wrk_cpu']}. Each run: a fresh server, one GET, 1 s pipelined warm-up "
        f"(256 x 16, ended by wrk mid-pipeline), then {MEASURE_SECONDS} s measured with wrk's 2 s timeout. "
        f"{report['rounds']} interleaved rounds; medians, worst max. Started {report['started']}; "
        f"asynccluster {report['source']}, python {report['versions']['python']}"
        + (f"; asynccluster-before: {report['before']}." if report.get("before") else "."),
        "",
        "| measured load | server | req/s | CPU µs/req | p99 ms | max ms (worst) | stdev ms | timeouts per round "
        "| other errors | accept queue: peak / s not empty |",
        "|---|---|--:|--:|--:|--:|--:|---|--:|--:|",
    ]
    for row in report["summary"]:
        p99 = "-" if row["p99_ms_median"] is None else f"{row['p99_ms_median']:.1f}"
        cpu = "-" if row["cpu_us_median"] is None else f"{row['cpu_us_median']:.1f}"
        lines.append(
            f"| {row['scenario']} | {row['variant']} | {row['rps_median']:,} | {cpu} | {p99} "
            f"| {row['max_ms_worst']:.0f} | {row['stdev_ms_median']:.1f} "
            f"| {' / '.join(map(str, row['timeouts_per_round']))} | {row['other_errors']} "
            f"| {row['accept_queue_max']} / {row['accept_queue_seconds_median']:.2f} |"
        )
    lines += [
        "",
        "p99 is wrk's `--latency` percentile; wrk prints 0 for it with its pipeline script ('-'), so the "
        "pipelined rows rely on max, stdev and timeouts. Pipelined latency is per batch of 16.",
    ]
    return "\n".join(lines) + "\n"


def _revision(source: Path) -> str:
    """The commit of ``source`` (a git checkout, or an exported tree: then its path)."""
    completed = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=source, capture_output=True, text=True, check=False
    )
    return completed.stdout.strip() or str(source)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--server-cpu", type=int, default=1)
    parser.add_argument("--wrk-cpu", type=int, default=0)
    parser.add_argument("--out", type=Path, default=hb.BENCH_DIR / "results")
    parser.add_argument("--name", default="stall", help="output file names: NAME.json, NAME.md")
    parser.add_argument("--source", type=Path, default=hb.REPO, help="the checkout whose asynccluster runs")
    parser.add_argument(
        "--before", type=Path, default=None, help="an older checkout for the asynccluster-before variant"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    variants = [v for v in args.variants.split(",") if v and (args.before or not v.endswith("-before"))]
    scenarios = [s for s in args.scenarios.split(",") if s]
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    machine = hb.machine_info(args.server_cpu, args.wrk_cpu)
    runs: list[StallRun] = []
    with tempfile.TemporaryDirectory(prefix="stall-bench-") as tmp:
        for round_no in range(1, args.rounds + 1):
            for scenario in scenarios:
                for variant in variants:
                    run = one_run(variant, scenario, round_no, args, Path(tmp))
                    runs.append(run)
                    print(
                        f"   round {round_no} {scenario:<9} {variant:<22} {run.requests_per_second:>9,.0f} req/s "
                        f"cpu {run.cpu_us_per_request} µs  p99 {run.latency_p99_ms} ms  max {run.latency_max_ms} ms  "
                        f"timeouts {run.timeouts}",
                        file=sys.stderr,
                    )
    report = {
        "started": started,
        "rounds": args.rounds,
        "machine": machine,
        "versions": hb.versions(),
        "source": _revision(args.source),
        "before": _revision(args.before) if args.before else None,
        "summary": summarize(runs),
        "runs": [asdict(r) for r in runs],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.out / f"{args.name}.md").write_text(text)
    print(text)
    return report


if __name__ == "__main__":
    main()
