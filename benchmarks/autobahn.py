"""Autobahn|Testsuite against asynccluster's WebSocket server, uvicorn beside it (issue 13).

The fuzzing client of ``autobahntestsuite`` (PyPI; it runs on Python 2.7 only) plays cases
1-13 (framing, pings, fragmentation, UTF-8, close handling, limits, permessage-deflate)
against each server running this module's echo ``app`` on 127.0.0.1, one worker each.
The script installs the suite on first use into ``benchmarks/.autobahn/`` with a Python 2.7
interpreter (``--python2``, default: ``python2.7`` on PATH, e.g. pyenv's), then prints one
row per server (how many cases ended OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED, FAILED)
and writes it to ``benchmarks/results/autobahn.md``; the full HTML report is in
``benchmarks/results/autobahn/``.

    python benchmarks/autobahn.py                          # cases 1-13, both servers (~10-20 min)
    python benchmarks/autobahn.py --cases '1.*,2.*,12.1.*' --servers asynccluster
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SUITE = ROOT / "benchmarks" / ".autobahn"  # the Python 2.7 install of autobahntestsuite
BEHAVIOURS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echo every WebSocket message as it came (text as text, bytes as bytes)."""
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(name: str, port: int) -> list[str]:
    target = "benchmarks.autobahn:app"
    if name == "asynccluster":
        return [sys.executable, "-m", "asynccluster", "run", target, "--workers", "1", "--port", str(port),
                "--no-access-log", "--lifespan", "off"]  # fmt: skip
    return [sys.executable, "-m", "uvicorn", target, "--port", str(port), "--no-access-log", "--lifespan", "off",
            "--ws", "websockets"]  # fmt: skip


def wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on port {port} after {timeout} s")


SITE = SUITE / "lib" / "python2.7" / "site-packages"
# wstest's entry, with the install's site-packages added as a site dir (its .pth files make
# the zope namespace package importable, which PYTHONPATH alone does not).
WSTEST = f"import site, sys; site.addsitedir({str(SITE)!r}); from autobahntestsuite.wstest import run; sys.exit(run())"


def default_python2() -> str:
    """pyenv's 2.7 (its shim needs a selected version), else python2.7 on PATH."""
    pyenv = sorted(Path.home().glob(".pyenv/versions/2.7*/bin/python2.7"))
    return str(pyenv[-1]) if pyenv else shutil.which("python2.7") or "python2.7"


def ensure_suite(python2: str) -> None:
    """Install autobahntestsuite for Python 2.7 into SUITE (once)."""
    if (SUITE / "bin" / "wstest").exists():
        return
    env = {**os.environ, "PYTHONPATH": str(SITE)}
    pip = [python2, "-m", "pip", "install", "--prefix", str(SUITE), "--no-warn-script-location"]
    subprocess.run([*pip, "setuptools<45", "wheel<0.38"], check=True, env=env)  # 2.7 has none by default
    subprocess.run([*pip, "autobahntestsuite"], check=True, env=env)


def run_suite(python2: str, servers: dict[str, int], cases: list[str], outdir: Path) -> None:
    spec = {
        "outdir": str(outdir),
        "servers": [{"agent": name, "url": f"ws://127.0.0.1:{port}"} for name, port in servers.items()],
        "cases": cases,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    spec_file = outdir / "fuzzingclient.json"
    spec_file.write_text(json.dumps(spec, indent=2))
    command = [python2, "-c", WSTEST, "-m", "fuzzingclient", "-s", str(spec_file)]
    subprocess.run(command, check=True, cwd=outdir)


def summarise(outdir: Path) -> dict[str, Counter[str]]:
    index = json.loads((outdir / "index.json").read_text())
    return {agent: Counter(result["behavior"] for result in cases.values()) for agent, cases in index.items()}


def table(summary: dict[str, Counter[str]], cases: list[str]) -> str:
    shown = ", ".join(cases) if len(cases) <= 14 else ", ".join(cases[:12]) + f", ... ({len(cases)} patterns)"
    lines = [
        f"Autobahn|Testsuite fuzzingclient, cases {shown} (`python benchmarks/autobahn.py`)",
        "",
        "| server | cases | " + " | ".join(BEHAVIOURS) + " |",
        "|---|---|" + "---|" * len(BEHAVIOURS),
    ]
    for agent, counts in summary.items():
        cells = " | ".join(str(counts.get(kind, 0)) for kind in BEHAVIOURS)
        lines.append(f"| {agent} | {sum(counts.values())} | {cells} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="asynccluster,uvicorn")
    parser.add_argument("--cases", default=",".join(f"{n}.*" for n in range(1, 14)))
    parser.add_argument("--python2", default=default_python2())
    parser.add_argument("--report-only", action="store_true", help="only re-render the last run's table")
    args = parser.parse_args()
    if args.report_only:
        text = table(summarise(RESULTS / "autobahn"), args.cases.split(","))
        (RESULTS / "autobahn.md").write_text(text)
        print(text)
        return 0
    ensure_suite(args.python2)
    cases = args.cases.split(",")
    outdir = RESULTS / "autobahn"
    outdir.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    servers: dict[str, int] = {}
    try:
        for name in args.servers.split(","):
            port = free_port()
            log = open(outdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
            processes.append(subprocess.Popen(server_command(name, port), cwd=ROOT, stdout=log, stderr=log))
            wait_listening(port)
            servers[name] = port
        run_suite(args.python2, servers, cases, outdir)
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
    text = table(summarise(outdir), cases)
    (RESULTS / "autobahn.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
