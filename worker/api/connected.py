"""Two-input streams: ``connect`` (ConnectedStreams) and broadcast state (BroadcastStream).

``a.connect(b)`` records nothing until a co-function is given; then each input gets a *tag*
transformation (``Kind.TAG``, chained to the input's last operator, same parallelism) that turns a
record ``r`` into ``(0, r)`` or ``(1, r)``, and one two-input transformation (``Kind.CO_PROCESS``)
reads both tagged inputs. The task of a two-input operator is an ordinary consumer with the
channels of both inputs: barrier alignment, the watermark valve (the minimum over both inputs'
channels) and the end of input (a finished input's channels count as ``MAX_WATERMARK``, the
operator goes on with the other) work over all of them, and a replayed in-flight record still
says which input it came from. Keyed inputs are partitioned by their own key selector applied to
the untagged record, so equal keys of both inputs meet in one subtask and share keyed state.

This module does not import ``datastream`` (which imports it): streams are seen through the small
``ConnectableStream`` protocol, and results are built by the first stream's ``_derive``. Callers:
``DataStream.connect``/``broadcast``, ``api/joins.py``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

from streamjob.worker.api.co_functions import (
    BroadcastProcessFunction,
    CoFlatMapFunction,
    CoMapFunction,
    CoProcessFunction,
    KeyedBroadcastProcessFunction,
    KeyedCoProcessFunction,
)
from streamjob.worker.api.stamped import event_time_of, plain_source_id
from streamjob.worker.api.watermarks import WatermarkStrategy
from streamjob.worker.errors import ConfigError, PipelineError
from streamjob.worker.graph.transformations import Edge, Kind, Partitioning, Transformation
from streamjob.worker.state.descriptors import MapStateDescriptor


class ConnectableStream(Protocol):
    """What this module needs of a ``DataStream`` (or ``KeyedStream``, which adds ``key_selector``)."""

    env: Any
    transformation: Transformation
    _partitioning: Partitioning
    _timestamps: WatermarkStrategy | None

    def _derive(self, transformation: Transformation) -> Any: ...

    def key_by(self, key_selector: Any) -> Any: ...


class OnValue:
    """A key selector of a tagged record ``(side, value)`` that applies the input's own selector to ``value``."""

    __slots__ = ("selector",)

    def __init__(self, selector: Any) -> None:
        self.selector = selector

    def __call__(self, tagged: tuple[int, Any]) -> Any:
        return self.selector(tagged[1])


class SideKey:
    """The key of a tagged record: the selector of the input it came from (a broadcast input has none)."""

    __slots__ = ("selectors",)

    def __init__(self, first: Any, second: Any) -> None:
        self.selectors = (first, second)

    def __call__(self, tagged: tuple[int, Any]) -> Any:
        selector = self.selectors[tagged[0]]
        return None if selector is None else selector(tagged[1])


class SideTimestamps:
    """A ``TimestampAssigner`` of tagged records: each input's own strategy (for ``ctx.timestamp()``, joins)."""

    __slots__ = ("strategies",)

    def __init__(self, first: WatermarkStrategy, second: WatermarkStrategy) -> None:
        self.strategies = (first, second)

    def extract_timestamp(self, value: tuple[int, Any], record_timestamp: int | None) -> int:
        return self.strategies[value[0]].timestamp_of(value[1], record_timestamp)


def tagged_strategy(first: WatermarkStrategy | None, second: WatermarkStrategy | None) -> WatermarkStrategy | None:
    """The strategy giving a tagged record its input's timestamp; None unless both inputs carry timestamps."""
    if first is None or second is None:
        return None
    return replace(first, assigner=SideTimestamps(first, second))


def key_selector_of(stream: ConnectableStream) -> Any:
    """The stream's key selector when it is keyed (``key_by``), else None."""
    if stream._partitioning is Partitioning.HASH:
        return getattr(stream, "_plain_selector", None) or getattr(stream, "key_selector", None)  # of the values
    return None


