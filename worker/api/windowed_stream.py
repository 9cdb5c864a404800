"""``WindowedStream``: a keyed stream cut into windows, finished with ``aggregate``, ``reduce`` or ``process``.

Built by ``KeyedStream.window`` / ``count_window`` and ``DataStream.window_all`` / ``count_window_all``
(``api/datastream.py``); it records one window transformation through the keyed stream it came from
(which it knows only as a value, so this module does not import ``datastream`` back). The runtime picks
the window operator from its options: ``EventWindowOperator`` for the assigner's default trigger,
``TriggerWindowOperator`` with a trigger, an evictor or global windows (``runtime/time_operators.py``).
"""

from __future__ import annotations

from typing import Any

from streamjob.worker.api.evictors import Evictor
from streamjob.worker.api.side_outputs import tag_name
from streamjob.worker.api.triggers import Trigger
from streamjob.worker.api.windows import (
    GlobalWindows,
    ProcessAllWindowFunction,
    ProcessWindowFunction,
    WindowAssigner,
    all_window_function,
)
from streamjob.worker.errors import ConfigError
from streamjob.worker.graph.transformations import Kind


class WindowedStream:
    """A keyed stream cut into windows; finish it with ``aggregate``, ``reduce`` or ``process``.

    ``aggregate`` and ``reduce`` keep one accumulator per key and window (never the records);
    given a ``ProcessWindowFunction`` too, it receives the one pre-aggregated result when the
    window fires. ``process`` alone keeps the window's records.
    """

    def __init__(self, keyed: Any, assigner: WindowAssigner) -> None:
        self.keyed = keyed
        self.assigner = assigner
        self._lateness_ms = 0
        self._trigger: Trigger | None = None
        self._evictor: Evictor | None = None
        self._late_tag: str | None = None
        self._all = False

    def allowed_lateness(self, lateness_ms: int) -> WindowedStream:
        """Keeps each event-time window this long after its end: later records fire it again."""
        if isinstance(lateness_ms, bool) or not isinstance(lateness_ms, int) or lateness_ms < 0:
            raise ConfigError(f"allowed_lateness takes milliseconds >= 0 (Time.seconds(...)), got {lateness_ms!r}")
        self._lateness_ms = lateness_ms
        return self

    def trigger(self, trigger: Trigger) -> WindowedStream:
        """Replaces the assigner's default trigger (``api/triggers.py``): when windows fire and purge."""
        if not isinstance(trigger, Trigger):
            raise ConfigError(f"trigger() takes a Trigger (e.g. CountTrigger.of(100)), got {type(trigger).__name__}")
        self._trigger = self._unmerged(trigger, "trigger")
        return self

    def evictor(self, evictor: Evictor) -> WindowedStream:
        """Removes records from a firing window before/after its function (``api/evictors.py``)."""
        if not isinstance(evictor, Evictor):
            raise ConfigError(f"evictor() takes an Evictor (e.g. CountEvictor.of(10)), got {type(evictor).__name__}")
        self._evictor = self._unmerged(evictor, "evictor")
        return self

    def side_output_late_data(self, tag: Any) -> WindowedStream:
        """Late records the windows no longer take go to the result's ``get_side_output(tag)``, not dropped."""
        self._late_tag = tag_name(tag, "side_output_late_data")
        return self

    def _unmerged(self, part: Any, what: str) -> Any:
        if self.assigner.is_merging:
            raise ConfigError(
                f"{type(self.assigner).__name__} merges windows and takes only its default trigger and no "
                f"{what} yet: use tumbling or sliding windows, or drop .{what}(...)"
            )
        return part

    def _non_parallel(self) -> WindowedStream:
        self._all = True
        return self

    def _window(self, name: str, aggregation: tuple[str, Any], func: Any) -> Any:
        if self._all and isinstance(func, ProcessAllWindowFunction):
            func = all_window_function(func)
        if func is not None and not isinstance(func, ProcessWindowFunction):
            raise ConfigError(f"window(...).{name}() takes a ProcessWindowFunction, got {type(func).__name__}")
        env = self.keyed.env
        strategy = self.keyed._timestamps
        generic = self._trigger is not None or self._evictor is not None or isinstance(self.assigner, GlobalWindows)
        options: dict[str, Any] = {}
        if generic:
            options.update(trigger=self._trigger, evictor=self._evictor)
        if self._late_tag is not None:
            options.update(late_tag=self._late_tag, late_timestamps=None if self.keyed._stamped else strategy)
        if self.keyed._stamped:
            options.update(stamped_in=True)  # (timestamp, value) pairs: the operator adds the values
        then = self.keyed._then_raw if self.keyed._stamped else self.keyed._then
        stream = then(
            Kind.EVENT_WINDOW,
            "WindowAll" if self._all else "Window",
            func,
            assigner=self.assigner,
            window_aggregation=aggregation,
            allowed_lateness_ms=self._lateness_ms,
            timestamps=strategy if self.assigner.is_event_time or generic else None,
            state_serializer=lambda: env.internal_state_serializer,
            **options,
        )
        if self._all:
            stream.transformation.max_parallelism = 1  # one subtask sees every record
        if self.assigner.is_event_time:
            # As in Flink, a result carries its window's max_timestamp() (end - 1): later event-time
            # windows and process functions read it (the results are stamped pairs, api/stamped.py).
            stream.transformation.options["result_timestamps"] = True
            stream._stamp_output()
        return stream

    def process(self, func: ProcessWindowFunction[Any, Any, Any] | ProcessAllWindowFunction[Any, Any]) -> Any:
        """Emits ``func``'s outputs for each key and window when the window fires (the window keeps its records)."""
        if self._all and isinstance(func, ProcessAllWindowFunction):
            func = all_window_function(func)
        if not isinstance(func, ProcessWindowFunction):
            raise ConfigError("window(...).process() takes a ProcessWindowFunction")
        return self._window("process", ("records", None), func)

    def reduce(self, func: Any, window_function: ProcessWindowFunction[Any, Any, Any] | None = None) -> Any:
        """Emits each key's window reduced by ``func`` (or ``window_function``'s outputs for that one value)."""
        fn = func.reduce if hasattr(func, "reduce") else func
        if not callable(fn):
            raise ConfigError("window(...).reduce takes a callable (a, b) -> c or a ReduceFunction")
        return self._window("reduce", ("reduce", fn), window_function)

    def aggregate(self, func: Any, window_function: ProcessWindowFunction[Any, Any, Any] | None = None) -> Any:
        """Emits ``func.get_result`` per key and window (an AggregateFunction), or ``window_function``'s outputs."""
        missing = [m for m in ("create_accumulator", "add", "get_result") if not callable(getattr(func, m, None))]
        if missing:
            name = type(func).__name__
            raise ConfigError(f"window(...).aggregate takes an AggregateFunction; {name} lacks {missing}")
        return self._window("aggregate", ("aggregate", func), window_function)
