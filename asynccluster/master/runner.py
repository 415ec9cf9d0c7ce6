"""Blocking entry points: ``asynccluster run`` (cli/run.py) and ``asynccluster.run()``."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from asynccluster import exitcodes
from asynccluster.config import Config, ConfigError, config_from_settings
from asynccluster.contracts.spawn import WORKER_ID_ENV
from asynccluster.logs import setup_logging


def run_cluster(config: Config, sources: dict[str, str] | None = None) -> int:
    """Run the master until it stops; the exit code (exitcodes.py). ``sources``: where each
    setting came from, for ``asynccluster describe`` (issue 11).

    Failures a user can fix (bind, import, lifespan) are one logged line each, no traceback.
    """
    setup_logging(config)
    from asynccluster.master.describe import set_origins

    set_origins(sources)
    if config.env_file and not load_env_file(config.env_file):
        return exitcodes.USAGE
    from asynccluster.master.cluster import Cluster

    try:
        return asyncio.run(Cluster(config).serve())
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        return exitcodes.FORCED


def load_env_file(path: str) -> bool:
    """--env-file: its variables into our environment, which the workers inherit (issue 11).
    Variables already set win (as with uvicorn and docker compose). False (logged) if unreadable."""
    from dotenv import dotenv_values

    logger = logging.getLogger("asynccluster.master")
    if not os.path.isfile(path):
        logger.error("error: --env-file %s does not exist (working directory %s)", path, os.getcwd())
        return False
    try:
        values = dotenv_values(path, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        logger.error("error: cannot read --env-file %s: %s", path, exc)
        return False
    for key, value in values.items():
        if value is not None:
            os.environ.setdefault(key, value)
    return True


def run(app: Any, **settings: Any) -> int:
    """``asynccluster.run("pkg.mod:app", workers=4, port=8080)``; an app object works if it
    can be found again by import in a fresh process (spawn), else ValueError."""
    if os.environ.get(WORKER_ID_ENV) is not None:
        raise RuntimeError('asynccluster.run() was called inside a worker: guard it with `if __name__ == "__main__":`')
    spec = app if isinstance(app, str) else app_spec(app)
    try:
        config = config_from_settings({**settings, "app": spec})
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return run_cluster(config)


def app_spec(app: Any) -> str:
    """ "module:attr" naming ``app`` in some imported module, for the spawned workers."""
    for name, module in list(sys.modules.items()):
        if module is None or name == "__mp_main__":
            continue
        attr = attribute_holding(module, app)
        if attr is None:
            continue
        if name == "__main__":
            main_name = main_module_name(module)
            if main_name is None:
                continue
            name = main_name
        return f"{name}:{attr}"
    raise ValueError(
        "cannot find this app object in any importable module: workers are fresh processes "
        '(multiprocessing spawn) and import the app themselves, so pass it as "module:attr" '
        '(e.g. asynccluster.run("myapp:app"))'
    )


def attribute_holding(module: ModuleType, obj: Any) -> str | None:
    try:
        items = list(vars(module).items())
    except TypeError:
        return None
    for attr, value in items:
        if value is obj and not attr.startswith("__"):
            return attr
    return None


def main_module_name(module: ModuleType) -> str | None:
    """The importable name of the script being run (``python -m pkg.mod`` or ``python path.py``)."""
    spec = getattr(module, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return str(spec.name)
    filename = getattr(module, "__file__", None)
    if not filename:
        return None
    path = Path(filename).resolve().with_suffix("")
    for entry in sys.path:
        base = Path(entry or ".").resolve()
        try:
            relative = path.relative_to(base)
        except ValueError:
            continue
        if all(part.isidentifier() for part in relative.parts):
            return ".".join(relative.parts)
    return None
