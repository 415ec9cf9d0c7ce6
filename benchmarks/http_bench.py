"""Side-by-side HTTP benchmark: asynccluster vs uvicorn vs granian (and a bare floor) on one hello app.

Every server runs the same ASGI app (examples.hello:app) with one worker, pinned to one core
(``taskset -c 1``); wrk is pinned to the other core (``taskset -c 0``). All servers are started
once and then measured in interleaved rounds (round 1: every scenario x every server, round 2:
the same again, ...), so slow drift of a shared machine hits every server alike.

The headline figure is the server's CPU time per request: user+sys CPU of the server's whole
process tree (read from /proc/PID/stat before and after each wrk run) divided by the requests
wrk got answered. Requests/s depends on how busy the other core is; CPU per request does not
much. See benchmarks/README.md for the method.

    python benchmarks/http_bench.py                 # 3 rounds x 5 s, all servers, both scenarios
    python benchmarks/http_bench.py --quick         # smoke run: 1 round x 2 s
    python benchmarks/http_bench.py --servers uvicorn,granian --scenarios keepalive
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "benchmarks"
APP = "examples.hello:app"
EXPECTED_BODY = b"Hello, world!"
HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
READY_TIMEOUT = 30.0  # seconds a server gets to start answering
STOP_TIMEOUT = 10.0  # seconds a server gets to exit on SIGTERM before SIGKILL
WARMUP_SECONDS = 2
REFERENCES = ("uvicorn", "granian")  # ratios are given against these


# ---------------------------------------------------------------- servers and scenarios


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server on a given port."""

    name: str
    argv: Callable[[str], list[str]]  # port -> command line
    description: str
    # Another checkout to run from (--baseline): its directory is the cwd and PYTHONPATH, so
    # `python -m asynccluster` imports that tree's package instead of this one.
    checkout: Path | None = None


def _asynccluster(port: str) -> list[str]:
    return [
        *[sys.executable, "-m", "asynccluster", "run", APP, "--workers", "1"],
        *["--no-access-log", "--host", HOST, "--port", port],
    ]


def _uvicorn(port: str) -> list[str]:
    # No --workers: with it uvicorn adds a supervisor process; without it, it serves in-process.
    return [
        *[sys.executable, "-m", "uvicorn", APP, "--loop", "uvloop", "--http", "httptools"],
        *["--no-access-log", "--host", HOST, "--port", port],
    ]


def _granian(port: str) -> list[str]:
    return [
        *[sys.executable, "-m", "granian", "--interface", "asgi", "--workers", "1"],
        *["--no-access-log", "--host", HOST, "--port", port, APP],
    ]


def _floor(port: str) -> list[str]:
    return [sys.executable, str(BENCH_DIR / "floor_server.py"), "--host", HOST, "--port", port]


SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in (
        ServerSpec("asynccluster", _asynccluster, "asynccluster run --workers 1"),
        ServerSpec("uvicorn", _uvicorn, "uvicorn, httptools + uvloop, in-process"),
        ServerSpec("granian", _granian, "granian --interface asgi --workers 1"),
        ServerSpec("floor", _floor, "bare uvloop + httptools, canned response, no ASGI"),
    )
}


@dataclass(frozen=True)
class Scenario:
    """One wrk load shape."""

    name: str
    connections: int
    pipeline_depth: int  # 1 = plain keep-alive, no script
    description: str

    def wrk_args(self, url: str, duration: int) -> list[str]:
        args = ["wrk", "-t1", f"-c{self.connections}", f"-d{duration}s", "--timeout", "5s"]
        if self.pipeline_depth > 1:
            return [*args, "-s", str(BENCH_DIR / "pipeline.lua"), url, "--", str(self.pipeline_depth)]
        return [*args, url]


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario("keepalive", 64, 1, "keep-alive, 64 connections"),
        Scenario("pipelined", 256, 16, "pipelined x16, 256 connections"),
    )
}


# ---------------------------------------------------------------- /proc readings


def _children_by_parent() -> dict[int, list[int]]:
    """Map each pid to its child pids, from one scan of /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _read_stat(int(entry))
        if stat is not None:
            children.setdefault(int(stat[1]), []).append(int(entry))
    return children


def _read_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (index 0 = state), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """The root pid and every live descendant."""
    children = _children_by_parent()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """user+sys of a process (all its threads) plus that of its reaped children, in seconds."""
    stat = _read_stat(pid)
    if stat is None:
        return 0.0
    # Fields 14-17 of stat (utime, stime, cutime, cstime) are at 11-14 once pid and comm are cut.
    # cutime/cstime catch a child that exited during the run; live children are counted directly.
    return sum(int(value) for value in stat[11:15]) / CLOCK_TICKS


def tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds of each process in the tree, by pid."""
    return {pid: cpu_seconds(pid) for pid in process_tree(root)}


