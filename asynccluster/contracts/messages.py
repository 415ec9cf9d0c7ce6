"""Every message between the master and a worker: one frozen dataclass per kind (issue 10).

The docs of a message are its type: each class below says who sends it, when, and in which
units. On the wire (contracts/channel.py frames) a message is one UTF-8 JSON object whose
``"type"`` is the class's :attr:`Message.kind` and whose other keys are its fields. JSON rather
than pickle: the master never unpickles what a (possibly compromised or confused) app process
sends it.

Worker -> master: :class:`Online`, :class:`Phase`, :class:`Ready`, :class:`Heartbeat`,
:class:`Recycle`, :class:`Stopping`, :class:`Errors`, :class:`DiagnoseResult`.
Master -> worker: :class:`Stop`, :class:`ReopenLogs`, :class:`DumpTasks`, :class:`Diagnose`.

Stacks are not asked for here but with SIGUSR2 (master/watchdog.py): the worker that must dump
them is the one whose loop is blocked, and a blocked loop cannot read the channel.

:func:`encode` and :func:`decode` are the only translation. :func:`decode` checks the kind and
every field's type and raises :class:`MessageError` (a ValueError) for anything else: an
unknown kind, a missing field, a field of the wrong type, not JSON. Keys it does not know are
ignored, so a newer worker's extra field does not break an older master during a reload.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

WIRE_KIND = "type"  # the JSON key holding the kind (the name predates this module)


class MessageError(ValueError):
    """Bytes or an object that are not a valid message (unknown kind, missing or mistyped field)."""


@dataclass(frozen=True)
class Message:
    """The base of every message; ``kind`` is its ``"type"`` on the wire."""

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.kind or cls.kind in _REGISTRY:
            raise TypeError(f"{cls.__name__}: a message needs its own kind, not {cls.kind!r}")
        _REGISTRY[cls.kind] = cls

    def payload(self) -> dict[str, Any]:
        """The fields as a dict, without the kind (shallow: nested dicts are shared)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


_REGISTRY: dict[str, type[Message]] = {}


# ---------------------------------------------------------------- worker -> master


@dataclass(frozen=True)
class Online(Message):
    """Worker -> master, first, as soon as its channel is up: it now imports the app.

    ``pid``: the worker's process id; ``incarnation``: 1, 2, ... for its slot.
    """

    kind: ClassVar[str] = "online"
    pid: int
    incarnation: int


@dataclass(frozen=True)
class Phase(Message):
    """Worker -> master while starting: what it is doing now (``"lifespan startup"``), so that
    a --ready-timeout says where it got stuck."""

    kind: ClassVar[str] = "phase"
    phase: str


@dataclass(frozen=True)
class Ready(Message):
    """Worker -> master, once: lifespan startup is done and its listener is accepting."""

    kind: ClassVar[str] = "ready"
    pid: int


@dataclass(frozen=True)
class Heartbeat(Message):
    """Worker -> master every ``heartbeat_interval`` seconds, from the worker's event loop (a
    blocked loop stops it: DESIGN.md §3), and once right after :class:`Ready`.

    ``stats``: observe/stats.py ``WorkerStats.snapshot()`` (counters since start);
    ``loop_lag``: seconds the loop was late for this beat; ``rss``: resident memory, bytes;
    ``cpu``: user+system CPU seconds since start; ``app_metrics``: the app's own
    ``asynccluster.metrics.snapshot()`` (JSON, or None); ``time``: wall clock, Unix seconds.
    """

    kind: ClassVar[str] = "heartbeat"
    stats: dict[str, Any]
    loop_lag: float
    rss: int
    cpu: float
    time: float
    app_metrics: Any = None


@dataclass(frozen=True)
class Recycle(Message):
    """Worker -> master, once: it reached --max-requests or --max-memory and asks for a
    replacement (the master starts one, then drains this worker; issue 9/11). ``reason`` is
    for the log, e.g. ``"max-requests: served 50 requests (limit 50)"``."""

    kind: ClassVar[str] = "recycle"
    reason: str


@dataclass(frozen=True)
class Stopping(Message):
    """Worker -> master: why it stops.

    Before ready (it failed to start: ``draining`` False) or when its drain begins
    (``draining`` True), and once more at the end of a drain with ``forced``: the number of
    connections closed at the graceful timeout (issue 4), 0 if none.
    """

    kind: ClassVar[str] = "stopping"
    reason: str
    draining: bool = False
    forced: int = 0


@dataclass(frozen=True)
class Errors(Message):
    """Worker -> master, at most once per second and only after something happened (issue 15).

    ``groups``: the app's unhandled exceptions grouped by type and frame (observe/errors.py
    entries: ``type``, ``frame``, ``traceback``, ``count``, ``first_seen``, ``last_seen``,
    ``message``, ``request``); ``dropped``: errors beyond the group cap in this batch;
    ``slow``: slow requests (worker/slowlog.py entries).
    """

    kind: ClassVar[str] = "errors"
    groups: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0
    slow: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class DiagnoseResult(Message):
    """Worker -> master: the answer to the :class:`Diagnose` request with the same ``id``:
    ``ok`` and the op's ``result`` (JSON object), or not ``ok`` and an ``error`` for the operator."""

    kind: ClassVar[str] = "diagnose-result"
    id: int
    ok: bool
    result: dict[str, Any] | None = None
    error: str = ""


# ---------------------------------------------------------------- master -> worker


@dataclass(frozen=True)
class Stop(Message):
    """Master -> worker: stop accepting, drain for up to ``timeout`` seconds (--graceful-timeout
    or what a stop left of it), then run lifespan shutdown and exit 0. ``reason`` is for its log."""

    kind: ClassVar[str] = "stop"
    timeout: float
    reason: str = ""


