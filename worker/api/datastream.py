"""DataStream and KeyedStream: the transformations a job author chains together.

Each call records a ``Transformation`` in the environment's pipeline; nothing runs until
``execute``. Functions may be Function objects (``MapFunction``...) or plain callables. A stream
knows its environment only as a ``Pipeline`` (the environment module builds streams, so this one
does not import it back). Windows continue in ``api/windowed_stream.py``; on event-time streams
``map``/``flat_map``/``filter``/``process`` keep timestamps (``api/stamped.py``).
"""

from __future__ import annotations

import copy
import operator
from typing import Any, Protocol

from streamjob.worker.api import connected, joins
from streamjob.worker.api.evictors import CountEvictor
from streamjob.worker.api.functions import (
    FilterFunction,
    FlatMapFunction,
    KeyedProcessFunction,
    KeySelector,
    MapFunction,
    ProcessFunction,
)
from streamjob.worker.api.side_outputs import tag_name
from streamjob.worker.api.sinks import PrintSink, SinkFunction, TwoPhaseCommitSinkFunction
from streamjob.worker.api.stamped import CARRIED, OnValue, stamp_options
from streamjob.worker.api.triggers import CountTrigger, PurgingTrigger
from streamjob.worker.api.watermarks import WatermarkStrategy
from streamjob.worker.api.windowed_stream import WindowedStream
from streamjob.worker.api.windows import (
    GlobalWindows,
    WindowAssigner,
)
from streamjob.worker.errors import ConfigError, PipelineError
from streamjob.worker.graph.transformations import Edge, Kind, Partitioning, Transformation
from streamjob.worker.state.serializers import Serializer


class Pipeline(Protocol):
    """What a stream needs of its ``StreamExecutionEnvironment``: the pipeline it appends to."""

    transformations: list[Transformation]
    parallelism: int
    internal_state_serializer: Serializer | None


def _callable_of(function: Any, method: str, what: str) -> Any:
    if hasattr(function, method):
        return function
    if callable(function):
        return function
    raise ConfigError(f"{what} takes a callable or an object with .{method}(), got {type(function).__name__}")


def _key_selector(selector: Any) -> Any:
    if isinstance(selector, KeySelector):
        return selector.get_key
    if isinstance(selector, int) and not isinstance(selector, bool):
        return operator.itemgetter(selector)  # type: ignore[attr-defined]  # mypy sees operator/ (ours)
    if callable(selector):
        return selector
    raise ConfigError(f"key_by takes a function, a KeySelector or a tuple index, got {selector!r}")