def rss_bytes(pid: int) -> int:
    """Resident set size of one process."""
    try:
        resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0
    return resident_pages * PAGE_SIZE


def cpus_allowed(pid: int) -> str:
    """The CPU list a process may run on, to prove the pinning took."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    except FileNotFoundError:
        pass
    return "?"


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> dict[int, float]:
    """CPU seconds used per pid between two readings (a pid new in `after` counts from 0)."""
    return {pid: after[pid] - before.get(pid, 0.0) for pid in after}


# ---------------------------------------------------------------- running a server


@dataclass
class RunningServer:
    """A started server: its process group, port and log."""

    spec: ServerSpec
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    worker_pid: int = 0  # the process that did the work during warm-up
    memory: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"


class ServerFailed(RuntimeError):
    """A server did not start or did not answer correctly; the benchmark skips it."""


def free_port() -> int:
    """A port nothing listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_server(spec: ServerSpec, server_cpu: int, log_dir: Path) -> RunningServer:
    """Start a server pinned to `server_cpu`, in its own process group, logging to a file."""
    port = free_port()
    log_path = log_dir / f"{spec.name}.log"
    root = spec.checkout or REPO
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["taskset", "-c", str(server_cpu), *spec.argv(str(port))],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop_server reaches every child
        )
    return RunningServer(spec, port, process, log_path)


def wait_ready(server: RunningServer, timeout: float = READY_TIMEOUT) -> None:
    """Poll until the server answers GET / with the hello body, or raise ServerFailed."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerFailed(f"exited with code {server.process.returncode}:\n{_log_tail(server.log_path)}")
        try:
            check_hello(server.port)
            return
        except (OSError, http.client.HTTPException) as error:
            last_error = repr(error)
        time.sleep(0.05)  # polling interval, bounded by the deadline above
    raise ServerFailed(f"not answering after {timeout:.0f} s ({last_error}):\n{_log_tail(server.log_path)}")


def check_hello(port: int) -> None:
    """One GET /, checked for the status and body every benchmark run depends on."""
    connection = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200 or body != EXPECTED_BODY:
        raise ServerFailed(f"GET / answered {response.status} {body[:80]!r}, expected 200 {EXPECTED_BODY!r}")


def _short_reason(error: Exception) -> str:
    """What went wrong, in one line: the first line of the error and the last line of the log."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0].rstrip(":") + (f" ({lines[-1]})" if len(lines) > 1 else "")


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (empty log)"


def stop_server(server: RunningServer) -> None:
    """SIGTERM the server's process group, wait, then SIGKILL whatever is left of it."""
    pgid = server.process.pid  # start_new_session made the server its group leader
    leftovers = [pid for pid in process_tree(pgid) if pid != pgid]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        server.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        server.process.wait(timeout=STOP_TIMEOUT)
    # A child that moved to its own group would outlive killpg; end it by its pid.
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)  # stragglers in the group


@contextlib.contextmanager
def running_servers(
    names: list[str], server_cpu: int, log_dir: Path, skipped: dict[str, str]
) -> Iterator[list[RunningServer]]:
    """Start every named server; skip those that fail (reason into `skipped`); always stop the rest."""
    started: list[RunningServer] = []
    try:
        for name in names:
            server = start_server(SERVERS[name], server_cpu, log_dir)
            started.append(server)
            try:
                wait_ready(server)
            except ServerFailed as error:
                print(f"!! skipping {name}: {error}", file=sys.stderr)
                skipped[name] = _short_reason(error)
                stop_server(server)
                started.remove(server)
                continue
            print(f"   {name} ready on port {server.port} (pid {server.process.pid})", file=sys.stderr)
        yield started
    finally:
        for server in started:
            stop_server(server)


# ---------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    """What wrk reports for one run."""

    requests: int
    seconds: float
    requests_per_second: float
    non_2xx_3xx: int
    socket_errors: dict[str, int]

    @property
    def errors(self) -> int:
        return self.non_2xx_3xx + sum(self.socket_errors.values())