def tag_input(stream: ConnectableStream, side: int, partitioning: Partitioning | None = None) -> Edge:
    """Appends ``stream``'s tag transformation; returns the edge from it to the two-input operator."""
    env = stream.env
    tag = Transformation(
        id=len(env.transformations) + 1,
        kind=Kind.TAG,
        name=f"Tag{side + 1}",
        function=None,
        inputs=[Edge(plain_source_id(stream), Partitioning.FORWARD)],  # values, not stamped pairs
        options={"side": side},
    )
    env.transformations.append(tag)
    selector = key_selector_of(stream)
    if partitioning is None and selector is not None:
        return Edge(tag.id, Partitioning.HASH, OnValue(selector))
    return Edge(tag.id, partitioning or stream._partitioning)


def two_input(
    first: ConnectableStream,
    inputs: list[Edge],
    name: str,
    function: Any,
    key_selector: Any,
    **options: Any,
) -> Any:
    """Appends the two-input transformation reading ``inputs`` (the tag edges); returns its stream."""
    env = first.env
    t = Transformation(
        id=len(env.transformations) + 1,
        kind=Kind.CO_PROCESS,
        name=name,
        function=function,
        inputs=inputs,
        key_selector=key_selector,
        options=dict(options),
    )
    env.transformations.append(t)
    return first._derive(t)


def _check_same_env(first: ConnectableStream, second: Any, what: str) -> None:
    if getattr(second, "env", None) is not first.env:
        raise PipelineError(f"{what} needs two streams of the same StreamExecutionEnvironment")


class ConnectedStreams:
    """Two streams, possibly of different types, processed by one co-function (``a.connect(b)``).

    ``map1``/``flat_map1``/``process_element1`` get the first stream's records, the ``2`` methods the
    second's. When both streams are keyed (or after ``key_by(key1, key2)``), records of equal keys
    go to the same subtask and the function's keyed state and timers are shared by both inputs.
    """

    def __init__(self, first: ConnectableStream, second: ConnectableStream) -> None:
        _check_same_env(first, second, "connect()")
        self.first = first
        self.second = second

    def key_by(self, key1: Any, key2: Any) -> ConnectedStreams:
        """Keys both inputs (``key1`` of the first's records, ``key2`` of the second's); equal keys meet."""
        return ConnectedStreams(self.first.key_by(key1), self.second.key_by(key2))

    @property
    def keyed(self) -> bool:
        """Whether both inputs are keyed (one keyed input alone is refused when an operator is added)."""
        return key_selector_of(self.first) is not None and key_selector_of(self.second) is not None

    def _key_selector(self, what: str) -> Any:
        first, second = key_selector_of(self.first), key_selector_of(self.second)
        if (first is None) != (second is None):
            raise PipelineError(
                f"connect(...).{what}: only one of the two streams is keyed; key both (a.key_by(f1).connect("
                "b.key_by(f2)), or connect(...).key_by(f1, f2)) or neither"
            )
        return None if first is None else SideKey(first, second)

    def _then(self, name: str, co_kind: str, function: Any) -> Any:
        selector = self._key_selector(co_kind)
        inputs = [tag_input(self.first, 0), tag_input(self.second, 1)]
        timestamps = (event_time_of(self.first), event_time_of(self.second))
        return two_input(self.first, inputs, name, function, selector, co_kind=co_kind, timestamps=timestamps)

    def map(self, func: CoMapFunction[Any, Any, Any]) -> Any:
        """One output per record of either input: ``func.map1`` / ``func.map2``."""
        _require_methods(func, "map", ("map1", "map2"), "a CoMapFunction")
        return self._then("CoMap", "map", func)

    def flat_map(self, func: CoFlatMapFunction[Any, Any, Any]) -> Any:
        """Zero or more outputs per record: ``func.flat_map1`` / ``func.flat_map2``."""
        _require_methods(func, "flat_map", ("flat_map1", "flat_map2"), "a CoFlatMapFunction")
        return self._then("CoFlatMap", "flat_map", func)

    def process(self, func: CoProcessFunction[Any, Any, Any] | KeyedCoProcessFunction[Any, Any, Any, Any]) -> Any:
        """A ``CoProcessFunction``, or on keyed inputs a ``KeyedCoProcessFunction`` (keyed state, timers)."""
        if isinstance(func, KeyedCoProcessFunction):
            if not self.keyed:
                raise PipelineError(
                    "a KeyedCoProcessFunction needs keyed inputs: a.key_by(f1).connect(b.key_by(f2)), or "
                    "a.connect(b).key_by(f1, f2)"
                )
            return self._then("KeyedCoProcess", "process", func)
        if not isinstance(func, CoProcessFunction):
            raise ConfigError(
                f"connect(...).process takes a CoProcessFunction or a KeyedCoProcessFunction, got {type(func).__name__}"
            )
        return self._then("CoProcess", "process", func)


