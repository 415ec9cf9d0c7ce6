"""Custom counters and gauges for the app, exported through the master's ``/metrics``.

Each worker process keeps its own values in memory; the worker's once-a-second heartbeat
carries :func:`snapshot`, and the master merges every worker's snapshot into one exposition
with a ``worker`` label (issue 5: no ``PROMETHEUS_MULTIPROC_DIR`` workaround)::

    from asynccluster import metrics

    orders = metrics.counter("shop_orders", "Orders placed.", labels=("country",))
    queue = metrics.gauge("shop_queue_depth", "Jobs waiting.")

    orders.labels(country="fr").inc()
    queue.set(12)

Counters are exposed with a ``_total`` suffix (OpenMetrics convention). Declaring the same
metric twice returns the first one, so a module imported twice (or a factory called twice)
does not fail; declaring the same name with another type or other labels is an error.

Values are updated under a lock: sync endpoints of an ASGI app run in a thread pool.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Added by the master to every series (one series per worker slot).
RESERVED_LABELS = frozenset({"worker", "le", "quantile"})
# Our own series live under this prefix; an app metric there would shadow or collide.
RESERVED_PREFIX = "asynccluster_"

LabelValues = tuple[str, ...]

# Series (label-value combinations) per metric at most (issue 9: a counter labelled by request
# path grew the heartbeat past the channel's frame limit). Past it, new series are dropped and
# counted (``dropped`` in the snapshot, one warning naming the metric); existing ones update.
MAX_SERIES = 1000
# The other two ways to grow the heartbeat without bound (attack run on issue 9): label values
# are cut to MAX_LABEL_VALUE characters, and past MAX_METRICS declared metrics a new name gets
# a metric that is not exported (its updates are dropped; one warning names the first one).
# Together: at most MAX_METRICS x MAX_SERIES series of bounded size per worker.
MAX_LABEL_VALUE = 128
MAX_METRICS = 100
logger = logging.getLogger("asynccluster.metrics")


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.help = help
        self.label_names = labels
        self._values: dict[LabelValues, float] = {}
        self._lock = threading.Lock()
        self.dropped = 0  # updates of new series refused past MAX_SERIES
        if not labels:
            self._values[()] = 0.0

    def _key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> LabelValues:
        if args and kwargs:
            raise ValueError(f"{self.name}: pass label values either by position or by name, not both")
        if kwargs:
            if set(kwargs) != set(self.label_names):
                raise ValueError(f"{self.name}: expected labels {list(self.label_names)}, got {sorted(kwargs)}")
            return tuple(str(kwargs[label])[:MAX_LABEL_VALUE] for label in self.label_names)
        if len(args) != len(self.label_names):
            raise ValueError(f"{self.name}: expected {len(self.label_names)} label values, got {len(args)}")
        return tuple(str(value)[:MAX_LABEL_VALUE] for value in args)

    def _add(self, key: LabelValues, amount: float) -> None:
        with self._lock:
            if key in self._values or self._room():
                self._values[key] = self._values.get(key, 0.0) + amount

    def _set(self, key: LabelValues, value: float) -> None:
        with self._lock:
            if key in self._values or self._room():
                self._values[key] = float(value)

    def _room(self) -> bool:
        """Whether one more series fits (called under the lock); counts and warns once if not."""
        if len(self._values) < MAX_SERIES:
            return True
        self.dropped += 1
        if self.dropped == 1:
            logger.warning(
                "metric %r has %d series, the limit: new label values are dropped and counted "
                "(a label with unbounded values, like a request path or id?)",
                self.name,
                MAX_SERIES,
            )
        return False

    def _require_unlabelled(self) -> None:
        if self.label_names:
            raise ValueError(f"{self.name} has labels {list(self.label_names)}: use .labels(...) first")

    def value(self, *args: Any, **kwargs: Any) -> float:
        """The current value of one series (0 if never touched)."""
        return self._values.get(self._key(args, kwargs), 0.0)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            samples = [[list(key), value] for key, value in self._values.items()]
        result: dict[str, Any] = {
            "type": self.kind,
            "help": self.help,
            "labels": list(self.label_names),
            "samples": samples,
        }
        if self.dropped:
            result["dropped"] = self.dropped  # updates refused past MAX_SERIES
        return result


class Counter(_Metric):
    """A value that only goes up (requests, errors, bytes)."""

    kind = "counter"

    def inc(self, amount: float = 1.0) -> None:
        self._require_unlabelled()
        _check_increment(self.name, amount)
        self._add((), amount)

    def labels(self, *args: Any, **kwargs: Any) -> CounterChild:
        return CounterChild(self, self._key(args, kwargs))


class CounterChild:
    __slots__ = ("_key", "_parent")

    def __init__(self, parent: Counter, key: LabelValues) -> None:
        self._parent = parent
        self._key = key

    def inc(self, amount: float = 1.0) -> None:
        _check_increment(self._parent.name, amount)
        self._parent._add(self._key, amount)


class Gauge(_Metric):
    """A value that goes up and down (queue depth, cache size, temperature)."""

    kind = "gauge"

    def set(self, value: float) -> None:
        self._require_unlabelled()
        self._set((), value)

    def inc(self, amount: float = 1.0) -> None:
        self._require_unlabelled()
        self._add((), amount)

    def dec(self, amount: float = 1.0) -> None:
        self._require_unlabelled()
        self._add((), -amount)

    def labels(self, *args: Any, **kwargs: Any) -> GaugeChild:
        return GaugeChild(self, self._key(args, kwargs))


class GaugeChild:
    __slots__ = ("_key", "_parent")

    def __init__(self, parent: Gauge, key: LabelValues) -> None:
        self._parent = parent
        self._key = key

    def set(self, value: float) -> None:
        self._parent._set(self._key, value)

    def inc(self, amount: float = 1.0) -> None:
        self._parent._add(self._key, amount)

    def dec(self, amount: float = 1.0) -> None:
        self._parent._add(self._key, -amount)


def _check_increment(name: str, amount: float) -> None:
    if amount < 0:
        raise ValueError(f"{name}: a counter can only go up (got {amount})")


# ---------------------------------------------------------------- the registry of this process

_registry: dict[str, _Metric] = {}
_registry_lock = threading.Lock()


def counter(name: str, help: str = "", labels: Iterable[str] = ()) -> Counter:
    """Declare (or get back) a counter. ``name`` without the ``_total`` suffix is fine."""
    metric = _declare(Counter, name.removesuffix("_total"), help, tuple(labels))
    assert isinstance(metric, Counter)
    return metric


def gauge(name: str, help: str = "", labels: Iterable[str] = ()) -> Gauge:
    """Declare (or get back) a gauge."""
    metric = _declare(Gauge, name, help, tuple(labels))
    assert isinstance(metric, Gauge)
    return metric


def _declare(cls: type[_Metric], name: str, help: str, labels: tuple[str, ...]) -> _Metric:
    _validate(name, labels)
    with _registry_lock:
        existing = _registry.get(name)
        if existing is not None:
            if type(existing) is not cls or existing.label_names != labels:
                raise ValueError(
                    f"metric {name!r} is already declared as a {existing.kind} with labels {list(existing.label_names)}"
                )
            return existing
        metric = cls(name, help, labels)
        if len(_registry) >= MAX_METRICS:
            _warn_unexported(name)
            return metric  # usable by the app, never exported: the heartbeat stays bounded
        _registry[name] = metric
        return metric


_unexported = 0  # metrics declared past MAX_METRICS (under _registry_lock)


def _warn_unexported(name: str) -> None:
    global _unexported
    _unexported += 1
    if _unexported == 1:
        logger.warning(
            "%d metrics are declared, the limit: %r and later ones are not exported "
            "(a metric name built from request data?)",
            MAX_METRICS,
            name,
        )


def _validate(name: str, labels: tuple[str, ...]) -> None:
    if not _NAME.match(name):
        raise ValueError(f"invalid metric name {name!r}: use letters, digits, '_' and ':' (not first a digit)")
    if name.startswith(RESERVED_PREFIX):
        raise ValueError(f"metric names starting with {RESERVED_PREFIX!r} are reserved for asynccluster")
    if len(set(labels)) != len(labels):
        raise ValueError(f"{name}: duplicate label names in {list(labels)}")
    for label in labels:
        if not _LABEL.match(label) or label.startswith("__"):
            raise ValueError(f"{name}: invalid label name {label!r}")
        if label in RESERVED_LABELS:
            raise ValueError(f"{name}: label {label!r} is reserved (the master adds 'worker' to every series)")


def snapshot() -> dict[str, Any]:
    """Every metric of this process, JSON-able, for the worker's heartbeat.

    ``{name: {"type": "counter"|"gauge", "help": str, "labels": [names],
    "samples": [[[label values], value], ...]}}``
    """
    with _registry_lock:
        metrics = list(_registry.values())
    return {metric.name: metric.snapshot() for metric in metrics}


def clear() -> None:
    """Forget every metric (for tests)."""
    global _unexported
    with _registry_lock:
        _registry.clear()
        _unexported = 0