_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_wrk(output: str) -> WrkResult:
    """Read the summary lines of wrk's text output."""
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h),", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if total is None or rate is None:
        raise RuntimeError(f"cannot read wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    counts = [int(value) for value in errors.groups()] if errors else [0, 0, 0, 0]
    return WrkResult(
        requests=int(total.group(1)),
        seconds=float(total.group(2)) * _DURATION_UNITS[total.group(3)],
        requests_per_second=float(rate.group(1)),
        non_2xx_3xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=dict(zip(("connect", "read", "write", "timeout"), counts, strict=True)),
    )


def run_wrk(url: str, scenario: Scenario, duration: int, wrk_cpu: int) -> WrkResult:
    """One wrk run pinned to `wrk_cpu`, bounded by a timeout well past its duration."""
    argv = ["taskset", "-c", str(wrk_cpu), *scenario.wrk_args(url, duration)]
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr or completed.stdout}")
    return parse_wrk(completed.stdout)


# ---------------------------------------------------------------- measuring


@dataclass
class Measurement:
    """One wrk run against one server, with the server's CPU cost."""

    server: str
    scenario: str
    round: int
    requests: int
    seconds: float
    requests_per_second: float
    non_2xx_3xx: int
    socket_errors: dict[str, int]
    server_cpu_seconds: float
    cpu_us_per_request: float | None
    server_core_busy: float  # server CPU seconds ÷ wall seconds: ~1.0 means the server was the bottleneck


def measure(server: RunningServer, scenario: Scenario, duration: int, wrk_cpu: int, round_no: int) -> Measurement:
    """Run wrk once and charge the server tree's CPU time to the requests answered."""
    before = tree_cpu(server.process.pid)
    started = time.monotonic()
    result = run_wrk(server.url, scenario, duration, wrk_cpu)
    wall = time.monotonic() - started
    used = sum(cpu_delta(before, tree_cpu(server.process.pid)).values())
    return Measurement(
        server=server.spec.name,
        scenario=scenario.name,
        round=round_no,
        requests=result.requests,
        seconds=result.seconds,
        requests_per_second=result.requests_per_second,
        non_2xx_3xx=result.non_2xx_3xx,
        socket_errors=result.socket_errors,
        server_cpu_seconds=round(used, 3),
        cpu_us_per_request=round(used / result.requests * 1e6, 2) if result.requests else None,
        server_core_busy=round(used / wall, 3),
    )


def warm_up(server: RunningServer, scenarios: list[Scenario], wrk_cpu: int) -> None:
    """Load the server briefly with every scenario, then note its worker and its memory."""
    before = tree_cpu(server.process.pid)
    for scenario in scenarios:
        run_wrk(server.url, scenario, WARMUP_SECONDS, wrk_cpu)
    used = cpu_delta(before, tree_cpu(server.process.pid))
    # The worker is whichever process did the work; for an in-process server it is the root.
    server.worker_pid = max(used, key=lambda pid: used[pid])
    tree = process_tree(server.process.pid)
    server.memory = {
        "processes": len(tree),
        "rss_tree_bytes": sum(rss_bytes(pid) for pid in tree),
        "rss_worker_bytes": rss_bytes(server.worker_pid),
        "cpus_allowed": sorted({cpus_allowed(pid) for pid in tree}),
    }


def run_rounds(
    servers: list[RunningServer], scenarios: list[Scenario], rounds: int, duration: int, wrk_cpu: int
) -> list[Measurement]:
    """Interleave: each round runs every scenario against every server, in the same order."""
    results: list[Measurement] = []
    for round_no in range(1, rounds + 1):
        for scenario in scenarios:
            for server in servers:
                if server.process.poll() is not None:
                    print(f"!! {server.spec.name} has exited; no more runs for it", file=sys.stderr)
                    continue
                measurement = measure(server, scenario, duration, wrk_cpu, round_no)
                results.append(measurement)
                print(_progress_line(measurement), file=sys.stderr)
    return results


def _progress_line(m: Measurement) -> str:
    errors = m.non_2xx_3xx + sum(m.socket_errors.values())
    cpu = f"{m.cpu_us_per_request:6.1f}" if m.cpu_us_per_request is not None else "   n/a"
    return (
        f"   round {m.round} {m.scenario:<10} {m.server:<13} {m.requests_per_second:>11,.0f} req/s"
        f"  {cpu} µs CPU/req  core busy {m.server_core_busy:4.0%}  errors {errors}"
    )


# ---------------------------------------------------------------- summarising