def _require_methods(func: Any, what: str, methods: tuple[str, ...], kind: str) -> None:
    missing = [m for m in methods if not callable(getattr(func, m, None))]
    if missing:
        raise ConfigError(f"connect(...).{what} takes {kind}; {type(func).__name__} lacks {', '.join(missing)}()")


class BroadcastStream:
    """A stream sent whole to every subtask of the operator it is connected to, with broadcast state.

    ``stream.broadcast(descriptor, ...)`` declares the ``MapStateDescriptor`` s of the broadcast state;
    ``data.connect(broadcast_stream).process(...)`` adds the operator.
    """

    def __init__(self, stream: ConnectableStream, descriptors: tuple[Any, ...]) -> None:
        for d in descriptors:
            if not isinstance(d, MapStateDescriptor):
                raise ConfigError(
                    "broadcast(...) takes MapStateDescriptor(s) naming the broadcast state, e.g. "
                    f"broadcast(MapStateDescriptor('rules', str, dict)); got {type(d).__name__}"
                )
        names = [d.name for d in descriptors]
        if len(set(names)) != len(names):
            raise ConfigError(f"broadcast(...) got two descriptors of one name: {sorted(names)}")
        self.stream = stream
        self.descriptors = descriptors


class BroadcastConnectedStream:
    """A data stream (keyed or not) connected to a ``BroadcastStream``; finish it with ``process``."""

    def __init__(self, data: ConnectableStream, broadcast: BroadcastStream) -> None:
        _check_same_env(data, broadcast.stream, "connect()")
        self.data = data
        self.broadcast = broadcast

    def process(
        self, func: BroadcastProcessFunction[Any, Any, Any] | KeyedBroadcastProcessFunction[Any, Any, Any, Any]
    ) -> Any:
        """A ``KeyedBroadcastProcessFunction`` on a keyed data stream, else a ``BroadcastProcessFunction``."""
        selector = key_selector_of(self.data)
        if selector is not None and not isinstance(func, KeyedBroadcastProcessFunction):
            raise PipelineError(
                f"the data stream is keyed: process() takes a KeyedBroadcastProcessFunction, got {type(func).__name__}"
            )
        if selector is None and not isinstance(func, BroadcastProcessFunction):
            raise PipelineError(
                "process() on a non-keyed data stream takes a BroadcastProcessFunction (a "
                "KeyedBroadcastProcessFunction needs data.key_by(...) first), "
                f"got {type(func).__name__}"
            )
        inputs = [tag_input(self.data, 0), tag_input(self.broadcast.stream, 1, Partitioning.BROADCAST)]
        return two_input(
            self.data,
            inputs,
            "KeyedBroadcastProcess" if selector is not None else "BroadcastProcess",
            func,
            None if selector is None else SideKey(selector, None),
            co_kind="broadcast",
            timestamps=(event_time_of(self.data), event_time_of(self.broadcast.stream)),
            broadcast_descriptors=self.broadcast.descriptors,
        )


def connect(first: ConnectableStream, other: Any) -> ConnectedStreams | BroadcastConnectedStream:
    """``first.connect(other)``: a ``BroadcastConnectedStream`` for a ``BroadcastStream``, else ``ConnectedStreams``."""
    if isinstance(other, BroadcastStream):
        return BroadcastConnectedStream(first, other)
    if not hasattr(other, "transformation"):
        raise ConfigError(f"connect() takes a DataStream or a BroadcastStream, got {type(other).__name__}")
    return ConnectedStreams(first, other)


__all__ = [
    "BroadcastConnectedStream",
    "BroadcastStream",
    "ConnectableStream",
    "ConnectedStreams",
    "OnValue",
    "SideKey",
    "SideTimestamps",
    "connect",
    "key_selector_of",
    "tag_input",
    "tagged_strategy",
    "two_input",
]
