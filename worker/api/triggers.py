"""Window triggers: when a window's contents are emitted and when they are purged (Flink's ``Trigger``).

A trigger is asked on every record added to a window (``on_element``) and on every timer it
registered for that window (``on_event_time``, ``on_processing_time``), and answers with a
``TriggerResult``: ``CONTINUE``, ``FIRE`` (emit the window's contents and keep them), ``PURGE``
(drop them) or ``FIRE_AND_PURGE``. Its ``TriggerContext`` holds timers and state scoped to the
current key *and window*; both are keyed state of the window operator, so they are in every checkpoint
and rescale by key group. ``clear`` is called when the window is dropped (its cleanup time:
``max_timestamp + allowed_lateness`` for event-time windows, ``max_timestamp`` for processing-time
ones; global windows are never dropped).

The built-ins follow Flink's:

- ``EventTimeTrigger``: fires once the watermark reaches ``window.max_timestamp()`` (at once for a
  record added to a window the watermark already passed, within the allowed lateness).
- ``ProcessingTimeTrigger``: fires when the task's clock reaches ``window.max_timestamp()``.
- ``CountTrigger.of(n)``: fires each time the window's count reaches ``n`` (the count restarts).
- ``PurgingTrigger.of(t)``: ``t``, but every FIRE becomes FIRE_AND_PURGE.
- ``ContinuousEventTimeTrigger.of(interval)``: fires at every multiple of ``interval`` of event time
  after the window's first record (the first at ``ts - ts % interval + interval``), and at the
  window's end; ``ContinuousProcessingTimeTrigger.of(interval)`` the same by the task's clock.
- ``NeverTrigger``: the default of ``GlobalWindows``; never fires.

Callers: ``WindowedStream.trigger`` and ``count_window``; the trigger window operator
(``runtime/trigger_windows.py``).
"""

from __future__ import annotations

from abc import abstractmethod
from enum import Enum
from typing import Any, Protocol

from streamjob.worker.api.state import ReducingStateDescriptor
from streamjob.worker.errors import ConfigError


class TriggerResult(Enum):
    """What a trigger decided for a window."""

    CONTINUE = (False, False)
    FIRE = (True, False)
    PURGE = (False, True)
    FIRE_AND_PURGE = (True, True)

    @property
    def is_fire(self) -> bool:
        """Whether the window's contents are emitted."""
        return bool(self.value[0])

    @property
    def is_purge(self) -> bool:
        """Whether the window's contents are dropped (after emitting, for FIRE_AND_PURGE)."""
        return bool(self.value[1])


class TriggerContext(Protocol):
    """Timers and state of the current key and window (what ``Trigger`` methods receive as ``ctx``)."""

    def get_current_processing_time(self) -> int: ...

    def get_current_watermark(self) -> int: ...

    def register_event_time_timer(self, timestamp_ms: int) -> None: ...

    def register_processing_time_timer(self, timestamp_ms: int) -> None: ...

    def delete_event_time_timer(self, timestamp_ms: int) -> None: ...

    def delete_processing_time_timer(self, timestamp_ms: int) -> None: ...

    def get_partitioned_state(self, descriptor: Any) -> Any:
        """A ``ValueState`` or ``ReducingState`` scoped to the current key and window."""
        ...


class Trigger:
    """Decides when a window fires; subclass it for a custom trigger (see the module docstring)."""

    @abstractmethod
    def on_element(self, element: Any, timestamp: int, window: Any, ctx: TriggerContext) -> TriggerResult: ...

    def on_event_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        """An event-time timer this trigger registered for ``window`` fired."""
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        """A processing-time timer this trigger registered for ``window`` fired."""
        return TriggerResult.CONTINUE

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        """The window is dropped: delete this trigger's timers and state for it."""


