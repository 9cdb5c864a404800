"""User metrics: ``get_runtime_context().get_metric_group()`` with counters, gauges, meters, histograms.

Flink's metric groups in Python style. A rich function registers its metrics (usually in ``open``)
on the group of its operator; ``add_group(key, value)`` adds a label, ``add_group(name)`` a name
prefix. Each task keeps one ``MetricRegistry``; the slot reads it once a second with the task
counters (``snapshot``) and the JobMaster exports every metric on ``GET /metrics`` as
``streamjob_user_<name>`` with the labels ``job``, ``vertex``, ``subtask``, ``operator`` and the
groups' own. Updating a metric is one attribute change; a task whose functions register none sends
nothing more.

Callers: ``runtime/context.py`` (the group of a runtime context), ``slot`` (the reports), the
JobMaster's ``metrics.py`` (rendering).
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamjob.worker.errors import ConfigError

MAX_METRICS_PER_TASK = 1000
"""A task refuses more user metrics than this (a metric name built from record values is a leak)."""
RESERVED_LABELS = frozenset({"job", "vertex", "subtask", "operator", "quantile"})
_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
QUANTILES = (0.5, 0.95, 0.99)


def _checked_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"metric {what} {name!r} is invalid: use letters, digits and underscores, not starting with a digit "
            "(e.g. 'cache_hits')"
        )
    return name


class Counter:
    """A count that goes up (and down): ``inc()``, ``inc(n)``, ``dec()``."""

    __slots__ = ("_count",)

    def __init__(self) -> None:
        self._count = 0

    def inc(self, n: int = 1) -> None:
        """Adds ``n``."""
        self._count += n

    def dec(self, n: int = 1) -> None:
        """Subtracts ``n``."""
        self._count -= n

    def get_count(self) -> int:
        """The current count."""
        return self._count


class Meter:
    """Events per second over the last ``time_span_s`` seconds (Flink's ``MeterView``): ``mark_event(n)``."""

    __slots__ = ("_count", "_samples", "time_span_s")

    def __init__(self, time_span_s: int = 60, now_s: float | None = None) -> None:
        self._count = 0
        self.time_span_s = time_span_s
        # (monotonic s, count) at creation and at each report
        self._samples: deque[tuple[float, int]] = deque([(time.monotonic() if now_s is None else now_s, 0)])

    def mark_event(self, n: int = 1) -> None:
        """Counts ``n`` events now."""
        self._count += n

    def get_count(self) -> int:
        """Events marked since the task started."""
        return self._count

    def rate(self, now_s: float) -> float:
        """Events per second since the oldest sample within the time span (samples taken by the reports)."""
        samples = self._samples
        samples.append((now_s, self._count))
        while len(samples) > 1 and now_s - samples[0][0] > self.time_span_s:
            samples.popleft()
        then, count = samples[0]
        return (self._count - count) / (now_s - then) if now_s > then else 0.0


class Histogram:
    """Statistics of the last ``window_size`` values (count, min, max, mean, quantiles): ``update(value)``."""

    __slots__ = ("_count", "_sum", "_window")

    def __init__(self, window_size: int = 1024) -> None:
        self._window: deque[float] = deque(maxlen=window_size)
        self._count = 0
        self._sum = 0.0

    def update(self, value: float) -> None:
        """Records ``value``."""
        self._window.append(value)
        self._count += 1
        self._sum += value

    def get_count(self) -> int:
        """Values recorded since the task started."""
        return self._count

    def statistics(self) -> dict[str, float]:
        """Count and sum since the start; min, max, mean and the quantiles of the window."""
        values = sorted(self._window)
        stats = {"count": float(self._count), "sum": self._sum}
        if values:
            stats.update(min=values[0], max=values[-1], mean=sum(values) / len(values))
            for q in QUANTILES:
                stats[str(q)] = values[min(len(values) - 1, math.ceil(q * len(values)) - 1)]
        return stats


@dataclass(frozen=True)
class MetricSample:
    """One metric's values at a report: ``kind`` counter, gauge, meter or histogram."""

    name: str
    kind: str
    labels: tuple[tuple[str, str], ...]
    values: dict[str, float]


class MetricRegistry:
    """A task's user metrics, by full name and labels."""

    def __init__(self) -> None:
        self._metrics: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, Any]] = {}

    def __bool__(self) -> bool:
        return bool(self._metrics)

    def register(self, name: str, labels: tuple[tuple[str, str], ...], kind: str, make: Callable[[], Any]) -> Any:
        """The metric of ``name`` and ``labels`` (made on first use; the same one on the next call)."""
        key = (name, labels)
        found = self._metrics.get(key)
        if found is not None:
            if found[0] != kind:
                raise ConfigError(f"metric '{name}' is already a {found[0]} in this operator; choose another name")
            return found[1]
        if len(self._metrics) >= MAX_METRICS_PER_TASK:
            raise ConfigError(
                f"a task may register at most {MAX_METRICS_PER_TASK} user metrics; '{name}' is one too many "
                "(build metric names and groups from fixed strings, not from record values)"
            )
        metric = make()
        self._metrics[key] = (kind, metric)
        return metric

    def snapshot(self, now_s: float) -> list[MetricSample]:
        """Every metric's current values (a gauge whose function fails or is not a number is left out)."""
        out = []
        for (name, labels), (kind, metric) in self._metrics.items():
            if kind == "counter":
                values = {"count": float(metric.get_count())}
            elif kind == "meter":
                values = {"count": float(metric.get_count()), "rate": metric.rate(now_s)}
            elif kind == "histogram":
                values = metric.statistics()
            else:
                try:
                    value = float(metric())
                except Exception:  # a user's gauge function: skip this report, keep the task
                    continue
                if not math.isfinite(value):
                    continue
                values = {"value": value}
            out.append(MetricSample(name, kind, labels, values))
        return out


