"""Would compiling ``http/`` with mypyc pay? (issue 16, item 2): build it, test it, measure it.

1. A detached git worktree of HEAD in a temporary directory; ``mypyc asynccluster/http/*.py``
   compiles the sans-IO layer there (the worker's hot path is not compiled: its protocol class
   inherits from asyncio.Protocol and a mixin, which mypyc's native classes cannot).
2. The fast tests of ``tests/http`` and ``tests/worker`` run against the compiled tree: a
   difference in behaviour shows up as a failure, and the failures are summarised.
3. The hello app under asynccluster from the pure tree (this checkout) and from the compiled one,
   in interleaved rounds (benchmarks/http_bench.py's method: server on one core, wrk on the other,
   CPU µs of the server's process tree per request).

    python benchmarks/mypyc_bench.py                  # 5 rounds x 4 s
    python benchmarks/mypyc_bench.py --rounds 2 --duration 2
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_bench as hb  # sibling script, not a package

SCENARIOS = [hb.SCENARIOS["keepalive"], hb.SCENARIOS["pipelined"]]


def build(tree: Path) -> float:
    """Compile tree/asynccluster/http/*.py in place; return the build's wall seconds."""
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), "HEAD"], cwd=hb.REPO, check=True)
    mypyc = shutil.which("mypyc", path=str(Path(sys.executable).parent)) or "mypyc"
    sources = sorted(str(p.relative_to(tree)) for p in (tree / "asynccluster" / "http").glob("*.py"))
    started = time.monotonic()
    subprocess.run([mypyc, *sources], cwd=tree, check=True, capture_output=True, timeout=1800)
    return time.monotonic() - started


def test_compiled(tree: Path) -> dict[str, Any]:
    """The fast tests of tests/http and tests/worker against the compiled tree, failures grouped."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "--continue-on-collection-errors",  # a test module that reads __slots__ at import
            "-m",
            "not integration",
            "tests/http",
            "tests/worker",
        ],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    summary = completed.stdout.strip().splitlines()[-1] if completed.stdout.strip() else completed.stderr[-500:]
    reasons = collections.Counter(
        line.strip()[:160] for line in completed.stdout.splitlines() if re.match(r"E\s+\w+(Error|Exception)", line)
    )
    return {"summary": summary, "errors": reasons.most_common(8)}


def spec(name: str, tree: Path) -> hb.ServerSpec:
    def argv(port: str) -> list[str]:
        command = [sys.executable, "-m", "asynccluster", "run", hb.APP, "--workers", "1", "--no-access-log"]
        command += ["--host", hb.HOST, "--port", port]
        # cd first: `python -m` puts the working directory first on sys.path.
        return ["sh", "-c", f'cd "{tree}" && exec "$@"', "sh", *command]

    return hb.ServerSpec(name, argv, f"asynccluster from {tree}")


def measure(compiled: Path, rounds: int, duration: int, server_cpu: int, wrk_cpu: int) -> list[hb.Measurement]:
    with tempfile.TemporaryDirectory() as logs:
        servers: list[hb.RunningServer] = []
        try:
            for name, tree in (("pure", hb.REPO), ("mypyc-http", compiled)):
                server = hb.start_server(spec(name, tree), server_cpu, Path(logs))
                servers.append(server)
                hb.wait_ready(server)
                hb.warm_up(server, SCENARIOS, wrk_cpu)
            return hb.run_rounds(servers, SCENARIOS, rounds, duration, wrk_cpu)
        finally:
            for server in servers:
                hb.stop_server(server)


def summarize(results: list[hb.Measurement]) -> list[dict[str, Any]]:
    rows = []
    for scenario in SCENARIOS:
        row: dict[str, Any] = {"scenario": scenario.description}
        for name in ("pure", "mypyc-http"):
            values = [m.cpu_us_per_request for m in results if m.server == name and m.scenario == scenario.name]
            row[name] = {"median": statistics.median(v for v in values if v), "per_round": values}
        row["ratio"] = round(row["mypyc-http"]["median"] / row["pure"]["median"], 3)
        rows.append(row)
    return rows


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# mypyc: compiling `http/` (issue 16, item 2)",
        "",
        f"{report['machine']['cpu_model']}, load at start {' '.join(report['machine']['loadavg_at_start'])}; "
        f"{report['rounds']} interleaved rounds x {report['duration']} s; build {report['build_seconds']:.0f} s; "
        "`python benchmarks/mypyc_bench.py`.",
        "",
        "| scenario | pure CPU µs/req | compiled CPU µs/req | compiled / pure | per round (pure; compiled) |",
        "|---|--:|--:|--:|---|",
    ]
    for row in report["rows"]:
        rounds = (
            " / ".join(map(str, row["pure"]["per_round"])) + "; " + " / ".join(map(str, row["mypyc-http"]["per_round"]))
        )
        lines.append(
            f"| {row['scenario']} | {row['pure']['median']:.1f} | {row['mypyc-http']['median']:.1f} | "
            f"{row['ratio']:.2f}x | {rounds} |"
        )
    lines += [
        "",
        f"Fast tests of tests/http and tests/worker against the compiled tree: {report['tests']['summary']}",
        "",
    ]
    lines += [f"- {count} x `{error}`" for error, count in report["tests"]["errors"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--server-cpu", type=int, default=1)
    parser.add_argument("--wrk-cpu", type=int, default=0)
    parser.add_argument("--out", type=Path, default=hb.BENCH_DIR / "results")
    args = parser.parse_args(argv)
    hb.check_tools()
    tree = Path(tempfile.mkdtemp(prefix="asynccluster-mypyc-")) / "tree"
    try:
        build_seconds = build(tree)
        tests = test_compiled(tree)
        print(f"compiled tree tests: {tests['summary']}", file=sys.stderr)
        results = measure(tree, args.rounds, args.duration, args.server_cpu, args.wrk_cpu)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=hb.REPO, check=False)
        shutil.rmtree(tree.parent, ignore_errors=True)
    report = {
        "machine": hb.machine_info(args.server_cpu, args.wrk_cpu),
        "versions": hb.versions(),
        "rounds": args.rounds,
        "duration": args.duration,
        "build_seconds": round(build_seconds, 1),
        "tests": tests,
        "rows": summarize(results),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mypyc.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.out / "mypyc.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