def summarize(results: list[Measurement], memory: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per scenario and server: medians over rounds, and ratios against the reference servers."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for m in results:
        summary.setdefault(m.scenario, {}).setdefault(m.server, {"runs": []})["runs"].append(m)
    for per_server in summary.values():
        for name, entry in per_server.items():
            runs: list[Measurement] = entry.pop("runs")
            cpu_values = [m.cpu_us_per_request for m in runs if m.cpu_us_per_request is not None]
            entry.update(
                rounds=len(runs),
                rps_median=round(statistics.median(m.requests_per_second for m in runs), 1),
                cpu_us_median=round(statistics.median(cpu_values), 2) if cpu_values else None,
                cpu_us_rounds=cpu_values,
                core_busy_median=round(statistics.median(m.server_core_busy for m in runs), 3),
                requests_total=sum(m.requests for m in runs),
                non_2xx_3xx_total=sum(m.non_2xx_3xx for m in runs),
                socket_errors_total=sum(sum(m.socket_errors.values()) for m in runs),
                rss_worker_bytes=memory.get(name, {}).get("rss_worker_bytes"),
            )
        _add_ratios(per_server)
    return summary


def _add_ratios(per_server: dict[str, dict[str, Any]]) -> None:
    """CPU ratio = this server's CPU/request ÷ the reference's (below 1 is cheaper); req/s likewise."""
    for entry in per_server.values():
        for reference in REFERENCES:
            ref = per_server.get(reference)
            entry[f"cpu_vs_{reference}"] = _ratio(entry["cpu_us_median"], ref["cpu_us_median"] if ref else None)
            entry[f"rps_vs_{reference}"] = _ratio(entry["rps_median"], ref["rps_median"] if ref else None)


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return round(value / reference, 3)


# ---------------------------------------------------------------- machine and versions


def machine_info(server_cpu: int, wrk_cpu: int) -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "cpu_model": _cpu_model(),
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "server_cpu": server_cpu,
        "wrk_cpu": wrk_cpu,
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def _cpu_model() -> str:
    with contextlib.suppress(FileNotFoundError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def versions() -> dict[str, str]:
    """Versions of everything whose speed is being compared."""
    found = {"python": platform.python_version()}
    for package in ("asynccluster", "uvicorn", "granian", "httptools", "uvloop"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = _source_version() if package == "asynccluster" else "not installed"
    found["asynccluster_git"] = _git_revision()
    found["wrk"] = _wrk_version()
    return found


def _source_version() -> str:
    """asynccluster's version from pyproject.toml, when it runs from the checkout uninstalled."""
    with contextlib.suppress(FileNotFoundError):
        match = re.search(r'^version\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
        if match:
            return f"{match.group(1)} (source tree)"
    return "not installed"


def _git_revision() -> str:
    """The source tree's commit (with -dirty), since asynccluster is usually run from a checkout."""
    try:
        completed = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return completed.stdout.strip() or "unknown"


def _wrk_version() -> str:
    completed = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10, check=False)
    first_line = (completed.stdout or completed.stderr).splitlines()[:1]
    return first_line[0].split(" [")[0].removeprefix("wrk ").strip() if first_line else "unknown"


# ---------------------------------------------------------------- reports


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def markdown_report(report: dict[str, Any]) -> str:
    """The results as Markdown: machine, versions, the CPU and req/s table, memory."""
    machine, vers = report["machine"], report["versions"]
    lines = [
        "## HTTP benchmark: hello app, one worker",
        "",
        f"Machine: {machine['cpu_model']}, {machine['nproc']} CPUs, Linux {machine['kernel']}; server pinned to "
        f"CPU {machine['server_cpu']}, wrk to CPU {machine['wrk_cpu']}. "
        f"{report['config']['rounds']} interleaved rounds x {report['config']['duration']} s per run; "
        "medians over rounds. Started " + report["started"] + ".",
        "",
        "Versions: " + ", ".join(f"{name} {version}" for name, version in vers.items()) + ".",
        "",
        "| scenario | server | req/s | CPU µs/req | CPU vs uvicorn | CPU vs granian | req/s vs uvicorn "
        "| req/s vs granian | CPU µs/req per round | server core busy | errors |",
        "|---|---|--:|--:|--:|--:|--:|--:|---|--:|--:|",
    ]
    for scenario, per_server in report["summary"].items():
        for server, entry in per_server.items():
            lines.append(_markdown_row(scenario, server, entry))
    lines += [
        "",
        "CPU µs/req = user+sys CPU time of the server's process tree ÷ requests answered (lower is better). "
        "Ratios are this server ÷ the reference: below 1x is cheaper in CPU, above 1x is more req/s. "
        "Errors = non-2xx responses + socket errors, summed over rounds.",
        "",
        "| server | processes | RSS of the tree (MiB) | worker RSS (MiB) | pinned to |",
        "|---|--:|--:|--:|---|",
    ]
    for server, memory in report["memory"].items():
        lines.append(
            f"| {server} | {memory['processes']} | {memory['rss_tree_bytes'] / 2**20:.1f} "
            f"| {memory['rss_worker_bytes'] / 2**20:.1f} | {', '.join(memory['cpus_allowed'])} |"
        )
    lines += ["", "Memory is read after warm-up (every scenario run once for 2 s)."]
    for server, reason in report["skipped"].items():
        lines += ["", f"**Skipped {server}** (did not start or answer): {reason}."]
    return "\n".join(lines) + "\n"


def _markdown_row(scenario: str, server: str, entry: dict[str, Any]) -> str:
    label = SCENARIOS[scenario].description
    per_round = " / ".join(f"{value:.1f}" for value in entry["cpu_us_rounds"])
    errors = entry["non_2xx_3xx_total"] + entry["socket_errors_total"]
    cells = [
        label,
        server,
        _fmt(entry["rps_median"], ",.0f"),
        _fmt(entry["cpu_us_median"], ".1f"),
        _fmt(entry["cpu_vs_uvicorn"], ".2f", "x"),
        _fmt(entry["cpu_vs_granian"], ".2f", "x"),
        _fmt(entry["rps_vs_uvicorn"], ".2f", "x"),
        _fmt(entry["rps_vs_granian"], ".2f", "x"),
        per_round,
        f"{entry['core_busy_median']:.0%}",
        str(errors),
    ]
    return "| " + " | ".join(cells) + " |"


def write_chart(report: dict[str, Any], path: Path) -> None:
    """Two panels of grouped bars: CPU µs per request and requests/s, per scenario and server."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a benchmark box
    import matplotlib.pyplot as plt

    summary: dict[str, dict[str, dict[str, Any]]] = report["summary"]
    scenarios = list(summary)
    servers = sorted({name for per_server in summary.values() for name in per_server}, key=_server_order)
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    panels = [
        ("cpu_us_median", "server CPU µs per request (lower is better)", ".1f"),
        ("rps_median", "requests/s (higher is better)", ",.0f"),
    ]
    for axis, (key, title, spec) in zip(axes, panels, strict=True):
        _bar_panel(axis, summary, scenarios, servers, key, spec)
        axis.set_title(title)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(servers), fontsize=9)
    machine = report["machine"]
    figure.suptitle(
        f"hello app, 1 worker, server on CPU {machine['server_cpu']}, wrk on CPU {machine['wrk_cpu']} — "
        f"{machine['cpu_model']}, median of {report['config']['rounds']} rounds x {report['config']['duration']} s",
        fontsize=10,
    )
    figure.tight_layout(rect=(0, 0.06, 1, 1))  # leave the bottom strip to the legend
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _bar_panel(
    axis: Any,
    summary: dict[str, dict[str, dict[str, Any]]],
    scenarios: list[str],
    servers: list[str],
    key: str,
    spec: str,
) -> None:
    width = 0.8 / max(len(servers), 1)
    for index, server in enumerate(servers):
        xs = [position + index * width for position in range(len(scenarios))]
        values = [(summary[scenario].get(server) or {}).get(key) or 0 for scenario in scenarios]
        bars = axis.bar(xs, values, width, label=server)
        axis.bar_label(bars, labels=[f"{value:{spec}}" if value else "" for value in values], fontsize=7)
    positive = [value for value in _panel_values(summary, key) if value]
    if key == "rps_median" and positive and max(positive) / min(positive) > 20:
        axis.set_yscale("log")  # the floor's pipelined req/s would flatten every other bar
    axis.set_xticks([position + width * (len(servers) - 1) / 2 for position in range(len(scenarios))])
    axis.set_xticklabels([SCENARIOS[scenario].description for scenario in scenarios])


def _panel_values(summary: dict[str, dict[str, dict[str, Any]]], key: str) -> list[float]:
    return [entry[key] for per_server in summary.values() for entry in per_server.values() if entry.get(key)]


def _server_order(name: str) -> int:
    return list(SERVERS).index(name) if name in SERVERS else len(SERVERS)


README = BENCH_DIR / "README.md"
README_START = "<!-- http-results:start (written by benchmarks/http_bench.py --update-readme) -->"
README_END = "<!-- http-results:end -->"


def update_readme(markdown: str, readme: Path = README) -> bool:
    """Replace the results section of benchmarks/README.md between its markers; False if none."""
    text = readme.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return False
    readme.write_text(
        text[: start + len(README_START)] + "\n\n" + markdown.replace("## ", "### ", 1) + "\n" + text[end:]
    )
    return True


def write_outputs(report: dict[str, Any], out_dir: Path) -> str:
    """http.json, http.md and http.png in out_dir; returns the Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "http.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    markdown = markdown_report(report)
    (out_dir / "http.md").write_text(markdown)
    if report["summary"]:
        write_chart(report, out_dir / "http.png")
    return markdown


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, help="seconds per wrk run (default 5; 2 with --quick)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; 1 with --quick)")
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"comma-separated, from {', '.join(SERVERS)}")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, from {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results", help="directory for http.json/md/png")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 2 s")
    parser.add_argument("--server-cpu", type=int, default=1, help="core the servers are pinned to (default 1)")
    parser.add_argument("--wrk-cpu", type=int, default=0, help="core wrk is pinned to (default 0)")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (e.g. a git worktree of an older commit): adds server 'baseline', "
        "asynccluster run from that tree, measured in the same interleaved rounds",
    )
    parser.add_argument(
        "--update-readme", action="store_true", help="also put the table into benchmarks/README.md's results section"
    )
    args = parser.parse_args(argv)
    # --quick only changes the defaults, so `--quick --duration 1` still means 1 s.
    args.duration = args.duration if args.duration is not None else (2 if args.quick else 5)
    args.rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    if args.baseline is not None:
        add_baseline(parser, args.baseline)
    args.servers = _choices(parser, "--servers", args.servers, SERVERS)
    args.scenarios = _choices(parser, "--scenarios", args.scenarios, SCENARIOS)
    if args.duration < 1 or args.rounds < 1:
        parser.error("--duration and --rounds must be at least 1")
    return args