class DataStream:
    """A stream of records produced by one transformation."""

    # The WatermarkStrategy whose timestamps these records carry: set by assign_timestamps_and_watermarks
    # and kept by the operations that pass records unchanged (key_by, filter, partitioning, union).
    _timestamps: WatermarkStrategy | None = None
    # Whether the records are (timestamp, value) pairs: see api/stamped.py (map/flat_map/process keep timestamps).
    _stamped = False
    _unstamp: Transformation | None = None

    def __init__(
        self,
        env: Pipeline,
        transformation: Transformation,
        partitioning: Partitioning = Partitioning.FORWARD,
    ) -> None:
        self.env = env
        self.transformation = transformation
        self._partitioning = partitioning

    # -- operator settings (apply to the transformation that produced this stream) --------------
    def uid(self, uid: str) -> DataStream:
        """The stable id that keys this operator's state in checkpoints; set it on stateful operators."""
        if not uid or not isinstance(uid, str):
            raise ConfigError("uid must be a non-empty string")
        self.transformation.uid = uid
        return self

    def name(self, name: str) -> DataStream:
        """A display name for metrics and logs."""
        self.transformation.name = name
        return self

    def set_parallelism(self, parallelism: int) -> DataStream:
        """This operator's parallelism (default: the environment's)."""
        if not isinstance(parallelism, int) or parallelism < 1:
            raise ConfigError(f"set_parallelism takes an integer >= 1, got {parallelism!r}")
        limit = self.transformation.max_parallelism
        if limit is not None and parallelism > limit:
            raise ConfigError(
                f"operator '{self.transformation.name}' is non-parallel; it cannot run with parallelism {parallelism}"
            )
        self.transformation.parallelism = parallelism
        return self

    def set_max_parallelism(self, max_parallelism: int) -> DataStream:
        """This operator's number of key groups (default: the environment's)."""
        self.transformation.max_parallelism = max_parallelism
        return self

    def slot_sharing_group(self, name: str) -> DataStream:
        """Runs this operator in the slots of group ``name`` (docs/user-guide.md, "Slot sharing groups").

        Operators of other groups run in other slot processes (another core) and never chain with it;
        operators after it inherit the group. Default: the inputs' group, else ``"default"``.
        """
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"slot_sharing_group takes a non-empty group name such as 'keyed', got {name!r}")
        self.transformation.slot_sharing_group = name
        return self

    def get_parallelism(self) -> int:
        """The parallelism this operator will run with."""
        return self.transformation.parallelism or self.env.parallelism

    # -- partitioning ---------------------------------------------------------------------------
    def _with(self, partitioning: Partitioning) -> DataStream:
        stream = DataStream(self.env, self.transformation, partitioning)
        stream._timestamps = self._timestamps
        stream._stamped, stream._unstamp = self._stamped, self._unstamp
        return stream

    def assign_timestamps_and_watermarks(self, strategy: WatermarkStrategy) -> DataStream:
        """Event time from here on: each record's timestamp and the watermarks ``strategy`` generates."""
        if not isinstance(strategy, WatermarkStrategy):
            raise ConfigError(
                "assign_timestamps_and_watermarks takes a WatermarkStrategy, e.g. "
                "WatermarkStrategy.for_bounded_out_of_orderness(200).with_timestamp_assigner(lambda r: r.ts)"
            )
        stream = self._then(Kind.TIMESTAMPS, "Timestamps/Watermarks", None, strategy=strategy)
        stream._timestamps = strategy
        return stream

    def rebalance(self) -> DataStream:
        """Round-robin to the next operator's subtasks."""
        return self._with(Partitioning.REBALANCE)

    def forward(self) -> DataStream:
        """Subtask i to subtask i (needs equal parallelism)."""
        return self._with(Partitioning.FORWARD)

    def broadcast(self, *descriptors: Any) -> Any:
        """Every record to every subtask of the next operator.

        Given ``MapStateDescriptor`` s, a ``BroadcastStream`` with that broadcast state instead:
        ``data.connect(rules.broadcast(descriptor)).process(...)`` (``api/connected.py``).
        """
        if descriptors:
            return connected.BroadcastStream(self, descriptors)
        return self._with(Partitioning.BROADCAST)

    def key_by(self, key_selector: Any) -> KeyedStream:
        """Partitions by key: records with equal keys go to the same subtask and share keyed state.

        ``key_selector`` is a function of the record, a ``KeySelector``, or a tuple index (``key_by(0)``).
        """
        index = key_selector if isinstance(key_selector, int) and not isinstance(key_selector, bool) else None
        selector = _key_selector(key_selector)
        if self._stamped:
            keyed = KeyedStream(self.env, self.transformation, OnValue(selector))
            keyed._stamped, keyed._plain_selector, keyed._unstamp = True, selector, self._unstamp
        else:
            keyed = KeyedStream(self.env, self.transformation, selector, index)
        keyed._timestamps = self._timestamps
        return keyed

    # -- transformations -----------------------------------------------------------------------
    def _edge(self) -> Edge:
        """The edge a consumer reads this stream by: plain values (a stamped stream's pairs are unstamped first)."""
        if self._stamped:
            return self._unstamped()._edge()
        return Edge(self.transformation.id, self._partitioning)

    def _raw_edge(self) -> Edge:
        """The edge to this stream's records as they are (pairs, when stamped)."""
        return Edge(self.transformation.id, self._partitioning)

    def _unstamped(self) -> DataStream:
        """This stamped stream's values, through its ``unstamp`` operator (chained to the producer)."""
        assert self._unstamp is not None
        return DataStream(self.env, self._unstamp, self._partitioning)

    def _then(self, kind: Kind, name: str, function: Any, **options: Any) -> DataStream:
        t = Transformation(
            id=len(self.env.transformations) + 1,
            kind=kind,
            name=name,
            function=function,
            inputs=[self._edge()],
            options=dict(options),
        )
        self.env.transformations.append(t)
        return DataStream(self.env, t)

    def _then_raw(self, kind: Kind, name: str, function: Any, **options: Any) -> DataStream:
        """``_then`` reading the records as they are (the operators that read stamped pairs)."""
        t = Transformation(
            id=len(self.env.transformations) + 1,
            kind=kind,
            name=name,
            function=function,
            inputs=[self._raw_edge()],
            options=dict(options),
        )
        self.env.transformations.append(t)
        return DataStream(self.env, t)

    def _stamping(self, kind: Kind, name: str, function: Any, operation: str) -> DataStream:
        """A one-input operator whose outputs keep their record's timestamp (``api/stamped.py``)."""
        stream = self._then_raw(kind, name, function, **stamp_options(self._stamped, self._timestamps, operation))
        stream._stamp_output()
        return stream

    def _stamp_output(self) -> None:
        """This stream's records are ``(timestamp, value)`` pairs: consumers that read no timestamp get the values.

        The ``unstamp`` companion is created now, so that every later transformation's id is free; the job
        graph drops it while nothing reads it.
        """
        producer = self.transformation
        self._stamped, self._timestamps = True, CARRIED
        self._unstamp = Transformation(
            id=len(self.env.transformations) + 1,
            kind=Kind.MAP,
            name="Unstamp",
            function=None,
            inputs=[Edge(producer.id, Partitioning.FORWARD)],
            options={"stamp": "unstamp"},
        )
        self.env.transformations.append(self._unstamp)

    def map(self, func: MapFunction[Any, Any] | Any) -> DataStream:
        """One output per record (with the record's timestamp, on an event-time stream)."""
        f = _callable_of(func, "map", "map")
        if self._timestamps is not None:
            return self._stamping(Kind.MAP, "Map", f, "map")
        return self._then(Kind.MAP, "Map", f)

    def flat_map(self, func: FlatMapFunction[Any, Any] | Any) -> DataStream:
        """Zero or more outputs per record (return an iterable or use the collector)."""
        f = _callable_of(func, "flat_map", "flat_map")
        if self._timestamps is not None:
            return self._stamping(Kind.FLAT_MAP, "FlatMap", f, "flat_map")
        return self._then(Kind.FLAT_MAP, "FlatMap", f)

    def filter(self, func: FilterFunction[Any] | Any) -> DataStream:
        """Keeps records for which ``func`` is true."""
        f = _callable_of(func, "filter", "filter")
        if self._stamped:
            return self._stamping(Kind.FILTER, "Filter", f, "filter")
        stream = self._then(Kind.FILTER, "Filter", f)
        stream._timestamps = self._timestamps
        return stream

    def process(self, func: ProcessFunction[Any, Any]) -> DataStream:
        """Per-record processing with a collector (``ctx.timestamp()``: the record's, on an event-time stream)."""
        if isinstance(func, KeyedProcessFunction):
            raise PipelineError("a KeyedProcessFunction needs a keyed stream: call key_by() before process()")
        if self._timestamps is not None:
            return self._stamping(Kind.PROCESS, "Process", func, "process")
        return self._then(Kind.PROCESS, "Process", func, **self._timestamp_option())

    def _timestamp_option(self) -> dict[str, Any]:
        """The strategy whose timestamps ``ctx.timestamp()`` gives, when the records still carry them."""
        return {} if self._timestamps is None else {"timestamps": self._timestamps}

    def union(self, *streams: DataStream) -> DataStream:
        """All records of this stream and the others (same record type)."""
        from streamjob.worker.graph.transformations import Transformation as T

        t = T(
            id=len(self.env.transformations) + 1,
            kind=Kind.MAP,
            name="Union",
            function=None,
            inputs=[self._edge(), *[s._edge() for s in streams]],
            options={"identity": True},
        )
        for s in streams:
            if s.env is not self.env:
                raise PipelineError("union() needs streams of the same environment")
        self.env.transformations.append(t)
        union = DataStream(self.env, t)
        if all(s._timestamps is self._timestamps for s in streams) and not self._stamped:
            union._timestamps = self._timestamps  # (a stamped stream's values reach the union without timestamps)
        return union

    # -- two inputs (api/connected.py, api/joins.py) ----------------------------------------------
    def connect(self, other: Any) -> Any:
        """Two inputs, one operator: ``ConnectedStreams``, or ``BroadcastConnectedStream`` for a ``BroadcastStream``."""
        return connected.connect(self, other)

    def join(self, other: DataStream) -> joins.JoinedStreams:
        """A window join: ``a.join(b).where(ka).equal_to(kb).window(assigner).apply(f)``."""
        return joins.JoinedStreams(self, other)

    def co_group(self, other: DataStream) -> joins.CoGroupedStreams:
        """A window co-group: ``a.co_group(b).where(ka).equal_to(kb).window(assigner).apply(f)``."""
        return joins.CoGroupedStreams(self, other)

    def _derive(self, transformation: Transformation) -> DataStream:
        """The stream of a transformation this one's helpers built (two-input operators)."""
        return DataStream(self.env, transformation)

    def add_sink(self, sink: SinkFunction | TwoPhaseCommitSinkFunction[Any]) -> DataStreamSink:
        """Writes records to a sink; a ``TwoPhaseCommitSinkFunction`` makes the output exactly-once."""
        if isinstance(sink, TwoPhaseCommitSinkFunction):
            kind = Kind.TWO_PHASE_SINK
        elif isinstance(sink, SinkFunction):
            kind = Kind.SINK
        elif callable(sink):
            kind, sink = Kind.SINK, _CallableSink(sink)
        else:
            raise ConfigError(f"add_sink takes a SinkFunction or a callable, got {type(sink).__name__}")
        return DataStreamSink(self.env, self._then(kind, "Sink", sink).transformation)

    sink_to = add_sink

    def print(self, sink_identifier: str | None = None) -> DataStreamSink:
        """Prints every record to stdout."""
        return self.add_sink(PrintSink(sink_identifier)).name("Print")  # type: ignore[return-value]

    # -- side outputs and non-keyed windows ----------------------------------------------------
    def get_side_output(self, tag: Any) -> DataStream:
        """The records this operator emitted with ``ctx.output(tag, ...)`` (or its late data), as a stream."""
        name = tag_name(tag, "get_side_output")
        producer = self.transformation
        t = Transformation(
            id=len(self.env.transformations) + 1,
            kind=Kind.MAP,
            name=f"SideOutput({name})",
            function=None,
            inputs=[Edge(producer.id, Partitioning.FORWARD, None, name)],
            parallelism=producer.parallelism,
            options={"identity": True},
        )
        self.env.transformations.append(t)
        stream = DataStream(self.env, t)
        if producer.options.get("late_tag") == name:
            stream._timestamps = producer.options.get("late_timestamps")  # late records keep their timestamps
        return stream

    def window_all(self, assigner: WindowAssigner) -> WindowedStream:
        """Windows over the whole stream (not per key), in one subtask (Flink's ``windowAll``)."""
        return self.key_by(_all_records_key).window(assigner)._non_parallel()

    def count_window_all(self, size: int, slide: int | None = None) -> WindowedStream:
        """``window_all`` of ``size`` records (every ``slide`` records: sliding), by count."""
        return self.key_by(_all_records_key).count_window(size, slide)._non_parallel()


