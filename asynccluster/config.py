"""Config: every setting of asynccluster, declared once.

Each field of :class:`Config` carries its default, its type (a parser from text), its help
text and its group. Everything else is derived from that declaration:

- the CLI flag ``--field-name`` (cli/parser.py builds argparse from :func:`settings`),
- the environment variable ``ASYNCCLUSTER_FIELD_NAME``,
- the config-file key ``field_name`` or ``field-name`` (``[tool.asynccluster]`` in
  pyproject.toml, or a ``--config FILE.toml``),
- the settings table in docs/settings.md (``python -m asynccluster.docs``).

Precedence: CLI > environment > config file > default (issue 5). ``load_config`` returns
the effective Config and, for ``--print-config``, where each value came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asynccluster.settingtypes import (
    choice,
    non_negative_float,
    non_negative_int,
    parse_access_log_format,
    parse_app,
    parse_bool,
    parse_cron,
    parse_duration,
    parse_fd,
    parse_host_port,
    parse_list,
    parse_port,
    parse_size,
    parse_workers,
    positive_float,
    positive_int,
)

ENV_PREFIX = "ASYNCCLUSTER_"


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message says which and why."""


# ---------------------------------------------------------------- the declaration helper


def setting(
    default: Any,
    help: str,
    *,
    parse: Callable[[str], Any] = str,
    group: str = "general",
    metavar: str | None = None,
    positional: bool = False,
) -> Any:
    """Declare one setting. The field name gives the flag, env var and file key."""
    return field(
        default=default,
        metadata={
            "help": help,
            "parse": parse,
            "group": group,
            "metavar": metavar,
            "positional": positional,
        },
    )


# ---------------------------------------------------------------- the settings