def add_baseline(parser: argparse.ArgumentParser, checkout: Path) -> None:
    """Register server "baseline": asynccluster started from ``checkout`` (issue 10's before/after)."""
    checkout = checkout.resolve()
    if not (checkout / "asynccluster" / "__main__.py").is_file():
        parser.error(f"--baseline: {checkout} holds no asynccluster package")
    SERVERS["baseline"] = ServerSpec(
        "baseline", _asynccluster, f"asynccluster run --workers 1, from {checkout}", checkout
    )


def _choices(parser: argparse.ArgumentParser, flag: str, text: str, known: dict[str, Any]) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        parser.error(f"{flag}: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(known)}")
    return names


def check_tools() -> None:
    """Fail early, with the fix, if wrk or taskset is missing."""
    missing = [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: on Debian/Ubuntu `apt-get install wrk util-linux`")


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so the `finally` that stops the servers runs.
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace, log: TextIO = sys.stderr) -> dict[str, Any]:
    """Start the servers, warm them up, measure in rounds, stop them; return the report."""
    scenarios = [SCENARIOS[name] for name in args.scenarios]
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "config": {k: args.__dict__[k] for k in ("duration", "rounds", "servers", "scenarios")},
        "machine": machine_info(args.server_cpu, args.wrk_cpu),
        "versions": versions(),
        "commands": {name: " ".join(SERVERS[name].argv("PORT")) for name in args.servers},
    }
    report["skipped"] = {}
    with (
        tempfile.TemporaryDirectory(prefix="http-bench-") as log_dir,
        running_servers(args.servers, args.server_cpu, Path(log_dir), report["skipped"]) as servers,
    ):
        for server in servers:
            print(f"   warming up {server.spec.name}", file=log)
            warm_up(server, scenarios, args.wrk_cpu)
        report["memory"] = {server.spec.name: server.memory for server in servers}
        results = run_rounds(servers, scenarios, args.rounds, args.duration, args.wrk_cpu)
    report["runs"] = [asdict(m) for m in results]
    report["summary"] = summarize(results, report["memory"])
    return report


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    check_tools()
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    report = run(args)
    markdown = write_outputs(report, args.out)
    print(markdown)
    print(f"wrote {args.out / 'http.json'}, {args.out / 'http.md'} and {args.out / 'http.png'}", file=sys.stderr)
    if args.update_readme:
        updated = update_readme(markdown)
        print(f"{'updated' if updated else 'no results markers in'} {README}", file=sys.stderr)


if __name__ == "__main__":
    main()
