"""Load "package.module:attribute" with errors that say what to fix (issue 3).

One readable message (module, attribute, underlying error) instead of a traceback wall.

App factories (issue 8 item 8): ``module:create_app`` without ``--factory`` is detected when
the app is loaded, like uvicorn does, instead of failing every request: an attribute that can
be called with no arguments and is not an ASGI app (not a coroutine function, nor an object
whose ``__call__`` is one) is called once, with a warning that names ``--factory``. uvicorn
tries ``app()`` on everything and catches TypeError; the signature is asked here instead,
so a TypeError raised inside a real factory is reported, not mistaken for "not a factory".
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from typing import Any

from asynccluster.tracebacks import last_frames


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


def load_app(
    spec: str, *, factory: bool = False, app_dir: str = ".", warn: Callable[[str], object] | None = None
) -> Any:
    """Import the app named by ``spec``; call it first when ``factory`` is set.

    Without ``factory``, an attribute that looks like an app factory (see
    :func:`looks_like_factory`) is called too, and ``warn`` gets one message naming
    ``--factory``. Raises :class:`AppImportError` with a message for the user.
    """
    if app_dir and app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    obj = import_from_string(spec)
    if _binds_no_arguments(obj) and inspect.iscoroutinefunction(obj):
        # An ASGI app takes arguments: this is an async factory, which would fail every request.
        raise AppImportError(f"{spec!r} is an async function without parameters: not an ASGI app, and an app "
                             "factory must be a plain function (def, not async def) for --factory")  # fmt: skip
    if factory:
        obj = _call_factory(obj, spec)
    elif looks_like_factory(obj):
        obj = _call_factory(obj, spec, detected=True)
        if warn is not None:
            warn(
                f"{spec!r} is an app factory (it takes no arguments): called it once to get the app. "
                "Pass --factory (factory=True) to say so and silence this warning."
            )
    if not callable(obj):
        raise AppImportError(f"{spec!r} is a {type(obj).__name__}, not an ASGI app (a callable)")
    return obj


def looks_like_factory(obj: Any) -> bool:
    """Can ``obj`` be called with no arguments, and is it not an ASGI 3 app?

    ASGI apps take (scope, receive, send) or, for ASGI 2, (scope): neither binds to no
    arguments. A class that does (``App()``) is a factory of its instances, as for uvicorn.
    """
    if not callable(obj) or inspect.iscoroutinefunction(obj):
        return False
    call = getattr(obj, "__call__", None)  # noqa: B004 - the method, to see if it is async
    if not inspect.isclass(obj) and not inspect.isroutine(obj) and inspect.iscoroutinefunction(call):
        return False  # an app object (Starlette, FastAPI, ...): async __call__(scope, receive, send)
    return _binds_no_arguments(obj)


def _binds_no_arguments(obj: Any) -> bool:
    try:
        inspect.signature(obj).bind()
    except (TypeError, ValueError):  # needs arguments, or no signature to read (builtins)
        return False
    return True


def _call_factory(obj: Any, spec: str, *, detected: bool = False) -> Any:
    what = f"{spec!r}, called as an app factory (it takes no arguments; no --factory given)," if detected else spec
    try:
        return obj()
    except Exception as exc:
        raise AppImportError(f"factory {what} raised {type(exc).__name__}: {exc}\n{_last_frame(exc)}") from None


def _last_frame(exc: BaseException) -> str:
    """The last frames of the error: where to look, without the importlib noise (issue 11:
    the innermost frame alone is often in the stdlib, the app's own call is one above)."""
    return last_frames(exc)