@dataclass(frozen=True)
class Config:
    # Application
    app: str = setting(
        "",
        "The ASGI app as 'module:attribute' (e.g. examples.hello:app).",
        parse=parse_app,
        group="application",
        positional=True,
        metavar="APP",
    )
    factory: bool = setting(
        False,
        "Treat APP as a factory: call it with no arguments to get the app.",
        parse=parse_bool,
        group="application",
    )
    app_dir: str = setting(".", "Directory added to sys.path before importing APP.", group="application")
    preload: bool = setting(
        False,
        "Import APP once in a helper process and fork the workers from it: respawn in milliseconds, "
        "the app's memory shared copy-on-write. A reload starts a new helper. Open connections, "
        "threads and event loops in lifespan startup, not at import.",
        parse=parse_bool,
        group="application",
    )
    lifespan: str = setting(
        "auto",
        "Lifespan protocol: 'auto' runs it if the app supports it, 'on' requires it, 'off' skips it.",
        parse=choice("auto", "on", "off"),
        group="application",
    )
    root_path: str = setting("", "ASGI root_path, for apps mounted below a path prefix.", group="application")
    name: str = setting("", "Cluster name for the control commands (default: derived from APP).", group="application")
    env_file: str = setting(
        "",
        "Load environment variables for the app from this dotenv file (python-dotenv) before the workers "
        "start; variables already set win.",
        group="application",
        metavar="FILE",
    )

    # Cluster
    workers: int | str = setting(
        1,
        "Number of worker processes, or 'auto' (CPUs usable by this process: affinity and cgroup quota). "
        "Default: $WEB_CONCURRENCY, else 1.",
        parse=parse_workers,
        group="cluster",
        metavar="N|auto",
    )
    listener: str = setting(
        "auto",
        "'reuseport': one SO_REUSEPORT socket per worker slot (Linux); 'shared': one socket for all; "
        "'auto': reuseport where the OS balances it, else shared.",
        parse=choice("auto", "reuseport", "shared"),
        group="cluster",
    )
    timeout: float = setting(
        30.0,
        "Seconds a worker's heartbeat may be late before its stacks are dumped and it is replaced.",
        parse=positive_float,
        group="cluster",
    )
    graceful_timeout: float = setting(
        30.0,
        "Seconds a stopping worker gets to finish in-flight requests before it is killed.",
        parse=non_negative_float,
        group="cluster",
    )
    shutdown_delay: float = setting(
        0.0,
        "Seconds between SIGTERM and the drain: /readyz fails at once, the workers keep serving "
        "(time for a load balancer or Kubernetes to stop routing); a second signal skips it.",
        parse=non_negative_float,
        group="cluster",
    )
    ready_timeout: float = setting(
        60.0,
        "Seconds a new worker gets to become ready (import + lifespan startup).",
        parse=positive_float,
        group="cluster",
    )
    reload: bool = setting(
        False,
        "Development: watch the code (watchfiles) and do a rolling reload when it changes; a change "
        "that does not compile is reported and skipped.",
        parse=parse_bool,
        group="cluster",
    )
    reload_dir: tuple[str, ...] = setting(
        (), "Comma-separated directories --reload watches (default: --app-dir).", parse=parse_list, group="cluster"
    )
    reload_include: tuple[str, ...] = setting(
        ("*.py",), "Comma-separated glob patterns of the files --reload watches.", parse=parse_list, group="cluster"
    )
    reload_exclude: tuple[str, ...] = setting(
        (".*", ".py[cod]", ".sw.*", "~*"),
        "Comma-separated glob patterns of files --reload ignores.",
        parse=parse_list,
        group="cluster",
    )
    reload_delay: float = setting(
        0.25,
        "Seconds of quiet --reload waits for after a change, so that saving several files is one reload.",
        parse=non_negative_float,
        group="cluster",
    )
    reload_batch: int = setting(
        1, "Workers replaced at a time during a rolling reload.", parse=positive_int, group="cluster"
    )
    max_requests: int = setting(
        0, "Recycle a worker after this many requests (0: never).", parse=non_negative_int, group="cluster"
    )
    max_requests_jitter: int = setting(
        0,
        "Random extra requests (0..N) added per worker to max_requests, to spread recycles.",
        parse=non_negative_int,
        group="cluster",
    )
    max_lifetime: float = setting(
        0.0, "Recycle a worker after this many seconds (0: never).", parse=non_negative_float, group="cluster"
    )
    max_lifetime_jitter: float = setting(
        0.0, "Random extra seconds (0..N) added per worker to max_lifetime.", parse=non_negative_float, group="cluster"
    )
    max_memory: int = setting(
        0, "Recycle a worker whose RSS exceeds this size, e.g. 512M (0: never).", parse=parse_size, group="cluster"
    )
    restart_cron: str = setting(
        "",
        "Rolling restart of every worker on this cron schedule, e.g. '0 3 * * *' (local time; like pm2's "
        "cron_restart).",
        parse=parse_cron,
        group="cluster",
        metavar="CRON",
    )
    max_workers: int = setting(
        0,
        "Most workers --workers and 'scale' may ask for; more is refused (0: 4 x usable CPUs, at least 16).",
        parse=non_negative_int,
        group="cluster",
    )

    # Network
    host: str = setting("127.0.0.1", "Address to bind.", group="network")
    port: int = setting(8000, "Port to bind (0: pick a free port and print it).", parse=parse_port, group="network")
    uds: str = setting("", "Bind a Unix domain socket at this path instead of host:port.", group="network")
    fd: int = setting(
        -1, "Serve an already-bound socket inherited as this file descriptor.", parse=parse_fd, group="network"
    )
    backlog: int = setting(2048, "listen() backlog of each listening socket.", parse=positive_int, group="network")

    # HTTP
    timeout_keep_alive: float = setting(
        5.0, "Seconds an idle keep-alive connection is kept open.", parse=positive_float, group="http"
    )
    header_timeout: float = setting(
        10.0,
        "Seconds a client gets to send a request's header section (then 408 and close).",
        parse=positive_float,
        group="http",
    )
    body_timeout: float = setting(
        30.0,
        "Seconds a client may leave between two pieces of a request body it is sending (then 408, "
        "or close if the response has started); time the server itself stops reading does not count.",
        parse=positive_float,
        group="http",
    )
    limit_request_line: int = setting(
        8192, "Longest request line in bytes (longer: 414).", parse=positive_int, group="http"
    )
    limit_request_fields: int = setting(
        100, "Most header fields in a request (more: 431).", parse=positive_int, group="http"
    )
    limit_request_header_size: int = setting(
        32768, "Largest header section in bytes (larger: 431).", parse=parse_size, group="http"
    )
    limit_request_body: int = setting(
        0, "Largest request body in bytes, e.g. 10M (larger: 413; 0: no limit).", parse=parse_size, group="http"
    )
    limit_concurrency: int = setting(
        0,
        "Most open connections per worker (0: no limit); beyond it new connections get 503.",
        parse=non_negative_int,
        group="http",
    )
    limit_pipeline: int = setting(
        64, "Most pipelined requests buffered per connection before reading pauses.", parse=positive_int, group="http"
    )
    server_header: bool = setting(True, "Send a 'server: asynccluster' header.", parse=parse_bool, group="http")
    date_header: bool = setting(True, "Send a 'date' header (refreshed once a second).", parse=parse_bool, group="http")
    pathsend: bool = setting(
        False,
        "Offer apps the ASGI Path Send extension (http.response.pathsend): Starlette's FileResponse "
        "then hands the server the file's path and the worker reads it in 256 KiB pieces, instead of "
        "a thread-pool read per 64 KiB chunk (a 50 KiB file: about 2x less CPU). Off by default: "
        "Starlette's GZipMiddleware does not compress such responses (as with granian).",
        parse=parse_bool,
        group="http",
    )
    proxy_headers: bool = setting(
        True,
        "Use X-Forwarded-For/-Proto and Forwarded to set client and scheme, from trusted peers only.",
        parse=parse_bool,
        group="http",
    )
    forwarded_allow_ips: tuple[str, ...] = setting(
        ("127.0.0.1",),
        "Comma-separated IPs or CIDRs trusted to send proxy headers ('*': all).",
        parse=parse_list,
        group="http",
    )
    http: str = setting(
        "auto",
        "HTTP versions: '1.1' only; '2': HTTP/2 by ALPN over TLS and h2c (prior knowledge) beside HTTP/1.1 on "
        "plaintext; 'auto': HTTP/2 by ALPN over TLS if the h2 package is installed. HTTP/2 needs "
        "pip install 'asynccluster[http2]'.",
        parse=choice("1.1", "2", "auto"),
        group="http",
    )
    loop: str = setting(
        "auto",
        "Event loop: 'uvloop', 'asyncio', or 'auto' (uvloop if installed).",
        parse=choice("auto", "uvloop", "asyncio"),
        group="http",
    )

    # TLS (issue 13): HTTPS when --ssl-certfile is set. Names as uvicorn's.
    ssl_certfile: str = setting(
        "",
        "PEM certificate chain: serve HTTPS (re-read at each worker start, so a reload picks up "
        "a renewed certificate).",
        group="tls",
        metavar="FILE",
    )
    ssl_keyfile: str = setting("", "PEM private key (default: in --ssl-certfile).", group="tls", metavar="FILE")
    ssl_keyfile_password: str = setting("", "Password of an encrypted --ssl-keyfile.", group="tls")
    ssl_ca_certs: str = setting(
        "", "PEM CA certificates that client certificates are verified against.", group="tls", metavar="FILE"
    )
    ssl_cert_reqs: str = setting(
        "none",
        "Client certificates: 'none' (not asked), 'optional' (verified if sent), 'required' "
        "(uvicorn's 0, 1, 2 work too).",
        parse=choice("none", "optional", "required", "0", "1", "2"),
        group="tls",
    )
    ssl_ciphers: str = setting("", "OpenSSL cipher list for TLS 1.2 (default: OpenSSL's secure defaults).", group="tls")
    ssl_min_version: str = setting("1.2", "Lowest TLS version accepted.", parse=choice("1.2", "1.3"), group="tls")
    ssl_handshake_timeout: float = setting(
        10.0,
        "Seconds a client gets to complete the TLS handshake (then the connection is closed and counted).",
        parse=positive_float,
        group="tls",
    )

    # WebSocket (issue 13). Names and defaults as uvicorn's.
    ws_max_size: int = setting(
        16 * 1024 * 1024,
        "Largest WebSocket message in bytes, e.g. 16M, after decompression (larger: close 1009).",
        parse=parse_size,
        group="websocket",
    )
    ws_max_queue: int = setting(
        32,
        "WebSocket messages buffered for the app before the server stops reading from that client.",
        parse=positive_int,
        group="websocket",
    )
    ws_ping_interval: float = setting(
        20.0,
        "Seconds between server pings on an open WebSocket (0: no pings).",
        parse=non_negative_float,
        group="websocket",
    )
    ws_ping_timeout: float = setting(
        20.0,
        "Seconds a client gets to answer a ping; then the connection is closed (0: never).",
        parse=non_negative_float,
        group="websocket",
    )
    ws_per_message_deflate: bool = setting(
        True,
        "Accept permessage-deflate compression (RFC 7692) from WebSocket clients that offer it.",
        parse=parse_bool,
        group="websocket",
    )
    ws_drain_grace: float = setting(
        1.0,
        "Seconds open WebSockets keep working once a worker drains (reload, stop); then they are "
        "closed with 1012 (service restart) and the app gets websocket.disconnect.",
        parse=non_negative_float,
        group="websocket",
    )

    # Logging
    log_level: str = setting(
        "info", "Log level.", parse=choice("critical", "error", "warning", "info", "debug", "trace"), group="logging"
    )
    log_file: str = setting(
        "",
        "Also write the log (every worker's lines, prints included) to this file; reopened on SIGUSR1.",
        group="logging",
    )
    log_max_size: int = setting(
        0,
        "Rotate the log file when it would pass this size, e.g. 10M (0: never by size).",
        parse=parse_size,
        group="logging",
    )
    log_max_age: float = setting(
        0.0,
        "Rotate the log file when it has been written to this long, e.g. 1d or 12h (0: never by age).",
        parse=parse_duration,
        group="logging",
    )
    log_backups: int = setting(
        5, "Rotated log files kept (FILE.1 newest ... FILE.N oldest).", parse=positive_int, group="logging"
    )
    log_format: str = setting("text", "Log line format.", parse=choice("text", "json"), group="logging")
    access_log: bool = setting(True, "Log one line per request.", parse=parse_bool, group="logging")
    access_log_format: str = setting(
        '%(client)s - "%(method)s %(full_path)s HTTP/%(http_version)s" %(status)d %(bytes)d %(duration_ms).1fms',
        "Access log line; fields: client, method, full_path (path?query), path, query, http_version, status, "
        "bytes, duration_ms, worker. Path and query are percent-quoted.",
        parse=parse_access_log_format,
        group="logging",
    )
    slow_request_threshold: float = setting(
        0.0,
        "Log requests slower than this many milliseconds (with their timing; 'asynccluster slow' lists "
        "them); 0 turns it off. At most 10 such lines per worker per 10 s.",
        parse=non_negative_float,
        group="logging",
        metavar="MS",
    )
    slow_request_stacks: bool = setting(
        False,
        "With --slow-request-threshold: also record the await chain of each slow request while it is still "
        "running (where the time went).",
        parse=parse_bool,
        group="logging",
    )

    # Control and metrics
    admin: str = setting(
        "",
        "Serve /metrics, /livez, /readyz, /status and the live dashboard (/) from the master on HOST:PORT "
        "(off if empty).",
        parse=parse_host_port,
        group="control",
    )
    admin_token: str = setting(
        "",
        "Token the dashboard's actions (reload, scale, restart) must send; generated and logged at start "
        "if empty. Read-only views need none.",
        group="control",
    )
    control_dir: str = setting(
        "",
        "Directory of the control sockets (default: $XDG_RUNTIME_DIR/asynccluster or /tmp/asynccluster-UID).",
        group="control",
    )

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    @property
    def cluster_name(self) -> str:
        """The name used by the control commands: --name, else the app path."""
        if self.name:
            return self.name
        return self.app.replace(":", ".").replace("/", ".") or "asynccluster"


