"""Load "package.module:attribute" with errors that say what to fix (issue 3).

One readable message (module, attribute, underlying error) instead of a traceback wall.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from typing import Any


class AppImportError(Exception):
    """The app could not be loaded. ``str()`` is the one-line-per-fact message for the user."""


def split_spec(spec: str) -> tuple[str, str]:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AppImportError(f"app must be given as 'module:attribute' (e.g. examples.hello:app), got {spec!r}")
    return module_name, attr


def import_module(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppImportError(
                f"could not import module {module_name!r}: no module named {exc.name!r} "
                f"(is --app-dir right? sys.path[0] is {sys.path[0]!r})"
            ) from None
        raise AppImportError(
            f"could not import module {module_name!r}: it imports {exc.name!r}, which is not installed\n"
            f"{_last_frame(exc)}"
        ) from None
    except SyntaxError as exc:  # its own file and line: the traceback would point into importlib
        where = f"  at {exc.filename}:{exc.lineno}: {(exc.text or '').strip()}"
        raise AppImportError(f"could not import module {module_name!r}: SyntaxError: {exc.msg}\n{where}") from None
    except Exception as exc:  # the module itself raised while importing
        raise AppImportError(
            f"could not import module {module_name!r}: {type(exc).__name__}: {exc}\n{_last_frame(exc)}"
        ) from None


def resolve_attribute(module: Any, module_name: str, attr: str) -> Any:
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            public = sorted(name for name in vars(module) if not name.startswith("_"))[:12]
            raise AppImportError(
                f"module {module_name!r} has no attribute {attr!r} (it has: {', '.join(public) or 'nothing public'})"
            ) from None
    return obj


def import_from_string(spec: str) -> Any:
    module_name, attr = split_spec(spec)
    return resolve_attribute(import_module(module_name), module_name, attr)


def load_app(spec: str, *, factory: bool = False, app_dir: str = ".") -> Any:
    """Import the app named by ``spec``; call it first when ``factory`` is set."""
    if app_dir and app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    obj = import_from_string(spec)
    if factory:
        try:
            obj = obj()
        except Exception as exc:
            raise AppImportError(f"factory {spec!r} raised {type(exc).__name__}: {exc}\n{_last_frame(exc)}") from None
    if not callable(obj):
        raise AppImportError(f"{spec!r} is a {type(obj).__name__}, not an ASGI app (a callable)")
    return obj


def _last_frame(exc: BaseException) -> str:
    """The innermost frame of the error: where to look, without the importlib noise."""
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if not frame.filename.startswith("<frozen")]
    if not frames:
        return ""
    last = frames[-1]
    return f"  at {last.filename}:{last.lineno} in {last.name}: {last.line or ''}".rstrip()
