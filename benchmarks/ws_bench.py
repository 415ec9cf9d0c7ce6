"""WebSocket echo benchmark: asynccluster vs uvicorn vs granian, one worker each (issue 13).

Every server runs this module's echo ``app`` (text messages come back as sent), pinned to one
core (``taskset -c 1``). The load client is this process, pinned to the other core
(``--client-cpu``, default 0): the ``websockets`` library's asyncio client on uvloop, N
connections (``--clients``, default 16), each sending one message and waiting for its echo,
again and again, for a fixed time (``--duration``) and at most ``MAX_ROUND_TRIPS`` times.
Cases: 1 KB and 64 KB JSON-like text messages, without and with permessage-deflate (RFC 7692;
the client offers it with the ``websockets`` defaults: 12-bit windows, context takeover).
Servers are started once and measured in interleaved rounds (round 1: every case x every
server, round 2: the same again, ...), so drift of the shared machine hits every server alike.

Figures per case and server: echoed messages/s, and the server's CPU per echoed message
(user+sys of its whole process tree from /proc/PID/stat before and after the timed window,
divided by the round trips; the /proc and server helpers are ``http_bench``'s), plus the
client's own CPU share: near 100 % means the client, not the server, bounds messages/s.

    python benchmarks/ws_bench.py                  # 3 rounds x 4 s, 3 servers, 4 cases (~3 min)
    python benchmarks/ws_bench.py --quick          # 1 round x 2 s
    python benchmarks/ws_bench.py --servers asynccluster,uvicorn --rounds 5 --clients 32

Writes ``benchmarks/results/ws.json`` and ``ws.md`` (``--out DIR`` to change).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import http_bench as hb  # the shared /proc, process-tree and server start/stop helpers

APP = "ws_bench:app"  # imported by the servers with benchmarks/ on PYTHONPATH (see main)
# Distinct messages per size, sent in turn: with context takeover a message repeated verbatim
# would compress to one back-reference to the previous one and flatter every deflate figure.
POOL = 32
MAX_ROUND_TRIPS = 1_000_000  # per connection and run: the bound besides the duration
OPEN_TIMEOUT = 10.0  # seconds for a WebSocket handshake
REFERENCE = "uvicorn"  # ratios are given against it


# ---------------------------------------------------------------- the echo app (server side)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echo WebSocket messages as they came; HTTP gets http_bench's hello (its readiness check)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "http":
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(hb.EXPECTED_BODY)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": hb.EXPECTED_BODY})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})


# ---------------------------------------------------------------- servers and cases


def _asynccluster(port: str) -> list[str]:
    return [sys.executable, "-m", "asynccluster", "run", APP, "--workers", "1", "--no-access-log",
            "--ws-per-message-deflate", "--host", hb.HOST, "--port", port]  # fmt: skip


def _uvicorn(port: str) -> list[str]:
    # In-process (no --workers), the websockets implementation as the issue asks.
    return [sys.executable, "-m", "uvicorn", APP, "--loop", "uvloop", "--http", "httptools", "--ws", "websockets",
            "--ws-per-message-deflate", "true", "--no-access-log", "--host", hb.HOST, "--port", port]  # fmt: skip


def _granian(port: str) -> list[str]:
    # granian has no permessage-deflate setting; the deflate cases record what it negotiates.
    return [sys.executable, "-m", "granian", "--interface", "asgi", "--workers", "1", "--no-access-log",
            "--host", hb.HOST, "--port", port, APP]  # fmt: skip


SERVERS: dict[str, hb.ServerSpec] = {
    spec.name: spec
    for spec in (
        hb.ServerSpec("asynccluster", _asynccluster, "asynccluster run --workers 1 --ws-per-message-deflate"),
        hb.ServerSpec("uvicorn", _uvicorn, "uvicorn --loop uvloop --http httptools --ws websockets, in-process"),
        hb.ServerSpec("granian", _granian, "granian --interface asgi --workers 1 (no deflate setting)"),
    )
}


@dataclass(frozen=True)
class Case:
    """One message shape: size in bytes (UTF-8 text) and whether the client offers deflate."""

    size: int
    deflate: bool

    @property
    def name(self) -> str:
        return f"{self.size // 1024}KB{'-deflate' if self.deflate else ''}"


CASES = [Case(1024, False), Case(1024, True), Case(65536, False), Case(65536, True)]


def payload(size: int, seed: int) -> str:
    """`size` bytes of JSON-like ASCII text (records of ids, names, scores), the same for a seed.

    Compresses about like real JSON traffic (ratio in the report), unlike random or repeated bytes.
    """
    rng = random.Random(seed)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    records, length = [], 0
    while length < size:
        record = json.dumps({"id": rng.randrange(10**6), "user": rng.choice(words) + str(rng.randrange(1000)),
                             "score": round(rng.random() * 100, 3), "tags": rng.sample(words, 3)})  # fmt: skip
        records.append(record)
        length += len(record) + 1
    return "\n".join(records)[:size]


# ---------------------------------------------------------------- the client


@dataclass
class Run:
    """One timed run of one case against one server."""

    server: str
    case: str
    round: int
    messages: int  # round trips completed: one message in and its echo out
    seconds: float
    server_cpu_seconds: float
    client_cpu_seconds: float
    extensions: str  # Sec-WebSocket-Extensions the server answered ("" = none)

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_us_per_message(self) -> float:
        return self.server_cpu_seconds / self.messages * 1e6


async def _connect(port: int, case: Case, clients: int) -> list[Any]:
    from websockets.asyncio.client import connect

    url = f"ws://{hb.HOST}:{port}/"
    compression = "deflate" if case.deflate else None
    return await asyncio.gather(
        *(
            connect(
                url, compression=compression, proxy=None, max_size=2**20, open_timeout=OPEN_TIMEOUT, ping_interval=None
            )
            for _ in range(clients)
        )
    )


async def _echo_loop(connection: Any, messages: list[str], deadline: float) -> int:
    """Send the messages in turn, wait for each echo, check it; until the deadline or MAX_ROUND_TRIPS.

    Returns the round trips done.
    """
    done = 0
    while done < MAX_ROUND_TRIPS and time.monotonic() < deadline:
        message = messages[done % len(messages)]
        await connection.send(message)
        reply = await connection.recv()
        if reply != message:
            raise RuntimeError(f"echo differs: {len(reply)} bytes back for {len(message)} sent")
        done += 1
    return done


async def _measure(server: hb.RunningServer, case: Case, clients: int, duration: float, round_no: int) -> Run:
    pool = [payload(case.size, seed) for seed in range(POOL)]
    rotations = [pool[i % POOL :] + pool[: i % POOL] for i in range(clients)]  # connections out of step
    connections = await _connect(server.port, case, clients)
    try:
        warm = time.monotonic() + 0.2
        await asyncio.gather(*(_echo_loop(c, m, warm) for c, m in zip(connections, rotations, strict=True)))
        before, client_before, started = hb.tree_cpu(server.process.pid), time.process_time(), time.monotonic()
        counts = await asyncio.gather(
            *(_echo_loop(c, m, started + duration) for c, m in zip(connections, rotations, strict=True))
        )
        seconds, client_cpu = time.monotonic() - started, time.process_time() - client_before
        server_cpu = sum(hb.cpu_delta(before, hb.tree_cpu(server.process.pid)).values())
    finally:
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)
    extensions = connections[0].response.headers.get("Sec-WebSocket-Extensions", "")
    return Run(server.spec.name, case.name, round_no, sum(counts), seconds, server_cpu, client_cpu, extensions)


async def _negotiated(port: int) -> str:
    """What the server answers to a permessage-deflate offer ("" when it declines)."""
    (connection,) = await _connect(port, Case(1024, True), 1)
    await connection.close()
    return str(connection.response.headers.get("Sec-WebSocket-Extensions", ""))


# ---------------------------------------------------------------- rounds and report


async def run_rounds(servers: list[hb.RunningServer], args: argparse.Namespace, notes: dict[str, str]) -> list[Run]:
    """Every case x every server, `args.rounds` times, in interleaved order."""
    for server in servers:
        if not await _negotiated(server.port):
            notes[server.spec.name] = "declines permessage-deflate (no setting for it): deflate cases not run"
    runs = []
    for round_no in range(1, args.rounds + 1):
        for case in CASES:
            for server in servers:
                if case.deflate and server.spec.name in notes:
                    continue
                run = await _measure(server, case, args.clients, args.duration, round_no)
                runs.append(run)
                print(f"   round {round_no} {case.name:<14} {run.server:<13} {run.per_second:>9.0f} msg/s "
                      f"{run.cpu_us_per_message:>8.1f} us/msg  client {run.client_cpu_seconds / run.seconds:.0%}",
                      file=sys.stderr)  # fmt: skip
    return runs


def summarize(runs: list[Run]) -> dict[str, dict[str, dict[str, Any]]]:
    """case -> server -> medians (and spread) over the rounds, with ratios against REFERENCE."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for case in CASES:
        for server in SERVERS:
            mine = [run for run in runs if run.case == case.name and run.server == server]
            if not mine:
                continue
            cpu = [run.cpu_us_per_message for run in mine]
            summary.setdefault(case.name, {})[server] = {
                "messages_per_second": statistics.median(run.per_second for run in mine),
                "cpu_us_per_message": statistics.median(cpu),
                "cpu_us_per_message_min_max": [min(cpu), max(cpu)],
                "server_cpu_share": statistics.median(run.server_cpu_seconds / run.seconds for run in mine),
                "client_cpu_share": statistics.median(run.client_cpu_seconds / run.seconds for run in mine),
                "extensions": mine[0].extensions,
                "rounds": len(mine),
            }
        reference = summary.get(case.name, {}).get(REFERENCE)
        for entry in summary.get(case.name, {}).values():
            entry["cpu_vs_uvicorn"] = (
                entry["cpu_us_per_message"] / reference["cpu_us_per_message"] if reference else None
            )
    return summary


