"""DataStream, KeyedStream and WindowedStream: the transformations a job author chains together.

Each call records a ``Transformation`` in the environment's pipeline; nothing runs until
``execute``. Functions may be Function objects (``MapFunction``...) or plain callables. A stream
knows its environment only as a ``Pipeline`` (the environment module builds streams, so this one
does not import it back).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any, Protocol

from streamjob.worker.api.functions import (
    Collector,
    FilterFunction,
    FlatMapFunction,
    KeyedProcessFunction,
    KeySelector,
    MapFunction,
    ProcessFunction,
)
from streamjob.worker.api.sinks import PrintSink, SinkFunction, TwoPhaseCommitSinkFunction
from streamjob.worker.api.windows import ProcessWindowFunction, WindowAssigner, WindowContext
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

    def get_parallelism(self) -> int:
        """The parallelism this operator will run with."""
        return self.transformation.parallelism or self.env.parallelism

    # -- partitioning ---------------------------------------------------------------------------
    def _with(self, partitioning: Partitioning) -> DataStream:
        return DataStream(self.env, self.transformation, partitioning)

    def rebalance(self) -> DataStream:
        """Round-robin to the next operator's subtasks."""
        return self._with(Partitioning.REBALANCE)

    def forward(self) -> DataStream:
        """Subtask i to subtask i (needs equal parallelism)."""
        return self._with(Partitioning.FORWARD)

    def broadcast(self) -> DataStream:
        """Every record to every subtask of the next operator."""
        return self._with(Partitioning.BROADCAST)

    def key_by(self, key_selector: Any) -> KeyedStream:
        """Partitions by key: records with equal keys go to the same subtask and share keyed state.

        ``key_selector`` is a function of the record, a ``KeySelector``, or a tuple index (``key_by(0)``).
        """
        index = key_selector if isinstance(key_selector, int) and not isinstance(key_selector, bool) else None
        return KeyedStream(self.env, self.transformation, _key_selector(key_selector), index)

    # -- transformations -----------------------------------------------------------------------
    def _edge(self) -> Edge:
        return Edge(self.transformation.id, self._partitioning)

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

    def map(self, func: MapFunction[Any, Any] | Any) -> DataStream:
        """One output per record."""
        return self._then(Kind.MAP, "Map", _callable_of(func, "map", "map"))

    def flat_map(self, func: FlatMapFunction[Any, Any] | Any) -> DataStream:
        """Zero or more outputs per record (return an iterable or use the collector)."""
        return self._then(Kind.FLAT_MAP, "FlatMap", _callable_of(func, "flat_map", "flat_map"))

    def filter(self, func: FilterFunction[Any] | Any) -> DataStream:
        """Keeps records for which ``func`` is true."""
        return self._then(Kind.FILTER, "Filter", _callable_of(func, "filter", "filter"))

    def process(self, func: ProcessFunction[Any, Any]) -> DataStream:
        """Per-record processing with a collector."""
        if isinstance(func, KeyedProcessFunction):
            raise PipelineError("a KeyedProcessFunction needs a keyed stream: call key_by() before process()")
        return self._then(Kind.PROCESS, "Process", func)

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
        return DataStream(self.env, t)

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
        self.key_selector = key_selector
        self.key_index = key_index

    def _edge(self) -> Edge:
        return Edge(self.transformation.id, Partitioning.HASH, self.key_selector)

    def _then(self, kind: Kind, name: str, function: Any, **options: Any) -> DataStream:
        stream = super()._then(kind, name, function, **options)
        stream.transformation.key_selector = self.key_selector
        if self.key_index is not None:
            stream.transformation.options.setdefault("key_index", self.key_index)
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

    def process(self, func: Any) -> DataStream:
        """A ``KeyedProcessFunction``: per-record processing with keyed state and timers."""
        if not isinstance(func, KeyedProcessFunction):
            raise PipelineError("process() on a keyed stream takes a KeyedProcessFunction")
        return self._then(Kind.KEYED_PROCESS, "KeyedProcess", func)

    def window(self, assigner: WindowAssigner) -> WindowedStream:
        """Groups each key's records into windows (tumbling processing-time windows)."""
        return WindowedStream(self, assigner)


class WindowedStream:
    """A keyed stream cut into windows; finish it with ``process``, ``reduce`` or ``aggregate``."""

    def __init__(self, keyed: KeyedStream, assigner: WindowAssigner) -> None:
        self.keyed = keyed
        self.assigner = assigner

    def process(self, func: ProcessWindowFunction[Any, Any, Any]) -> DataStream:
        """Emits ``func``'s outputs for each key and window when the window ends."""
        if not isinstance(func, ProcessWindowFunction):
            raise ConfigError("window(...).process() takes a ProcessWindowFunction")
        env = self.keyed.env
        return self.keyed._then(
            Kind.WINDOW, "Window", func, assigner=self.assigner, state_serializer=lambda: env.internal_state_serializer
        )

    def reduce(self, func: Any) -> DataStream:
        """Emits the reduction of each key's window."""
        return self.process(_ReduceWindow(func))

    def aggregate(self, func: Any) -> DataStream:
        """Emits ``func.get_result`` of each key's window (an AggregateFunction)."""
        return self.process(_AggregateWindow(func))


class _ReduceWindow(ProcessWindowFunction[Any, Any, Any]):
    def __init__(self, fn: Any) -> None:
        self.fn = fn.reduce if hasattr(fn, "reduce") else fn

    def process(self, key: Any, context: WindowContext, elements: Iterable[Any], out: Collector[Any]) -> None:
        acc: Any = None
        first = True
        for e in elements:
            acc = e if first else self.fn(acc, e)
            first = False
        if not first:
            out.collect(acc)


class _AggregateWindow(ProcessWindowFunction[Any, Any, Any]):
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def process(self, key: Any, context: WindowContext, elements: Iterable[Any], out: Collector[Any]) -> None:
        acc = self.fn.create_accumulator()
        for e in elements:
            acc = self.fn.add(e, acc)
        out.collect(self.fn.get_result(acc))
