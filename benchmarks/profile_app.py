"""Where a real-app request's CPU goes in the asynccluster worker (issue 16), sampled by py-spy.

Starts ``asynccluster run benchmarks.realapps:<app> --workers 1 --no-access-log`` pinned to
CPU 1, loads it with wrk (keep-alive, 64 connections, CPU 0) and records the worker with
``py-spy record --format raw`` (folded stacks, with native frames off: Python frames only;
time inside uvloop/httptools C code is charged to the Python frame that called into it, or
to the loop's own frame when the loop calls back). Each sample's innermost Python frame
decides its component:

- ``asynccluster`` (the server's own code, split per module and function; C code it calls,
  such as httptools' parser, is charged to the calling frame),
- ``event loop (uvloop C code, syscalls)``: samples whose innermost Python frame is the
  worker's ``run_worker`` (the loop's own work, reads, writes, epoll),
- ``event loop`` (asyncio's Python code: Task steps, futures), ``framework`` (fastapi,
  starlette, pydantic, anyio, django), ``app`` (benchmarks/realapps.py), ``other``.

    python benchmarks/profile_app.py                       # FastAPI JSON, 10 s
    python benchmarks/profile_app.py --app starlette_app --path /plaintext

Writes results/profile-<app>.md and the raw folded stacks (profile-<app>.txt).
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_bench as hb  # the shared /proc, server and wrk helpers

# py-spy installed next to this Python (a venv's bin/), else on PATH.
PY_SPY = (
    str(Path(sys.executable).with_name("py-spy")) if Path(sys.executable).with_name("py-spy").exists() else "py-spy"
)
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")
# py-spy names files relative to their sys.path entry: the first part is the top-level package.
COMPONENTS = {
    "asynccluster": "asynccluster",
    "asyncio": "event loop",
    "uvloop": "event loop",
    "fastapi": "framework",
    "starlette": "framework",
    "pydantic": "framework",
    "pydantic_core": "framework",
    "anyio": "framework",
    "django": "framework",
    "typing_extensions": "framework",
    "benchmarks": "app",
}
# The frame that runs the loop: samples whose innermost Python frame is this are uvloop's C
# code, the kernel's socket calls and waiting for events (no Python frame of their own).
LOOP_FRAME = ("asynccluster/worker/main.py", "run_worker")


_ROOTS = ("run_worker", "worker_entry")  # on every stack: not worth listing as inclusive


def component(file: str, func: str = "") -> str:
    if (file, func) == LOOP_FRAME:
        return "event loop (uvloop C code, syscalls)"
    top = file.lstrip("/").split("/", 1)[0]
    return COMPONENTS.get(top, "other")


def parse_folded(text: str) -> list[tuple[list[str], int]]:
    """py-spy raw output: 'frame;frame;... count' per line, outermost frame first."""
    samples = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples.append((stack.split(";"), int(count)))
    return samples


def leaf(frames: list[str]) -> tuple[str, str]:
    """(file, function) of the innermost frame; py-spy may append '(idle)' or thread frames."""
    for frame in reversed(frames):
        found = FRAME.match(frame.strip())
        if found:
            return found.group("file"), found.group("func")
    return "?", frames[-1] if frames else "?"


def report(samples: list[tuple[list[str], int]], args: argparse.Namespace, rps: float, cpu_us: float) -> str:
    total = sum(count for _, count in samples) or 1
    by_component: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    inclusive_server: collections.Counter[str] = collections.Counter()
    others: collections.Counter[str] = collections.Counter()
    for frames, count in samples:
        file, func = leaf(frames)
        kind = component(file, func)
        by_component[kind] += count
        if kind == "other":
            others[file.lstrip("/").split("/", 1)[0]] += count
        if kind == "asynccluster":
            by_function[f"{file}: {func}"] += count
        seen = set()
        for frame in frames:
            found = FRAME.match(frame.strip())
            if found and component(found.group("file")) == "asynccluster" and found.group("func") not in _ROOTS:
                key = f"{found.group('file')}: {found.group('func')}"
                if key not in seen:
                    seen.add(key)
                    inclusive_server[key] += count
    lines = [
        f"## Profile: `{args.app}` {args.path}, asynccluster worker (py-spy, {args.seconds} s)",
        "",
        f"{total} samples at {args.rate} Hz while wrk ran keep-alive 64 connections: {rps:,.0f} req/s, "
        f"{cpu_us:.1f} µs of server CPU per request (py-spy's sampling slows the worker; the shares are "
        "what matters). Self time by the innermost Python frame:",
        "",
        "| component | share of samples | µs per request (share x CPU/req) |",
        "|---|--:|--:|",
    ]
    for kind, count in by_component.most_common():
        lines.append(f"| {kind} | {count / total:.1%} | {count / total * cpu_us:.1f} |")
    lines += [
        "",
        "In `other`: " + ", ".join(f"{name} {count / total:.1%}" for name, count in others.most_common(6)) + ".",
    ]
    lines += ["", "asynccluster's own functions (self time):", "", "| function | share |", "|---|--:|"]
    for key, count in by_function.most_common(15):
        lines.append(f"| `{key}` | {count / total:.1%} |")
    lines += [
        "",
        "Inclusive (the function is on the stack; app and framework time below it included):",
        "",
        "| function | share |",
        "|---|--:|",
    ]
    for key, count in inclusive_server.most_common(8):
        lines.append(f"| `{key}` | {count / total:.1%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", default="fastapi_app")
    parser.add_argument("--path", default="/json")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=250)
    parser.add_argument("--out", type=Path, default=hb.BENCH_DIR / "results")
    args = parser.parse_args(argv)
    argv_of = hb.ServerSpec(
        "asynccluster-profile",
        lambda port: [
            sys.executable,
            "-m",
            "asynccluster",
            "run",
            f"benchmarks.realapps:{args.app}",
            "--workers",
            "1",
            "--no-access-log",
            "--host",
            hb.HOST,
            "--port",
            port,
        ],
        "asynccluster",
    )
    log_dir = Path("/tmp")
    server = hb.start_server(argv_of, 1, log_dir)
    try:
        from apps_bench import wait_ready

        wait_ready(server, args.path)
        url = f"http://{hb.HOST}:{server.port}{args.path}"
        hb.subprocess.run(["taskset", "-c", "0", "wrk", "-t1", "-c64", "-d2s", url], capture_output=True, check=True)
        tree = hb.tree_cpu(server.process.pid)
        worker = max((pid for pid in tree if pid != server.process.pid), key=lambda pid: tree[pid])
        raw = args.out / f"profile-{args.app}.txt"
        args.out.mkdir(parents=True, exist_ok=True)
        spy = subprocess.Popen(
            [
                PY_SPY,
                "record",
                "--pid",
                str(worker),
                "--duration",
                str(args.seconds),
                "--rate",
                str(args.rate),
                "--format",
                "raw",
                "--output",
                str(raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # py-spy attaches before the load starts (it samples for a fixed duration)
        before = hb.tree_cpu(server.process.pid)
        wrk = ["taskset", "-c", "0", "wrk", "-t1", "-c64", f"-d{args.seconds - 1}s", url]
        result = hb.parse_wrk(hb.subprocess.run(wrk, capture_output=True, text=True, check=True).stdout)
        used = sum(hb.cpu_delta(before, hb.tree_cpu(server.process.pid)).values())
        spy.wait(timeout=args.seconds + 30)
    finally:
        hb.stop_server(server)
    text = report(parse_folded(raw.read_text()), args, result.requests_per_second, used / result.requests * 1e6)
    (args.out / f"profile-{args.app}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