def markdown(report: dict[str, Any]) -> str:
    """The results table and the conditions it was measured under."""
    config, machine = report["config"], report["machine"]
    lines = [
        f"WebSocket echo, {config['clients']} connections each doing send/await-echo round trips, "
        f"{config['rounds']} interleaved rounds x {config['duration']} s per case and server; "
        f"server on core {machine['server_cpu']}, client (`websockets` {report['versions']['websockets']} "
        f"asyncio on uvloop, one process) on core {machine['wrk_cpu']}. {machine['cpu_model']}, "
        f"load average {' '.join(machine['loadavg_at_start'])} at start, "
        f"{' '.join(report['loadavg_at_end'])} at end (`python benchmarks/ws_bench.py`).",
        "",
        "| case | server | messages/s | server CPU µs/message (min-max) | vs uvicorn | server core busy "
        "| client CPU | extension answered |",
        "|---|---|--:|---|--:|--:|--:|---|",
    ]
    lines += [
        _row(case, server, entry) for case, servers in report["summary"].items() for server, entry in servers.items()
    ]
    ratios = "; ".join(
        f"{int(size) // 1024} KB: " + ", ".join(f"{ratio:.1f}x with a {name}" for name, ratio in by_setting.items())
        for size, by_setting in report["compression_ratio"].items()
    )
    lines += [
        "",
        "A message is one round trip: the client's message in and its echo out. Server core busy and client "
        "CPU are CPU seconds / wall seconds of the timed run; when both are well below 100 % neither side "
        "saturates and the shared machine's scheduling bounds messages/s: compare CPU µs/message.",
        f"Payload: {POOL} distinct JSON-like texts per size, sent in turn. zlib level 6 shrinks one alone "
        f"(no context) {ratios}; with context takeover (negotiated here) the wire sizes are smaller still.",
    ]
    lines += [f"- {server}: {note}" for server, note in report["notes"].items()]
    lines += ["", "Versions: " + ", ".join(f"{name} {version}" for name, version in report["versions"].items())]
    return "\n".join(lines) + "\n"


