"""Real-app workloads side by side (issue 16): asynccluster, uvicorn, granian, gunicorn+uvicorn.

The apps are benchmarks/realapps.py (FastAPI with a pydantic response model, the same with
one ``@app.middleware("http")``, Starlette plaintext / 10 KiB POST echo / 1 MiB stream /
50 KiB FileResponse, a Django async view). Every server runs each app with one worker,
pinned to CPU 1; wrk (keep-alive, 64 connections, one thread) runs on CPU 0. All servers of
one access-log mode are started together and measured in interleaved rounds (round 1:
every workload x every server, round 2 the same again); then the other mode. The headline
figure is the server tree's CPU µs per request (see benchmarks/README.md: Method); req/s
and wrk's p50/p99 latency are reported too.

    python benchmarks/apps_bench.py                      # 3 rounds x 5 s, access log off and on
    python benchmarks/apps_bench.py --rounds 1 --duration 2 --workloads fastapi-json --logs off
    python benchmarks/apps_bench.py --suite stall        # the stall table (benchmarks/stall_bench.py)
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_bench as hb  # the shared /proc, server and wrk helpers
from stall_bench import _ms

PY = sys.executable
MODULE = "benchmarks.realapps"
SERVER_NAMES = ("asynccluster", "asynccluster+pathsend", "uvicorn", "granian", "gunicorn")
DEFAULT_SERVERS = ("asynccluster", "uvicorn", "granian", "gunicorn")  # +pathsend: for file-50k


@dataclass(frozen=True)
class Workload:
    name: str
    app: str  # attribute of benchmarks.realapps
    path: str
    script: str | None  # a wrk lua script in benchmarks/, or None for GET
    description: str


WORKLOADS = {
    w.name: w
    for w in (
        Workload("fastapi-json", "fastapi_app", "/json", None, "FastAPI JSON, pydantic response model"),
        Workload("fastapi-middleware", "fastapi_mw_app", "/json", None, 'FastAPI JSON + one @app.middleware("http")'),
        Workload("starlette-plaintext", "starlette_app", "/plaintext", None, "Starlette plaintext"),
        Workload("django-async", "django_app", "/django", None, "Django async view (JSON)"),
        Workload("post-echo-10k", "starlette_app", "/echo", "post.lua", "Starlette, 10 KiB POST echoed"),
        Workload("stream-1m", "starlette_app", "/stream", None, "Starlette, 1 MiB StreamingResponse (64 KiB chunks)"),
        Workload("file-50k", "starlette_app", "/file", None, "Starlette, 50 KiB FileResponse"),
    )
}


def server_argv(server: str, app: str, log: bool, port: str) -> list[str]:
    """The command line of one server serving ``benchmarks.realapps:<app>`` with one worker."""
    target = f"{MODULE}:{app}"
    if server.startswith("asynccluster"):
        flags = ([] if log else ["--no-access-log"]) + (["--pathsend"] if server.endswith("+pathsend") else [])
        return [PY, "-m", "asynccluster", "run", target, "--workers", "1", *flags, "--host", hb.HOST, "--port", port]
    if server == "uvicorn":
        flags = [] if log else ["--no-access-log"]
        loop = ["--loop", "uvloop", "--http", "httptools"]
        return [PY, "-m", "uvicorn", target, *loop, *flags, "--host", hb.HOST, "--port", port]
    if server == "granian":
        flags = ["--access-log"] if log else ["--no-access-log"]
        where = ["--host", hb.HOST, "--port", port]
        return [PY, "-m", "granian", "--interface", "asgi", "--workers", "1", *flags, *where, target]
    if server == "gunicorn":
        flags = ["--access-logfile", "-"] if log else []
        worker = ["-k", "uvicorn.workers.UvicornWorker", "-w", "1"]
        return [PY, "-m", "gunicorn", target, *worker, *flags, "-b", f"{hb.HOST}:{port}"]
    raise ValueError(server)


def spec(server: str, app: str, log: bool) -> hb.ServerSpec:
    name = f"{server}-{app}-{'log' if log else 'nolog'}"
    return hb.ServerSpec(name, lambda port: server_argv(server, app, log, port), name)


def wait_ready(server: hb.RunningServer, path: str, timeout: float = hb.READY_TIMEOUT) -> None:
    """Poll until GET/POST ``path`` answers 200, or raise ServerFailed with the log's tail."""
    deadline = time.monotonic() + timeout
    method, body = ("POST", b"x" * 16) if path == "/echo" else ("GET", None)
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise hb.ServerFailed(f"exited with code {server.process.returncode}:\n{hb._log_tail(server.log_path)}")
        try:
            connection = http.client.HTTPConnection(hb.HOST, server.port, timeout=2)
            connection.request(method, path, body=body)
            response = connection.getresponse()
            response.read()
            connection.close()
            if response.status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.05)  # polling interval, bounded by the deadline
    raise hb.ServerFailed(f"{path} not answering 200 after {timeout:.0f} s:\n{hb._log_tail(server.log_path)}")


@dataclass
class AppRun:
    server: str
    workload: str
    log: bool
    round: int
    requests: int
    requests_per_second: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    cpu_us_per_request: float | None


