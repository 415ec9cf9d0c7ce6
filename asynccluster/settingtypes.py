"""The types of settings: parsers from text (CLI, env, file) to values, with messages that
say what is expected. Config (config.py) names one of these for each setting it declares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def _number(convert: Callable[[str], Any], minimum: float, what: str) -> Callable[[str], Any]:
    """A parser for numbers >= ``minimum`` whose error says what is expected."""

    def parse(text: str) -> Any:
        try:
            value = convert(text.strip())
        except ValueError:
            raise ValueError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise ValueError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = f"parse_{what.replace(' ', '_')}"
    return parse


positive_int = _number(int, 1, "a whole number >= 1")
non_negative_int = _number(int, 0, "a whole number >= 0")
non_negative_float = _number(float, 0.0, "a number of seconds >= 0")


def positive_float(text: str) -> float:
    value: float = non_negative_float(text)
    if value == 0:
        raise ValueError(f"expected a number of seconds > 0, got {text!r}")
    return value


def parse_port(text: str) -> int:
    port: int = non_negative_int(text)
    if port > 65535:
        raise ValueError(f"expected a port from 0 to 65535, got {text!r}")
    return port


def parse_fd(text: str) -> int:
    fd = int(_number(int, -1, "a file descriptor number (-1: none)")(text))
    return fd


def parse_size(text: str) -> int:
    """Bytes, with an optional K/M/G suffix (binary units, like pm2's max_memory_restart)."""
    cleaned = text.strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    scale = units.get(cleaned[-1:], 1)
    number = cleaned[:-1] if scale > 1 else cleaned
    try:
        value = int(float(number) * scale)
    except ValueError:
        raise ValueError(f"expected a size in bytes, optionally with K, M or G (e.g. 512M), got {text!r}") from None
    if value < 0:
        raise ValueError(f"expected a size >= 0, got {text!r}")
    return value


DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str) -> float:
    """Seconds, with an optional unit: ``90``, ``90s``, ``10m``, ``2h``, ``1d``, ``1w`` (issue 11)."""
    cleaned = text.strip().lower()
    scale = DURATION_UNITS.get(cleaned[-1:], 0.0)
    number = cleaned[:-1] if scale else cleaned
    try:
        value = float(number) * (scale or 1.0)
    except ValueError:
        raise ValueError(f"expected a duration like 90s, 10m, 2h or 1d, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"expected a duration >= 0, got {text!r}")
    return value


def parse_cron(text: str) -> str:
    """A 5-field cron expression (``0 3 * * *``), checked with the cronsim library; '' for none
    (issue 11: --restart-cron)."""
    cleaned = " ".join(text.split())
    if not cleaned:
        return ""
    from datetime import datetime

    from cronsim import CronSim, CronSimError

    try:
        next(CronSim(cleaned, datetime.now().astimezone()))
    except CronSimError as exc:
        raise ValueError(
            f"expected a 5-field cron expression like '0 3 * * *' (minute hour day month weekday), got {text!r}: {exc}"
        ) from None
    except StopIteration:
        raise ValueError(f"the cron expression {text!r} never matches a date") from None
    return cleaned


def parse_app(text: str) -> str:
    """'module:attribute' (uvicorn's form), checked when settings load: a file path or a
    missing attribute is a usage error (exit 2) before anything is bound or spawned, not an
    import failure in the first worker (newcomer trial)."""
    text = text.strip()
    module, sep, attribute = text.partition(":")
    if sep and module and attribute and "/" not in module and not module.endswith(".py"):
        return text
    if module.endswith(".py") or "/" in module:
        dotted = module.removesuffix(".py").replace("/", ".").strip(".")
        hint = f" (a module, not a file: {dotted}:{attribute or 'app'}; --app-dir adds its directory to the path)"
    elif not sep:
        hint = f" (name the attribute: {text}:app?)"
    else:
        hint = ""
    raise ValueError(f"expected 'module:attribute' like examples.hello:app, got {text!r}{hint}")


def parse_workers(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    count: int = _number(int, 1, "a number of workers >= 1, or 'auto'")(text)
    return count


def parse_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def split_host_port(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT``, ``PORT`` or ``[IPv6]:PORT``."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"expected HOST:PORT, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range")
    return host.strip("[]") or default_host, port


def parse_host_port(text: str) -> str:
    """Validate an optional HOST:PORT at load time (so a typo is a usage error, exit 2)."""
    if text.strip():
        split_host_port(text)
    return text.strip()


# One sample value per access-log field (worker/accesslog.py fills the real ones): a format
# is checked against it when settings load, so a typo is a usage error, not a per-request one.
ACCESS_LOG_SAMPLE: dict[str, Any] = {
    "client": "127.0.0.1:1",
    "method": "GET",
    "full_path": "/",
    "path": "/",
    "query": "",
    "http_version": "1.1",
    "status": 200,
    "bytes": 0,
    "duration_ms": 0.0,
    "worker": "-",
}


def parse_access_log_format(text: str) -> str:
    try:
        text % ACCESS_LOG_SAMPLE
    except KeyError as exc:
        raise ValueError(f"unknown field {exc}; fields: {', '.join(ACCESS_LOG_SAMPLE)}") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a %-format over the access fields: {exc}") from None
    return text


def choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}; got {text!r}")
        return text

    parse.choices = options  # type: ignore[attr-defined]
    return parse
