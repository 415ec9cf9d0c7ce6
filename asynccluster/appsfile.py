"""The apps file: several clusters from one TOML file, like pm2's ecosystem file (issue 11 item 3).

::

    # apps.toml — asynccluster start apps.toml
    [[apps]]
    name = "api"
    app = "myapp.api:app"
    workers = 4
    port = 8001
    env = { DATABASE_URL = "postgres://..." }

    [[apps]]
    name = "admin"
    app = "myapp.admin:app"
    cwd = "services/admin"     # relative to this file's directory
    env-file = ".env"          # relative to cwd; loaded by the cluster (--env-file)
    port = 8002

Each ``[[apps]]`` table is one cluster: ``app`` (required), ``name`` (default: from the app),
``cwd`` (default: the file's directory), ``env`` (a table of strings set for that cluster), and
any setting of ``asynccluster run`` under its file key (``workers``, ``max-requests``...). The
settings are the one ``Config`` declaration's, checked with the same messages as the CLI and
the config file (an unknown key names the closest setting); the environment's
``ASYNCCLUSTER_*`` variables apply under each app's own, as for ``run``. Names must be unique.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asynccluster.config import Config, ConfigError, load_config, parse_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

OWN_KEYS = frozenset(("cwd", "env"))
MAX_APPS = 64


@dataclass
class AppEntry:
    """One ``[[apps]]`` table, checked: its Config, the settings it gives, cwd and env."""

    config: Config
    values: dict[str, Any]
    cwd: str
    env: dict[str, str]


def looks_like_apps_file(argument: str | None) -> bool:
    return bool(argument) and str(argument).endswith(".toml") and os.path.isfile(str(argument))


def read_apps_file(path: Path, environ: dict[str, str] | None = None) -> list[AppEntry]:
    """Every app of the file, checked; ConfigError names the file, the app and what is wrong."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read apps file {path}: {exc}") from None
    tables = data.get("apps")
    extra = sorted(set(data) - {"apps"})
    if extra:
        raise ConfigError(f"{path}: unknown top-level key {extra[0]!r}; the apps are [[apps]] tables")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{path}: no [[apps]] tables (each one is a cluster: app = 'module:attr', ...)")
    if len(tables) > MAX_APPS:
        raise ConfigError(f"{path}: {len(tables)} apps; at most {MAX_APPS}")
    base = path.resolve().parent
    entries = [read_app(table, index, path, base, environ) for index, table in enumerate(tables, 1)]
    names = [entry.config.cluster_name for entry in entries]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"{path}: two apps are named {duplicates[0]!r}; give each a unique name")
    return entries


def read_app(table: dict[str, Any], index: int, path: Path, base: Path, environ: dict[str, str] | None) -> AppEntry:
    where = f"{path}: app {table.get('name') or index}"
    values = {str(key).replace("-", "_"): value for key, value in table.items() if key not in OWN_KEYS}
    if not values.get("app"):
        raise ConfigError(f"{where}: 'app' is required (app = 'module:attribute')")
    env = table.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, (str, int, float, bool)) for v in env.values()):
        raise ConfigError(f"{where}: 'env' must be a table of strings, like env = {{ KEY = 'value' }}")
    env_text = {str(key): str(value) for key, value in env.items()}
    cwd = table.get("cwd", ".")
    if not isinstance(cwd, str):
        raise ConfigError(f"{where}: 'cwd' must be a path")
    directory = (base / cwd).resolve()
    if not directory.is_dir():
        raise ConfigError(f"{where}: cwd {str(directory)!r} is not a directory")
    try:
        for key, value in values.items():
            parse_value(key, value)  # the setting's own message, before the merge with the environment
        config, _ = load_config(cli=values, env={**(environ or os.environ), **env_text}, config_file=None)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return AppEntry(config, values, str(directory), env_text)


__all__ = ["AppEntry", "looks_like_apps_file", "read_apps_file"]