class MetricGroup:
    """Where a function registers metrics; ``add_group`` makes a sub-group (a label or a name prefix)."""

    def __init__(self, registry: MetricRegistry, labels: tuple[tuple[str, str], ...] = (), prefix: str = "") -> None:
        self._registry = registry
        self._labels = labels
        self._prefix = prefix

    def _register(self, name: str, kind: str, make: Callable[[], Any]) -> Any:
        return self._registry.register(self._prefix + _checked_name(name, "name"), self._labels, kind, make)

    def counter(self, name: str) -> Counter:
        """The counter ``name`` of this group."""
        counter: Counter = self._register(name, "counter", Counter)
        return counter

    def gauge(self, name: str, fn: Callable[[], float]) -> Callable[[], float]:
        """Reports ``fn()`` (a number) at every report; returns ``fn``."""
        if not callable(fn):
            raise ConfigError(f"gauge '{name}' takes a function returning a number, got {type(fn).__name__}")
        gauge: Callable[[], float] = self._register(name, "gauge", lambda: fn)
        return gauge

    def meter(self, name: str, time_span_in_seconds: int = 60) -> Meter:
        """The meter ``name``: events per second over ``time_span_in_seconds``."""
        meter: Meter = self._register(name, "meter", lambda: Meter(time_span_in_seconds))
        return meter

    def histogram(self, name: str, window_size: int = 1024) -> Histogram:
        """The histogram ``name`` over the last ``window_size`` values."""
        histogram: Histogram = self._register(name, "histogram", lambda: Histogram(window_size))
        return histogram

    def add_group(self, name: str, extra: str | None = None) -> MetricGroup:
        """A sub-group: ``add_group(key, value)`` labels its metrics ``key="value"``.

        ``add_group(name)`` (no value) prefixes its metric names with ``name_`` instead.
        """
        _checked_name(name, "group")
        if extra is None:
            return MetricGroup(self._registry, self._labels, f"{self._prefix}{name}_")
        if name in RESERVED_LABELS or any(k == name for k, _ in self._labels):
            raise ConfigError(
                f"metric group key '{name}' is taken (job, vertex, subtask, operator, quantile, or used twice)"
            )
        return MetricGroup(self._registry, (*self._labels, (name, str(extra))), self._prefix)