def _all_records_key(record: Any) -> int:
    """The key of ``window_all``: one for every record."""
    return 0


class DataStreamSink(DataStream):
    """The end of a pipeline branch; exists to set uid, name and parallelism of the sink."""


class _CallableSink(SinkFunction):
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def invoke(self, value: Any) -> None:
        self.fn(value)


class KeyedStream(DataStream):
    """A stream partitioned by key; operators on it have keyed state and timers."""

    def __init__(
        self,
        env: Pipeline,
        transformation: Transformation,
        key_selector: Any,
        key_index: int | None = None,
    ) -> None:
        super().__init__(env, transformation, Partitioning.HASH)
        self.key_selector = key_selector  # of the records as they are (of the pairs' values, when stamped)
        self.key_index = key_index
        self._plain_selector = key_selector  # of plain values

    def _edge(self) -> Edge:
        if self._stamped:
            return Edge(self._unstamped().transformation.id, Partitioning.HASH, self._plain_selector)
        return Edge(self.transformation.id, Partitioning.HASH, self.key_selector)

    def _raw_edge(self) -> Edge:
        return Edge(self.transformation.id, Partitioning.HASH, self.key_selector)

    def _then(self, kind: Kind, name: str, function: Any, **options: Any) -> DataStream:
        stream = super()._then(kind, name, function, **options)
        stream.transformation.key_selector = self._plain_selector
        if self.key_index is not None:
            stream.transformation.options.setdefault("key_index", self.key_index)
        return stream

    def _then_raw(self, kind: Kind, name: str, function: Any, **options: Any) -> DataStream:
        stream = super()._then_raw(kind, name, function, **options)
        stream.transformation.key_selector = self.key_selector
        return stream

    def reduce(self, func: Any) -> DataStream:
        """A running reduction per key: emits the updated value for every record."""
        fn = func.reduce if hasattr(func, "reduce") else func
        if not callable(fn):
            raise ConfigError("reduce takes a callable (a, b) -> c or a ReduceFunction")
        return self._then(Kind.REDUCE, "Reduce", fn)

    def sum(self, position: int | None = None) -> DataStream:
        """A running sum per key of a tuple field (or of the record if it is a number); emits every update."""
        if position is None:
            return self.reduce(lambda a, b: a + b)
        pos = position

        def add(a: Any, b: Any) -> Any:
            return (*a[:pos], a[pos] + b[pos], *a[pos + 1 :])

        stream = self._then(Kind.REDUCE, "Sum", add, sum_field=pos)
        return stream

    def min(self, position: int | str = 0) -> DataStream:
        """Running minimum of a field per key; the other fields stay those of the key's first record."""
        return self._extreme("Min", position, _less, by=False, first=True)

    def max(self, position: int | str = 0) -> DataStream:
        """Running maximum of a field per key; the other fields stay those of the key's first record."""
        return self._extreme("Max", position, _greater, by=False, first=True)

    def min_by(self, position: int | str = 0, first: bool = True) -> DataStream:
        """Per key, the record with the smallest field so far (on ties the first one, or the last if not ``first``)."""
        return self._extreme("MinBy", position, _less, by=True, first=first)

    def max_by(self, position: int | str = 0, first: bool = True) -> DataStream:
        """Per key, the record with the largest field so far (on ties the first one, or the last if not ``first``)."""
        return self._extreme("MaxBy", position, _greater, by=True, first=first)

    def _extreme(self, name: str, position: int | str, better: Any, *, by: bool, first: bool) -> DataStream:
        if isinstance(position, bool) or not isinstance(position, int | str):
            raise ConfigError(f"{name.lower()}() takes a field position (int) or attribute/key name (str)")
        return self._then(Kind.REDUCE, name, _Extreme(position, better, by, first))

    def process(self, func: Any) -> DataStream:
        """A ``KeyedProcessFunction``: per-record processing with keyed state and timers."""
        if not isinstance(func, KeyedProcessFunction):
            raise PipelineError("process() on a keyed stream takes a KeyedProcessFunction")
        if self._timestamps is not None:
            return self._stamping(Kind.KEYED_PROCESS, "KeyedProcess", func, "process")
        return self._then(Kind.KEYED_PROCESS, "KeyedProcess", func, **self._timestamp_option())

    def interval_join(self, other: KeyedStream) -> joins.IntervalJoin:
        """An event-time interval join with another keyed stream: ``.between(lower, upper).process(f)``."""
        return joins.IntervalJoin(self, other)

    def window(self, assigner: WindowAssigner) -> WindowedStream:
        """Groups each key's records into the windows ``assigner`` gives them (see ``api/windows.py``)."""
        if not isinstance(assigner, WindowAssigner):
            raise ConfigError(f"window() takes a WindowAssigner, got {type(assigner).__name__}")
        if assigner.is_event_time and self._timestamps is None:
            raise ConfigError(
                f"{type(assigner).__name__} needs event timestamps: call "
                "assign_timestamps_and_watermarks(WatermarkStrategy...) on the stream before key_by(...)"
            )
        return WindowedStream(self, assigner)

    def count_window(self, size: int, slide: int | None = None) -> WindowedStream:
        """Windows of ``size`` records per key; with ``slide``, the last ``size`` records every ``slide`` records.

        As Flink's: ``GlobalWindows`` with ``PurgingTrigger.of(CountTrigger.of(size))``, or with
        ``CountEvictor.of(size)`` and ``CountTrigger.of(slide)``. A key's last, partial window is not emitted.
        """
        for value, what in ((size, "size"), (slide, "slide")):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ConfigError(f"count_window {what} must be an integer > 0, got {value!r}")
        windowed = self.window(GlobalWindows.create())
        if slide is None:
            return windowed.trigger(PurgingTrigger.of(CountTrigger.of(size)))
        return windowed.evictor(CountEvictor.of(size)).trigger(CountTrigger.of(slide))