def measure(server: hb.RunningServer, workload: Workload, duration: int, wrk_cpu: int) -> tuple[Any, str, float]:
    url = f"http://{hb.HOST}:{server.port}{workload.path}"
    argv = ["taskset", "-c", str(wrk_cpu), "wrk", "-t1", "-c64", f"-d{duration}s", "--timeout", "5s", "--latency"]
    if workload.script:
        argv += ["-s", str(hb.BENCH_DIR / workload.script)]
    before = hb.tree_cpu(server.process.pid)
    completed = hb.subprocess.run([*argv, url], capture_output=True, text=True, timeout=duration + 30, check=True)
    used = sum(hb.cpu_delta(before, hb.tree_cpu(server.process.pid)).values())
    return hb.parse_wrk(completed.stdout), completed.stdout, used


def _percentile(output: str, label: str) -> float | None:
    found = re.search(rf"^\s+{label}%\s+(\S+)", output, re.MULTILINE)
    return _ms(found.group(1)) if found and _ms(found.group(1)) > 0 else None


def run_mode(log: bool, args: argparse.Namespace, runs: list[AppRun], skipped: dict[str, str]) -> None:
    """Start every (server, app) of one access-log mode, warm up, measure in rounds, stop."""
    workloads = [WORKLOADS[name] for name in args.workloads]
    apps = sorted({w.app for w in workloads})
    started: dict[tuple[str, str], hb.RunningServer] = {}
    with tempfile.TemporaryDirectory(prefix="apps-bench-") as tmp:
        try:
            for server_name in args.servers:
                for app in apps:
                    server = hb.start_server(spec(server_name, app, log), args.server_cpu, Path(tmp))
                    started[(server_name, app)] = server
            for (server_name, app), server in list(started.items()):
                path = next(w.path for w in workloads if w.app == app)
                try:
                    wait_ready(server, path)
                except hb.ServerFailed as error:
                    skipped[server.spec.name] = hb._short_reason(error)
                    print(f"!! skipping {server.spec.name}: {error}", file=sys.stderr)
                    hb.stop_server(server)
                    del started[(server_name, app)]
            for workload in workloads:  # warm-up: every workload once, 1 s
                for server_name in args.servers:
                    if (server_name, workload.app) in started:
                        measure(started[(server_name, workload.app)], workload, 1, args.wrk_cpu)
            for round_no in range(1, args.rounds + 1):
                for workload in workloads:
                    for server_name in args.servers:
                        server = started.get((server_name, workload.app))
                        if server is None or server.process.poll() is not None:
                            continue
                        runs.append(one(server, server_name, workload, log, round_no, args))
        finally:
            for server in started.values():
                hb.stop_server(server)


def one(
    server: hb.RunningServer, name: str, workload: Workload, log: bool, round_no: int, args: argparse.Namespace
) -> AppRun:
    result, output, used = measure(server, workload, args.duration, args.wrk_cpu)
    run = AppRun(
        server=name,
        workload=workload.name,
        log=log,
        round=round_no,
        requests=result.requests,
        requests_per_second=result.requests_per_second,
        p50_ms=_percentile(output, "50"),
        p99_ms=_percentile(output, "99"),
        errors=result.errors,
        cpu_us_per_request=round(used / result.requests * 1e6, 1) if result.requests else None,
    )
    print(
        f"   {'log' if log else 'nolog'} round {round_no} {workload.name:<20} {name:<13} "
        f"{run.requests_per_second:>9,.0f} req/s  {run.cpu_us_per_request} µs/req  p99 {run.p99_ms} ms  "
        f"errors {run.errors}",
        file=sys.stderr,
    )
    return run


def summarize(runs: list[AppRun]) -> list[dict[str, Any]]:
    """Medians per (workload, log, server), with CPU ratios against uvicorn and granian."""
    rows: list[dict[str, Any]] = []
    groups: dict[tuple[str, bool, str], list[AppRun]] = {}
    for run in runs:
        groups.setdefault((run.workload, run.log, run.server), []).append(run)
    for (workload, log, server), mine in groups.items():
        cpus = [r.cpu_us_per_request for r in mine if r.cpu_us_per_request is not None]
        rows.append(
            {
                "workload": workload,
                "log": log,
                "server": server,
                "rounds": len(mine),
                "rps_median": round(statistics.median(r.requests_per_second for r in mine)),
                "cpu_us_median": round(statistics.median(cpus), 1) if cpus else None,
                "cpu_us_rounds": cpus,
                "p50_ms_median": _median([r.p50_ms for r in mine]),
                "p99_ms_median": _median([r.p99_ms for r in mine]),
                "errors": sum(r.errors for r in mine),
            }
        )
    for row in rows:
        for reference in ("uvicorn", "granian"):
            ref = next(
                (r for r in rows if (r["workload"], r["log"], r["server"]) == (row["workload"], row["log"], reference)),
                None,
            )
            ok = ref is not None and ref["cpu_us_median"] and row["cpu_us_median"] is not None
            row[f"cpu_vs_{reference}"] = round(row["cpu_us_median"] / ref["cpu_us_median"], 2) if ok else None
    order = list(WORKLOADS)
    rows.sort(key=lambda r: (order.index(r["workload"]), r["log"], SERVER_NAMES.index(r["server"])))
    return rows


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None


