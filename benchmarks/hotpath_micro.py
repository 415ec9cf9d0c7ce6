"""The server's per-request CPU, in-process: HttpProtocol fed requests by a fake transport.

No sockets, no client, no other process: one connection's ``data_received`` is called with
``--pipe`` requests at a time (1: keep-alive, one request per read; 16: pipelined) and the loop
runs until every response is out. What is measured is the worker's own path (parser, scope,
Cycle, receive/send, writer, connection state) plus the app and asyncio's loop, which are the
same for the trees being compared. Issue 10 guarded the redesign with it: +1.5% instructions
per keep-alive request and +0.4% pipelined against aac3598, the commit before.

Three ways to run it (``--tree DIR`` runs another checkout's package, e.g. a ``git worktree``
of the commit before a change; the app is always this file's):

- wall clock (noisy on a shared machine)::

      python benchmarks/hotpath_micro.py --pipe 1 --requests 200000

- instructions per request under callgrind (deterministic: the figure to compare). It runs
  ``valgrind --tool=callgrind`` twice side by side, with ``--requests`` and 4x as many, and
  divides the difference, so interpreter start-up and warm-up cancel out::

      python benchmarks/hotpath_micro.py --callgrind --pipe 1 --requests 2000
      python benchmarks/hotpath_micro.py --callgrind --pipe 16 --requests 4000 --tree /tmp/before

  (by hand: ``valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out python
  benchmarks/hotpath_micro.py --requests N --repeat 1`` for two N, and subtract the
  ``Collected`` figures; ``callgrind_annotate /tmp/cg.out`` shows where in C the time goes.)

- Python calls per request, from cProfile (which functions run how often)::

      python benchmarks/hotpath_micro.py --profile --requests 10000

``--app fastapi`` serves benchmarks/realapps.py's FastAPI app (``GET /json``) instead of the
plain hello app.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class FakeTransport:
    """Just enough of asyncio.Transport for HttpProtocol: counts writes, never blocks."""

    def __init__(self) -> None:
        self.writes = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.writes += 1

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
        }
    )
    await send({"type": "http.response.body", "body": b"Hello, world!"})


def load_app(name: str) -> tuple[Any, bytes]:
    """The app and the request it is sent (wrk's GET, as http_bench.py sends it)."""
    if name == "hello":
        return hello, b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\n\r\n"
    sys.path.insert(0, str(HERE))
    import realapps  # this checkout's apps, whichever tree serves them

    return realapps.fastapi_app, b"GET /json HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\n\r\n"


async def serve(app: Any, request: bytes, requests: int, pipe: int, warmup: int) -> float:
    """Feed ``requests`` requests, ``pipe`` per read; the CPU seconds per request after warm-up."""
    from asynccluster.config import Config
    from asynccluster.observe.stats import WorkerStats
    from asynccluster.worker.protocol import HttpProtocol
    from asynccluster.worker.state import ServerState

    state = ServerState(Config(access_log=False, lifespan="off"), app, WorkerStats(), asyncio.get_running_loop())
    protocol = HttpProtocol(state)
    transport = FakeTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    data = request * pipe
    sleep = asyncio.sleep

    async def batches(count: int) -> None:
        for _ in range(count):
            protocol.data_received(data)
            while protocol.pipeline:  # an app that suspends finishes on later loop passes
                await sleep(0)

    await batches(warmup)
    started = time.process_time()
    await batches(requests // pipe)
    elapsed = time.process_time() - started
    assert transport.writes >= (warmup + requests // pipe), transport.writes
    return elapsed / max(requests, 1)


def run_wall(args: argparse.Namespace) -> None:
    app, request = load_app(args.app)
    best = min(asyncio.run(serve(app, request, args.requests, args.pipe, args.warmup)) for _ in range(args.repeat))
    print(f"{best * 1e6:.2f} us/request (best of {args.repeat})")


def run_profile(args: argparse.Namespace) -> None:
    """cProfile over the measured part only: calls per request, most frequent first."""
    app, request = load_app(args.app)
    profiler = cProfile.Profile()

    async def profiled() -> None:
        await serve(app, request, 0, args.pipe, args.warmup)  # warm-up outside the profile
        profiler.enable()
        await serve(app, request, args.requests, args.pipe, 0)
        profiler.disable()

    asyncio.run(profiled())
    stats: Any = pstats.Stats(profiler).stats
    rows = sorted(stats.items(), key=lambda item: -item[1][1])
    for (filename, _line, name), (_cc, calls, _tt, _ct, _callers) in rows[: args.top]:
        per_request = calls / args.requests
        if per_request >= 0.01:
            print(f"{per_request:7.2f}  {Path(filename).name}:{name}")


def callgrind_command(args: argparse.Namespace, requests: int, out_file: str) -> list[str]:
    """This script under callgrind, measuring ``requests`` requests once."""
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out_file}",
        sys.executable,
        __file__,
        "--app",
        args.app,
        "--pipe",
        str(args.pipe),
        "--requests",
        str(requests),
        "--warmup",
        str(args.warmup),
        "--repeat",
        "1",
    ]
    return [*command, "--tree", args.tree] if args.tree else command


def run_callgrind(args: argparse.Namespace) -> None:
    """Two runs side by side (``--requests`` and 4x as many); the difference per request."""
    small, large = args.requests, 4 * args.requests
    env = dict(os.environ, PYTHONHASHSEED="0")  # the same dict layouts in both runs
    with tempfile.TemporaryDirectory() as tmp:
        runs = [
            subprocess.Popen(
                callgrind_command(args, count, f"{tmp}/cg.{count}"),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for count in (small, large)
        ]
        outputs = [run.communicate()[1] for run in runs]
    counts = []
    for run, stderr in zip(runs, outputs, strict=True):
        match = re.search(r"Collected : (\d+)", stderr)
        if run.returncode != 0 or match is None:
            raise SystemExit(f"callgrind failed ({run.returncode}):\n{stderr[-2000:]}")
        counts.append(int(match.group(1)))
    per_request = (counts[1] - counts[0]) / (large - small)
    tree = args.tree or "this checkout"
    print(f"{per_request:,.0f} instructions/request ({args.app}, pipe {args.pipe}, {tree})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--app", choices=("hello", "fastapi"), default="hello")
    parser.add_argument("--pipe", type=int, default=1, help="requests per read (1: keep-alive)")
    parser.add_argument("--requests", type=int, default=200_000, help="requests measured")
    parser.add_argument("--warmup", type=int, default=2000, help="reads before measuring")
    parser.add_argument("--repeat", type=int, default=5, help="wall clock: runs, best kept")
    parser.add_argument("--tree", help="a checkout whose asynccluster package is measured")
    parser.add_argument("--callgrind", action="store_true", help="instructions/request (valgrind)")
    parser.add_argument("--profile", action="store_true", help="Python calls per request (cProfile)")
    parser.add_argument("--top", type=int, default=60, help="--profile: rows shown")
    args = parser.parse_args()
    if args.tree and not args.callgrind:
        sys.path.insert(0, args.tree)  # ahead of the installed (editable) package
    if args.callgrind:
        run_callgrind(args)
    elif args.profile:
        run_profile(args)
    else:
        run_wall(args)


if __name__ == "__main__":
    main()
