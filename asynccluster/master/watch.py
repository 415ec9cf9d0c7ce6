"""Development reload: ``--reload`` watches the code and does a rolling reload (issue 11 item 5).

Like uvicorn's ``--reload`` and pm2's ``--watch``, but on the cluster's own replace path: the
new workers start beside the old ones and take over only once ready, so it works with any
number of workers and no request fails while code changes. Files are watched with the
maintained ``watchfiles`` library (Rust notify; inotify on Linux), its default filter
(``.git``, ``__pycache__``, editors' swap files... are ignored), then uvicorn's rules:

- ``--reload-dir``: the directories watched (default: ``--app-dir``, the working directory);
- ``--reload-include``: glob patterns of the files that count (default ``*.py``);
- ``--reload-exclude``: glob patterns that never count (default ``.*, .py[cod], .sw.*, ~*``);
- ``--reload-delay``: changes closer together than this are one reload (the debounce).

A changed Python file that does not compile (a syntax error mid-edit) is reported once, with
its line, and no reload is attempted: the old workers keep serving. Any other failure of the
new code (an import error...) makes the reload roll back, as ``asynccluster reload`` does.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger("asynccluster.master")

CloseFn = Callable[[], Awaitable[None]]
MAX_LISTED = 3  # changed files named in the log line


class PatternFilter:
    """watchfiles' DefaultFilter, then the include/exclude globs (matched on the file name and
    on the path relative to the watched directory)."""

    def __init__(self, include: Iterable[str], exclude: Iterable[str], roots: Iterable[Path]) -> None:
        from watchfiles import DefaultFilter

        self.default = DefaultFilter()
        self.include = tuple(include) or ("*.py",)
        self.exclude = tuple(exclude)
        self.roots = tuple(roots)

    def __call__(self, change: Any, path: str) -> bool:
        if not self.default(change, path):
            return False
        names = {os.path.basename(path), *self._relative(path)}
        if any(fnmatch.fnmatch(name, pattern) for name in names for pattern in self.exclude):
            return False
        return any(fnmatch.fnmatch(name, pattern) for name in names for pattern in self.include)

    def _relative(self, path: str) -> list[str]:
        found = []
        for root in self.roots:
            try:
                found.append(str(Path(path).relative_to(root)))
            except ValueError:
                continue
        return found


def syntax_error(paths: Iterable[str]) -> str | None:
    """The first changed Python file that does not compile, as "FILE:LINE: message", or None."""
    for path in sorted(paths):
        if not path.endswith(".py") or not os.path.isfile(path):
            continue
        try:
            source = Path(path).read_bytes()
            compile(source, path, "exec", dont_inherit=True)
        except SyntaxError as exc:
            return f"{path}:{exc.lineno}: {exc.msg}" + (f": {exc.text.strip()}" if exc.text else "")
        except (OSError, ValueError):  # gone meanwhile, or null bytes: the next change will tell
            continue
    return None


def describe_changes(paths: set[str]) -> str:
    listed = ", ".join(sorted(paths)[:MAX_LISTED])
    more = f" and {len(paths) - MAX_LISTED} more" if len(paths) > MAX_LISTED else ""
    return listed + more


async def watch(config: Any, reload: Callable[[], Awaitable[Any]], stop: asyncio.Event) -> None:
    """Until ``stop``: each debounced batch of relevant changes is one rolling reload."""
    from watchfiles import awatch

    roots = [Path(d).resolve() for d in (config.reload_dir or (config.app_dir or ".",))]
    watch_filter = PatternFilter(config.reload_include, config.reload_exclude, roots)
    logger.info("--reload: watching %s for %s", ", ".join(map(str, roots)), ", ".join(watch_filter.include))
    last_error: str | None = None
    debounce = max(1, int(config.reload_delay * 1000))
    async for changes in awatch(*roots, watch_filter=watch_filter, debounce=debounce, stop_event=stop):
        paths = {path for _, path in changes}
        error = syntax_error(paths)
        if error is not None:
            if error != last_error:  # once per error, however often the file is saved broken
                logger.error("--reload: not reloading, the code does not compile: %s", error)
            last_error = error
            continue
        last_error = None
        logger.info("--reload: %s changed: rolling reload", describe_changes(paths))
        await reload()


async def start_watch(supervisor: Any, config: Any) -> CloseFn | None:
    """Start watching for ``--reload`` (None when it is off); ValueError if watchfiles is missing."""
    if not getattr(config, "reload", False):
        return None
    try:
        import watchfiles  # noqa: F401 - checked here: a clear message at start, not in the task
    except ImportError:
        raise RuntimeError("--reload needs the watchfiles package: pip install 'asynccluster[reload]'") from None
    # Python checks a cached .pyc by the source's mtime in whole seconds and its size: two
    # edits within a second of the same size would load the old code. Workers write none.
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(watch(config, supervisor.reload, stop))

    def report(done: asyncio.Task[None]) -> None:
        if not done.cancelled() and done.exception() is not None:
            logger.error("--reload stopped watching: %r", done.exception())

    task.add_done_callback(report)

    async def close() -> None:
        stop.set()
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass

    return close


__all__ = ["PatternFilter", "start_watch", "syntax_error", "watch"]