@dataclass(frozen=True)
class ReopenLogs(Message):
    """Master -> worker on SIGUSR1: reopen log files (after a rotation)."""

    kind: ClassVar[str] = "reopen-logs"


@dataclass(frozen=True)
class DumpTasks(Message):
    """Master -> worker that missed its heartbeats: write every asyncio task's await chain to
    the stacks socket (a live loop stuck in an await shows there what faulthandler cannot)."""

    kind: ClassVar[str] = "dump-tasks"


@dataclass(frozen=True)
class Diagnose(Message):
    """Master -> worker: run one measurement (issue 15) and answer with :class:`DiagnoseResult`.

    ``id``: matches the answer; ``op``: ``"memory"`` (tracemalloc, the ``top`` allocation
    sites) or ``"sample"`` (the stdlib CPU sampler at ``rate`` samples per second);
    ``seconds``: the measured window.
    """

    kind: ClassVar[str] = "diagnose"
    id: int
    op: str
    seconds: float
    top: int = 10
    rate: int = 100


WorkerMessage = Online | Phase | Ready | Heartbeat | Recycle | Stopping | Errors | DiagnoseResult
MasterMessage = Stop | ReopenLogs | DumpTasks | Diagnose
FROM_WORKER: frozenset[type[WorkerMessage]] = frozenset(typing.get_args(WorkerMessage))
FROM_MASTER: frozenset[type[MasterMessage]] = frozenset(typing.get_args(MasterMessage))


# ---------------------------------------------------------------- the one encode/decode pair


def encode(message: Message) -> bytes:
    """``message`` as a JSON object (UTF-8); a value JSON cannot hold is sent as its ``str()``."""
    return json.dumps({WIRE_KIND: message.kind, **message.payload()}, separators=(",", ":"), default=str).encode()


def decode(body: bytes, accept: frozenset[type[Message]] | None = None) -> Message:
    """The message in ``body`` (one frame's bytes); MessageError if it is not one.

    ``accept``: the kinds this end may receive (:data:`FROM_WORKER` on the master's end,
    :data:`FROM_MASTER` on a worker's); another known kind is an error too.
    """
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageError(f"not JSON: {exc}") from None
    except RecursionError:  # [[[[...]]]] nested past the interpreter's limit: still one bad frame
        raise MessageError("not JSON: nested too deeply") from None
    return from_object(obj, accept)


def from_object(obj: Any, accept: frozenset[type[Message]] | None = None) -> Message:
    """The message a decoded JSON object describes; MessageError if it is not one."""
    if not isinstance(obj, dict):
        raise MessageError(f"a message is a JSON object, not {type(obj).__name__}")
    kind = obj.get(WIRE_KIND)
    cls = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MessageError(f"unknown message type {str(kind)[:40]!r}")
    if accept is not None and cls not in accept:
        raise MessageError(f"a {kind!r} message is not sent in this direction")
    values = {}
    for name, check in _checkers(cls).items():
        if name in obj:
            values[name] = check(obj[name], f"{kind}.{name}")
    try:
        return cls(**values)
    except TypeError:  # a required field is missing (the only TypeError the constructor raises)
        missing = sorted(f.name for f in dataclasses.fields(cls) if f.name not in values and _required(f))
        raise MessageError(f"a {kind!r} message without {', '.join(missing)}") from None


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


# ---------------------------------------------------------------- field type checks

Checker = Callable[[Any, str], Any]
_CHECKERS: dict[type[Message], dict[str, Checker]] = {}


def _checkers(cls: type[Message]) -> dict[str, Checker]:
    """One checker per field, built from the class's annotations on first use."""
    found = _CHECKERS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = _CHECKERS[cls] = {f.name: _checker(hints[f.name]) for f in dataclasses.fields(cls)}
    return found


def _checker(hint: Any) -> Checker:
    """A function (value, name) -> value that raises MessageError unless value fits ``hint``."""
    if hint is Any:
        return lambda value, name: value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union) and type(None) in args:
        (inner,) = (a for a in args if a is not type(None))
        check = _checker(inner)
        return lambda value, name: None if value is None else check(value, name)
    if origin is list:
        (item,) = args
        check = _checker(item)
        return lambda value, name: [check(v, name) for v in _expect(value, list, name)]
    if origin is dict or hint is dict:
        return lambda value, name: _expect(value, dict, name)
    if hint is float:
        return lambda value, name: float(_expect(value, (int, float), name))
    if hint is str:
        return lambda value, name: _cut(_expect(value, str, name))
    if hint in (int, bool):
        return lambda value, name: _expect(value, hint, name)
    raise TypeError(f"no wire check for {hint!r}")  # a new field type: add its check here


# A text field (a stop reason, an error message) ends up in a log line: a worker, or an app
# writing to the channel, must not be able to make one 10 KB long. Longer text is cut, not
# refused: a long but genuine exception message still arrives, shortened.
MAX_TEXT = 1000  # characters
_CUT = " ...(cut)"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - len(_CUT)] + _CUT


def _expect(value: Any, kinds: type | tuple[type, ...], name: str) -> Any:
    # bool is an int to isinstance(); on the wire, true is not a count.
    if isinstance(value, kinds) and (not isinstance(value, bool) or kinds is bool):
        return value
    expected = kinds.__name__ if isinstance(kinds, type) else " or ".join(k.__name__ for k in kinds)
    raise MessageError(f"{name} must be {expected}, not {type(value).__name__}")
