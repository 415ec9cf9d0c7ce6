"""Short, useful error reports: the exception's message first, then its last frames (issue 11 item 7).

A lifespan or import failure used to be reported by its first line, which for a formatted
traceback (Starlette sends ``traceback.format_exc()`` as the ``lifespan.startup.failed``
message) is the bare header "Traceback (most recent call last):". These helpers put what
went wrong first and keep where it went wrong: the last :data:`FRAMES` frames, innermost
last, each as ``  at FILE:LINE in FUNCTION: CODE``. Stdlib only: the worker, the importer
and the master all use it.
"""

from __future__ import annotations

import os
import re
import sysconfig
import traceback

FRAMES = 3
HEADER = "Traceback (most recent call last):"
_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<name>.+)$')
_CHAINED = ("During handling of the above exception", "The above exception was the direct cause")


def last_frames(exc: BaseException, count: int = FRAMES) -> str:
    """The last ``count`` frames of ``exc``'s traceback (importlib's frozen frames left out).

    When those are all library code (the stdlib, site-packages: ``json.loads`` failing on the
    app's bad config), the app's own innermost frame is put first, then "...": that is the
    line to fix.
    """
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
    # asynccluster's own frames (the worker calling the app) say nothing about the app's error.
    frames = [f for f in frames if not f.filename.startswith(_PACKAGE_DIR)] or frames
    chosen = frames[-count:]
    lines = [_frame_line(f) for f in chosen]
    own = [f for f in frames if not _library(f.filename)]
    if own and all(_library(f.filename) for f in chosen):
        lines = [_frame_line(own[-1]), "  ...", *lines[1:]]
    return "\n".join(lines)


def _frame_line(frame: traceback.FrameSummary) -> str:
    return f"  at {frame.filename}:{frame.lineno} in {frame.name}: {frame.line or ''}".rstrip()


_LIBRARY_DIRS = tuple(
    {os.path.join(path, "") for key, path in sysconfig.get_paths().items() if key in ("stdlib", "purelib", "platlib")}
)


def _library(filename: str) -> bool:
    """The stdlib, installed packages, or asynccluster itself: not the app's code."""
    return filename.startswith((*_LIBRARY_DIRS, _PACKAGE_DIR))


_PACKAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")


def summarise(text: str, count: int = FRAMES) -> str:
    """A formatted traceback inside ``text`` -> its final "Type: message" line, then its last
    ``count`` frames; text without a traceback is returned as it is (stripped).

    Only the last traceback of a chain counts (the one that was raised). What comes before
    the traceback in ``text`` is kept as a prefix of the first line.
    """
    text = text.strip()
    start = text.rfind(HEADER)
    if start < 0:
        return text
    prefix = text[:start].strip()
    for marker in _CHAINED:
        if marker in prefix:  # the earlier tracebacks of a chain: not what was raised
            prefix = ""
    lines = text[start + len(HEADER) :].splitlines()
    frames: list[str] = []
    message: list[str] = []
    index = 0
    while index < len(lines):
        match = _FRAME.match(lines[index])
        if match:
            code = lines[index + 1].strip() if index + 1 < len(lines) and lines[index + 1].startswith("    ") else ""
            frames.append(f"  at {match['file']}:{match['line']} in {match['name']}: {code}".rstrip())
            index += 1
        elif lines[index].startswith(" ") or not lines[index].strip():
            index += 1  # source lines, ^^^ markers
        else:
            message = lines[index:]
            break
    said = "\n".join(message).strip() or "(no message)"
    first = f"{prefix} {said}" if prefix else said
    return "\n".join([first, *frames[-count:]])


__all__ = ["last_frames", "summarise"]