def _less(a: Any, b: Any) -> bool:
    return bool(a < b)


def _greater(a: Any, b: Any) -> bool:
    return bool(a > b)


class _Extreme:
    """The reduce function of ``min``/``max``/``min_by``/``max_by`` (a picklable object, not a closure)."""

    def __init__(self, position: int | str, better: Any, by: bool, first: bool) -> None:
        self.position, self.better, self.by, self.first = position, better, by, first

    def _field(self, record: Any) -> Any:
        p = self.position
        if isinstance(p, int):
            return record[p]
        return record[p] if isinstance(record, dict) else getattr(record, p)

    def _with_field(self, record: Any, value: Any) -> Any:
        p = self.position
        if isinstance(record, tuple) and isinstance(p, int):
            return (*record[:p], value, *record[p + 1 :])
        if isinstance(record, list) and isinstance(p, int):
            items = record.copy()
            items[p] = value
            return items
        if isinstance(record, dict):
            mapping = record.copy()
            mapping[p] = value
            return mapping
        out = copy.copy(record)
        setattr(out, str(p), value)
        return out

    def __call__(self, acc: Any, record: Any) -> Any:
        old, new = self._field(acc), self._field(record)
        if self.by:
            if self.better(new, old) or (not self.first and new == old):
                return record
            return acc
        return self._with_field(acc, new) if self.better(new, old) else acc