def _row(case: str, server: str, entry: dict[str, Any]) -> str:
    low, high = entry["cpu_us_per_message_min_max"]
    ratio = f"{entry['cpu_vs_uvicorn']:.2f}x" if entry["cpu_vs_uvicorn"] else "-"
    cells = [case, server, f"{entry['messages_per_second']:,.0f}",
             f"{entry['cpu_us_per_message']:.1f} ({low:.1f}-{high:.1f})", ratio,
             f"{entry['server_cpu_share']:.0%}" if "server_cpu_share" in entry else "-",
             f"{entry['client_cpu_share']:.0%}",
             f"`{entry['extensions']}`" if entry["extensions"] else "none"]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def versions() -> dict[str, str]:
    found = hb.versions()
    found.pop("wrk", None)  # not used here
    found["websockets"] = _version("websockets")
    return found


def _version(package: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma list from " + ", ".join(SERVERS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per timed run")
    parser.add_argument("--clients", type=int, default=16, help="concurrent WebSocket connections")
    parser.add_argument("--server-cpu", type=int, default=1)
    parser.add_argument("--client-cpu", type=int, default=0)
    parser.add_argument("--out", type=Path, default=hb.BENCH_DIR / "results")
    parser.add_argument("--quick", action="store_true", help="1 round x 2 s")
    parser.add_argument("--report-only", action="store_true", help="re-render ws.md from the last ws.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 2.0
    unknown = set(args.servers.split(",")) - set(SERVERS)
    if unknown:
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    return args


def compression_ratios(size: int) -> dict[str, float]:
    """Mean size / deflated size of one message alone, with the windows the servers use."""
    settings = {"15-bit window, memLevel 8 (uvicorn)": (15, 8), "12-bit window, memLevel 5 (asynccluster)": (12, 5)}
    ratios = {}
    for name, (window_bits, mem_level) in settings.items():
        sizes = []
        for seed in range(POOL):
            compressor = zlib.compressobj(6, zlib.DEFLATED, -window_bits, mem_level)
            sizes.append(len(compressor.compress(payload(size, seed).encode()) + compressor.flush()))
        ratios[name] = size / statistics.mean(sizes)
    return ratios


def measure_all(args: argparse.Namespace) -> dict[str, Any]:
    """Start the servers, run the rounds, stop the servers; the report (the shape of ws.json)."""
    import uvloop

    # The servers import APP from benchmarks/; http_bench.start_server passes PYTHONPATH on.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hb.BENCH_DIR), os.environ.get("PYTHONPATH")]))
    os.sched_setaffinity(0, {args.client_cpu})
    machine = hb.machine_info(args.server_cpu, args.client_cpu)
    notes: dict[str, str] = {}
    started: list[hb.RunningServer] = []
    with tempfile.TemporaryDirectory(prefix="ws_bench-") as log_dir:
        try:
            for name in args.servers.split(","):
                started.append(hb.start_server(SERVERS[name], args.server_cpu, Path(log_dir)))
                hb.wait_ready(started[-1])  # ServerFailed (with the log's tail) ends the run
            runs = uvloop.run(run_rounds(started, args, notes))
        finally:
            for server in started:
                hb.stop_server(server)
    return {
        "config": {
            "clients": args.clients,
            "rounds": args.rounds,
            "duration": args.duration,
            "max_round_trips_per_connection": MAX_ROUND_TRIPS,
        },
        "machine": machine,
        "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3],
        "versions": versions(),
        "servers": {name: SERVERS[name].description for name in args.servers.split(",")},
        "compression_ratio": {size: compression_ratios(size) for size in (1024, 65536)},
        "notes": notes,
        "runs": [asdict(run) for run in runs],
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = json.loads((args.out / "ws.json").read_text()) if args.report_only else measure_all(args)
    report["summary"] = summarize([Run(**run) for run in report["runs"]])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ws.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.out / "ws.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