# ---------------------------------------------------------------- introspection


def settings() -> tuple[dataclasses.Field[Any], ...]:
    """The declared settings, in declaration order."""
    return dataclasses.fields(Config)


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_value(name: str, value: Any) -> Any:
    """Turn text (or a TOML/Python value) into the setting's type, or raise ConfigError."""
    fld = _FIELDS.get(name)
    if fld is None:
        raise ConfigError(unknown_key_message(name))
    parser: Callable[[str], Any] = fld.metadata["parse"]
    if isinstance(value, (list, tuple)) and parser is parse_list:
        return tuple(str(item) for item in value)
    if isinstance(value, bool) and parser is parse_bool:
        return value
    try:
        return parser(str(value))
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def unknown_key_message(name: str) -> str:
    close = difflib.get_close_matches(name.replace("-", "_"), _FIELDS.keys(), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown setting {name!r}{hint}"


_FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(Config)}

# ASYNCCLUSTER_* variables that are not settings: set for the app inside a worker, or read by
# the test suite. Any other unknown one is most likely a typo of a setting.
NON_SETTING_ENV = frozenset({"ASYNCCLUSTER_WORKER_ID", "ASYNCCLUSTER_WORKER_INCARNATION", "ASYNCCLUSTER_CONFORMANCE"})