class EventTimeTrigger(Trigger):
    """Fires when the watermark passes the window's end (the default of event-time windows)."""

    @staticmethod
    def create() -> EventTimeTrigger:
        """The trigger (Flink's ``EventTimeTrigger.create()``)."""
        return EventTimeTrigger()

    def on_element(self, element: Any, timestamp: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        if window.max_timestamp() <= ctx.get_current_watermark():
            return TriggerResult.FIRE  # a late record inside the allowed lateness fires at once
        ctx.register_event_time_timer(window.max_timestamp())
        return TriggerResult.CONTINUE

    def on_event_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.FIRE if time == window.max_timestamp() else TriggerResult.CONTINUE

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        ctx.delete_event_time_timer(window.max_timestamp())


class ProcessingTimeTrigger(Trigger):
    """Fires when the task's clock passes the window's end (the default of processing-time windows)."""

    @staticmethod
    def create() -> ProcessingTimeTrigger:
        """The trigger (Flink's ``ProcessingTimeTrigger.create()``)."""
        return ProcessingTimeTrigger()

    def on_element(self, element: Any, timestamp: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        ctx.register_processing_time_timer(window.max_timestamp())
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.FIRE

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        ctx.delete_processing_time_timer(window.max_timestamp())


class NeverTrigger(Trigger):
    """Never fires (the default of ``GlobalWindows``: give it a trigger)."""

    def on_element(self, element: Any, timestamp: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.CONTINUE


def _add(a: int, b: int) -> int:
    return a + b


def _min(a: int, b: int) -> int:
    return min(a, b)


def _positive(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{what} must be an integer > 0, got {value!r}")
    return value


class CountTrigger(Trigger):
    """Fires each time ``max_count`` records were added to the window since it last fired."""

    def __init__(self, max_count: int) -> None:
        self.max_count = _positive(max_count, "CountTrigger.of(max_count)")
        self._count = ReducingStateDescriptor("count", _add)

    @staticmethod
    def of(max_count: int) -> CountTrigger:
        """A trigger firing every ``max_count`` records."""
        return CountTrigger(max_count)

    def on_element(self, element: Any, timestamp: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        count = ctx.get_partitioned_state(self._count)
        count.add(1)
        if count.get() >= self.max_count:
            count.clear()
            return TriggerResult.FIRE
        return TriggerResult.CONTINUE

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        ctx.get_partitioned_state(self._count).clear()


class PurgingTrigger(Trigger):
    """Wraps a trigger: each of its FIREs purges the window too."""

    def __init__(self, nested: Trigger) -> None:
        if not isinstance(nested, Trigger):
            raise ConfigError(f"PurgingTrigger.of takes a Trigger, got {type(nested).__name__}")
        self.nested = nested

    @staticmethod
    def of(nested: Trigger) -> PurgingTrigger:
        """``nested`` with FIRE turned into FIRE_AND_PURGE."""
        return PurgingTrigger(nested)

    @staticmethod
    def _purging(result: TriggerResult) -> TriggerResult:
        return TriggerResult.FIRE_AND_PURGE if result.is_fire else result

    def on_element(self, element: Any, timestamp: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return self._purging(self.nested.on_element(element, timestamp, window, ctx))

    def on_event_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return self._purging(self.nested.on_event_time(time, window, ctx))

    def on_processing_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return self._purging(self.nested.on_processing_time(time, window, ctx))

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        self.nested.clear(window, ctx)


class ContinuousEventTimeTrigger(Trigger):
    """Fires every ``interval_ms`` of event time while the window is open, and at its end."""

    def __init__(self, interval_ms: int) -> None:
        self.interval = _positive(interval_ms, "ContinuousEventTimeTrigger.of(interval_ms)")
        self._next = ReducingStateDescriptor("fire-time", _min)

    @staticmethod
    def of(interval_ms: int) -> ContinuousEventTimeTrigger:
        """A trigger firing every ``interval_ms`` (``Time.seconds(...)``) of event time."""
        return ContinuousEventTimeTrigger(interval_ms)

    def on_element(self, element: Any, timestamp: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        if window.max_timestamp() <= ctx.get_current_watermark():
            return TriggerResult.FIRE
        ctx.register_event_time_timer(window.max_timestamp())
        fire_time = ctx.get_partitioned_state(self._next)
        if fire_time.get() is None:
            self._register_next(timestamp - timestamp % self.interval + self.interval, window, ctx)
        return TriggerResult.CONTINUE

    def _register_next(self, time: int, window: Any, ctx: TriggerContext) -> None:
        at = min(time, window.max_timestamp())
        ctx.get_partitioned_state(self._next).add(at)
        ctx.register_event_time_timer(at)

    def on_event_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        if time == window.max_timestamp():
            return TriggerResult.FIRE
        fire_time = ctx.get_partitioned_state(self._next)
        if fire_time.get() == time:
            fire_time.clear()
            self._register_next(time + self.interval, window, ctx)
            return TriggerResult.FIRE
        return TriggerResult.CONTINUE

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        fire_time = ctx.get_partitioned_state(self._next)
        at = fire_time.get()
        if at is not None:
            ctx.delete_event_time_timer(at)
            fire_time.clear()


class ContinuousProcessingTimeTrigger(Trigger):
    """Fires every ``interval_ms`` of the task's clock while the window is open, and at its end."""

    def __init__(self, interval_ms: int) -> None:
        self.interval = _positive(interval_ms, "ContinuousProcessingTimeTrigger.of(interval_ms)")
        self._next = ReducingStateDescriptor("fire-time", _min)

    @staticmethod
    def of(interval_ms: int) -> ContinuousProcessingTimeTrigger:
        """A trigger firing every ``interval_ms`` of processing time."""
        return ContinuousProcessingTimeTrigger(interval_ms)

    def on_element(self, element: Any, timestamp: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        fire_time = ctx.get_partitioned_state(self._next)
        if fire_time.get() is None:
            now = ctx.get_current_processing_time()
            self._register_next(now - now % self.interval + self.interval, window, ctx)
        return TriggerResult.CONTINUE

    def _register_next(self, time: int, window: Any, ctx: TriggerContext) -> None:
        at = min(time, window.max_timestamp())
        ctx.get_partitioned_state(self._next).add(at)
        ctx.register_processing_time_timer(at)

    def on_processing_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        fire_time = ctx.get_partitioned_state(self._next)
        if fire_time.get() == time:
            fire_time.clear()
            if time < window.max_timestamp():
                self._register_next(time + self.interval, window, ctx)
            return TriggerResult.FIRE
        return TriggerResult.CONTINUE

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        fire_time = ctx.get_partitioned_state(self._next)
        at = fire_time.get()
        if at is not None:
            ctx.delete_processing_time_timer(at)
            fire_time.clear()


__all__ = [
    "ContinuousEventTimeTrigger",
    "ContinuousProcessingTimeTrigger",
    "CountTrigger",
    "EventTimeTrigger",
    "NeverTrigger",
    "ProcessingTimeTrigger",
    "PurgingTrigger",
    "Trigger",
    "TriggerContext",
    "TriggerResult",
]
