"""What to say about a command-line flag, value or command we do not have (issue 8 item 9).

argparse would either guess (prefix matching: ``--reload`` read as ``--reload-batch``) or
answer a bare "unrecognized arguments". The CLI turns prefix matching off and asks
:func:`advice` instead: uvicorn's and gunicorn's flags get what to use here (or "not supported
yet"), from one table; anything else gets the closest flags we do have. A value outside a flag's
choices (uvicorn's ``--http httptools``) and a misspelt command (``stauts``) get the same kind of
answer from :func:`choice_advice` (issue 10, newcomer trial).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection

_TLS = "use --ssl-min-version 1.2|1.3 (the highest version both sides support is negotiated)"
_BIND = "use --host HOST --port PORT (or --uds PATH, --fd N)"
_LOG_FILE = "use --log-file FILE (the access log goes to the same log; --no-access-log turns it off)"
_USER = "not supported: start asynccluster as that user (e.g. systemd's User=/Group=)"

# uvicorn's and gunicorn's flags we do not have, with what to do instead. A flag that becomes
# a real setting must leave this table (tests/test_cli_flags.py checks that none overlaps).
FOREIGN_FLAGS: dict[str, str] = {
    # uvicorn
    "--ssl-version": _TLS,
    "--ws": "not needed: the WebSocket server is built in",
    "--interface": "not needed: ASGI 3 and ASGI 2 apps are told apart automatically (WSGI is not supported)",
    "--log-config": "not supported yet: use --log-level, --log-format text|json and --log-file",
    "--use-colors": "not supported: log lines are never colored",
    "--no-use-colors": "not needed: log lines are never colored",
    "--header": "not supported yet (extra default response headers); set them in the app",
    "--limit-max-requests": "use --max-requests N (per worker; the worker is replaced without downtime)",
    "--limit-max-requests-jitter": "use --max-requests-jitter N",
    "--timeout-graceful-shutdown": "use --graceful-timeout SECONDS",
    "--timeout-worker-healthcheck": "use --timeout SECONDS (heartbeat deadline of a worker)",
    "--h11-max-incomplete-event-size": "use --limit-request-header-size BYTES",
    # gunicorn
    "-b": _BIND,
    "--bind": _BIND,
    "-w": "use --workers N (or --workers auto: one per CPU)",
    "-k": "not needed: every worker runs asynccluster's own ASGI server",
    "--worker-class": "not needed: every worker runs asynccluster's own ASGI server",
    "--threads": "not supported: each worker is one asyncio event loop; use --workers",
    "--worker-connections": "use --limit-concurrency N",
    "-t": "use --timeout SECONDS",
    "--keep-alive": "use --timeout-keep-alive SECONDS",
    "--limit-request-field_size": "use --limit-request-header-size BYTES",
    "--limit-request-field-size": "use --limit-request-header-size BYTES",
    "--preload-app": "use --preload (the app is imported once in a helper process the workers are forked from)",
    "-D": "use `asynccluster start APP ...` (the same settings, in the background), or a supervisor (systemd)",
    "--daemon": "use `asynccluster start APP ...` (the same settings, in the background), or a supervisor (systemd)",
    "-p": "not supported yet: `asynccluster ls` lists the running clusters",
    "--pid": "not supported yet: `asynccluster ls` lists the running clusters",
    "-u": _USER,
    "--user": _USER,
    "-g": _USER,
    "--group": _USER,
    "--umask": "not supported: set it in the environment that starts asynccluster",
    "--chdir": "use --app-dir DIR (added to sys.path), or start from that directory",
    "-e": "not supported: set environment variables before starting",
    "--env": "not supported: set environment variables before starting",
    "-c": "use --config FILE",
    "-n": "use --name NAME",
    "--access-logfile": _LOG_FILE,
    "--error-logfile": _LOG_FILE,
    "--access-logformat": "use --access-log-format FORMAT",
    "--capture-output": "not needed: the workers' stdout and stderr are always captured into the log",
    "--statsd-host": "not supported: metrics are served for Prometheus at --admin HOST:PORT (/metrics)",
    "--proxy-protocol": "not supported yet",
    "--certfile": _TLS,
    "--keyfile": _TLS,
    "--ca-certs": _TLS,
    "--check-config": "use --print-config",
    "--worker-tmp-dir": "not needed: workers prove they are alive with heartbeats, not a temporary file",
    "--reuse-port": "not needed: every worker slot has its own SO_REUSEPORT socket (see --listener)",
    "--paste": "not supported: asynccluster runs ASGI apps",
    # tiangolo/uvicorn-gunicorn images
    "--workers-per-core": "use --workers auto (one per CPU) or --workers N",
}


def flag_of(arg: str) -> str:
    """The flag an unrecognized argument names: ``--bind=x`` -> ``--bind``, ``-w4`` -> ``-w``."""
    if arg.startswith("--"):
        return arg.partition("=")[0]
    return arg[:2]


def advice(arg: str, known: Collection[str], top_level: Collection[str] = (), prog: str = "asynccluster") -> str:
    """One line about an argument the parser did not recognize; ``known``: its real flags;
    ``top_level``: the flags of the command ``prog`` itself, said so rather than matched."""
    flag = flag_of(arg)
    if flag in top_level and flag not in known:
        return top_level_advice(flag, prog)
    hint = FOREIGN_FLAGS.get(flag)
    if hint is not None and flag not in known:
        return f"unknown option {flag}: {hint}"
    if not arg.startswith("-") or arg == "-":
        return f"unexpected argument {arg!r}"
    close = difflib.get_close_matches(flag, [name for name in known if name.startswith("--")], n=2, cutoff=0.6)
    if close:
        return f"unknown option {flag}: did you mean {' or '.join(close)}?"
    return f"unknown option {flag} (see --help)"


# uvicorn's values of flags we share, with what to do instead (the value is refused: argparse
# choices). uvicorn's --ws has no counterpart at all: FOREIGN_FLAGS above.
FOREIGN_VALUES: dict[tuple[str, str], str] = {
    ("--http", "httptools"): "HTTP/1.1 is always parsed by httptools here: use --http 1.1 (or auto)",
    ("--http", "h11"): "not available: HTTP/1.1 is always parsed by httptools; use --http 1.1 (or auto)",
    ("--loop", "none"): "not supported: each worker sets up its own event loop; use --loop auto, uvloop or asyncio",
}


def top_level_advice(flag: str, prog: str) -> str:
    """A flag of the command itself given after a subcommand (`asynccluster run --version`)."""
    return f"{flag} is a top-level flag: {prog} {flag}"


def choice_advice(flag: str | None, value: str, choices: Collection[str]) -> str:
    """One line about ``value`` outside ``choices``: of the option ``flag``, or, with ``flag``
    None, of the subcommands (``asynccluster stauts`` -> did you mean 'status'?)."""
    hint = FOREIGN_VALUES.get((flag, value)) if flag else None
    head = f"unknown command {value!r}" if flag is None else f"argument {flag}: invalid choice: {value!r}"
    if hint is not None:
        return f"{head}: {hint}"
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    if close:
        return f"{head}: did you mean {close[0]!r}?"
    return f"{head} (choose from {', '.join(map(repr, choices))})"