def unknown_env_warnings(env: Mapping[str, str]) -> list[str]:
    """One message per ASYNCCLUSTER_* variable that names no setting (with a close match)."""
    known = {env_name(name) for name in _FIELDS} | NON_SETTING_ENV
    return [
        f"environment variable {key} is ignored: {unknown_key_message(key[len(ENV_PREFIX) :].lower())}"
        for key in sorted(env)
        if key.startswith(ENV_PREFIX) and key not in known
    ]


# ---------------------------------------------------------------- loading with precedence


def read_config_file(path: Path) -> dict[str, Any]:
    """Read settings from a TOML file: a plain file, or [tool.asynccluster] of pyproject.toml."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("asynccluster", {})
    return {key.replace("-", "_"): value for key, value in data.items()}


def find_default_config_file(cwd: Path) -> Path | None:
    """pyproject.toml in the working directory, if it has a [tool.asynccluster] table."""
    candidate = cwd / "pyproject.toml"
    if candidate.is_file() and "[tool.asynccluster]" in candidate.read_text(errors="replace"):
        return candidate
    return None


def load_config(
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> tuple[Config, dict[str, str]]:
    """Merge defaults < file < env < CLI; return the Config and each value's source."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {name: "default" for name in _FIELDS}
    if config_file is not None:
        for key, raw in read_config_file(config_file).items():
            values[key] = parse_value(key, raw)
            sources[key] = f"file {config_file}"
    if "WEB_CONCURRENCY" in env and env_name("workers") not in env:
        # Honoured as a default, like gunicorn and uvicorn (issue 3).
        values["workers"] = parse_value("workers", env["WEB_CONCURRENCY"])
        sources["workers"] = "env WEB_CONCURRENCY"
    for name in _FIELDS:
        if env_name(name) in env:
            values[name] = parse_value(name, env[env_name(name)])
            sources[name] = f"env {env_name(name)}"
    for name, raw in (cli or {}).items():
        if raw is not None:
            values[name] = parse_value(name, raw)
            sources[name] = "cli"
    return Config(**values), sources


def format_settings_table() -> str:
    """The Markdown settings table of docs/settings.md, derived from the declaration."""
    lines = ["| setting | CLI flag | env var | default | description |", "|---|---|---|---|---|"]
    for fld in settings():
        flag = fld.metadata["metavar"] if fld.metadata["positional"] else flag_name(fld.name)
        default = fld.default if fld.default != "" else "(empty)"
        if isinstance(default, tuple):
            default = ",".join(default)
        lines.append(f"| {fld.name} | `{flag}` | `{env_name(fld.name)}` | `{default}` | {fld.metadata['help']} |")
    return "\n".join(lines) + "\n"


def config_from_settings(settings: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Config for embedding (``asynccluster.run(app, workers=4)``, ``Cluster(port=0)``): keyword
    settings > environment > ``[tool.asynccluster]`` of ./pyproject.toml > defaults, checked
    like the command line's (an unknown keyword gets a close-match suggestion)."""
    return load_config(cli=settings, env=env, config_file=find_default_config_file(Path.cwd()))[0]