def markdown(report: dict[str, Any]) -> str:
    machine, vers = report["machine"], report["versions"]
    lines = [
        "## Real-app benchmark: one worker, keep-alive 64 connections",
        "",
        f"Machine: {machine['cpu_model']}, {machine['nproc']} CPUs, Linux {machine['kernel']}, load average at "
        f"start {' '.join(machine['loadavg_at_start'])}; servers pinned to CPU {machine['server_cpu']}, wrk to "
        f"CPU {machine['wrk_cpu']}. {report['rounds']} interleaved rounds x {report['duration']} s; medians. "
        f"Started {report['started']}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".",
        "",
        "| workload | access log | server | CPU µs/req | vs uvicorn | vs granian | req/s | p50 ms | p99 ms "
        "| CPU µs/req per round | errors |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|---|--:|",
    ]
    for row in report["summary"]:
        cells = [
            WORKLOADS[row["workload"]].description,
            "on" if row["log"] else "off",
            row["server"],
            hb._fmt(row["cpu_us_median"], ".1f"),
            hb._fmt(row["cpu_vs_uvicorn"], ".2f", "x"),
            hb._fmt(row["cpu_vs_granian"], ".2f", "x"),
            f"{row['rps_median']:,}",
            hb._fmt(row["p50_ms_median"], ".2f"),
            hb._fmt(row["p99_ms_median"], ".2f"),
            " / ".join(f"{v:.1f}" for v in row["cpu_us_rounds"]),
            str(row["errors"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "CPU µs/req: user+sys CPU of the server's whole process tree (master, workers, supervisor) per "
        "request answered; ratios below 1x are cheaper than the reference. Access log on: each server's "
        "default access log to its stdout, redirected to a file (granian `--access-log`, gunicorn "
        "`--access-logfile -`).",
    ]
    for name, reason in report["skipped"].items():
        lines += ["", f"**Skipped {name}**: {reason}."]
    return "\n".join(lines) + "\n"


def write_charts(report: dict[str, Any], out: Path) -> list[Path]:
    """One PNG per workload: CPU µs/request per server, access log off and on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for workload in WORKLOADS:
        rows = [r for r in report["summary"] if r["workload"] == workload]
        if not rows:
            continue
        servers = [s for s in SERVER_NAMES if any(r["server"] == s for r in rows)]
        figure, axis = plt.subplots(figsize=(6.4, 3.6))
        width = 0.38
        for offset, log in ((-width / 2, False), (width / 2, True)):
            values = [
                next((r["cpu_us_median"] or 0 for r in rows if r["server"] == s and r["log"] == log), 0)
                for s in servers
            ]
            bars = axis.bar(
                [i + offset for i in range(len(servers))], values, width, label=f"access log {'on' if log else 'off'}"
            )
            axis.bar_label(bars, fmt="%.0f", fontsize=8)
        axis.set_xticks(range(len(servers)), servers)
        axis.set_ylabel("server CPU µs per request")
        axis.set_title(f"{WORKLOADS[workload].description} (lower is better)", fontsize=10)
        axis.legend(fontsize=8)
        figure.tight_layout()
        path = out / f"apps-{workload}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        paths.append(path)
    return paths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=("apps", "stall"), default="apps")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS), help=f"from {', '.join(SERVER_NAMES)}")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--logs", default="off,on", help="access-log modes to run: off, on or off,on")
    parser.add_argument("--server-cpu", type=int, default=1)
    parser.add_argument("--wrk-cpu", type=int, default=0)
    parser.add_argument("--out", type=Path, default=hb.BENCH_DIR / "results")
    args, rest = parser.parse_known_args(argv)
    args.rest = rest
    args.servers = [s for s in args.servers.split(",") if s]
    args.workloads = [w for w in args.workloads.split(",") if w]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.suite == "stall":
        import stall_bench

        stall_bench.main([*args.rest, "--rounds", str(args.rounds), "--out", str(args.out)])
        return
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    machine = hb.machine_info(args.server_cpu, args.wrk_cpu)
    runs: list[AppRun] = []
    skipped: dict[str, str] = {}
    for mode in args.logs.split(","):
        run_mode(mode == "on", args, runs, skipped)
    vers = hb.versions()
    for package in ("fastapi", "starlette", "pydantic", "django", "gunicorn"):
        vers[package] = hb.importlib.metadata.version(package)
    report = {
        "started": started,
        "rounds": args.rounds,
        "duration": args.duration,
        "machine": machine,
        "versions": vers,
        "summary": summarize(runs),
        "skipped": skipped,
        "runs": [asdict(r) for r in runs],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "apps.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.out / "apps.md").write_text(text)
    charts = write_charts(report, args.out)
    print(text)
    print("wrote apps.json, apps.md and " + ", ".join(p.name for p in charts), file=sys.stderr)


if __name__ == "__main__":
    main()
