"""Function contracts of two-input operators: co-functions, broadcast process functions, join functions.

Job authors subclass these and pass them to ``ConnectedStreams`` (``connect``),
``BroadcastConnectedStream`` (``connect(stream.broadcast(descriptor))``), interval joins and window
joins (``api/connected.py``, ``api/joins.py``); the runtime's two-input operators
(``runtime/co_operators.py``, ``runtime/join_operators.py``) call them. Names follow Flink's DataStream
API in Python style: the methods ending in ``1`` take the records of the first input (the stream
``connect`` was called on), those ending in ``2`` the second's.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

from streamjob.worker.api.functions import Collector, Function, RichFunction, TimerService

IN1 = TypeVar("IN1")
IN2 = TypeVar("IN2")
OUT = TypeVar("OUT")
KEY = TypeVar("KEY")


class CoMapFunction(Function, Generic[IN1, IN2, OUT]):
    """One output per record of either input."""

    @abstractmethod
    def map1(self, value: IN1) -> OUT: ...

    @abstractmethod
    def map2(self, value: IN2) -> OUT: ...


class RichCoMapFunction(RichFunction, CoMapFunction[IN1, IN2, OUT]):
    """A co-map function with open/close and keyed state (on connected keyed streams)."""


class CoFlatMapFunction(Function, Generic[IN1, IN2, OUT]):
    """Zero or more outputs per record of either input: return an iterable, or emit into ``out``."""

    @abstractmethod
    def flat_map1(self, value: IN1, out: Collector[OUT]) -> Iterable[OUT] | None: ...

    @abstractmethod
    def flat_map2(self, value: IN2, out: Collector[OUT]) -> Iterable[OUT] | None: ...


class RichCoFlatMapFunction(RichFunction, CoFlatMapFunction[IN1, IN2, OUT]):
    """A co-flat-map function with open/close and keyed state (on connected keyed streams)."""


class CoProcessContext(Protocol):
    """Context of ``process_element1/2`` and ``on_timer``: key, timestamp, timers (keyed only)."""

    def get_current_key(self) -> Any: ...

    def timestamp(self) -> int | None: ...

    def timer_service(self) -> TimerService: ...


class CoProcessFunction(RichFunction, Generic[IN1, IN2, OUT]):
    """Per-record processing of two non-keyed inputs (operator state through ``CheckpointedFunction``)."""

    @abstractmethod
    def process_element1(self, value: IN1, ctx: CoProcessContext, out: Collector[OUT]) -> None: ...

    @abstractmethod
    def process_element2(self, value: IN2, ctx: CoProcessContext, out: Collector[OUT]) -> None: ...


class KeyedCoProcessFunction(RichFunction, Generic[KEY, IN1, IN2, OUT]):
    """Per-record processing of two inputs keyed alike: keyed state and timers shared by both inputs.

    Recovery contract: as ``KeyedProcessFunction``'s — the state and timers of a key are restored with
    its key group, whichever input wrote them.
    """

    @abstractmethod
    def process_element1(self, value: IN1, ctx: CoProcessContext, out: Collector[OUT]) -> None: ...

    @abstractmethod
    def process_element2(self, value: IN2, ctx: CoProcessContext, out: Collector[OUT]) -> None: ...

    def on_timer(self, timestamp: int, ctx: CoProcessContext, out: Collector[OUT]) -> None:
        """A timer of the current key fired (``ctx.time_domain()`` says which clock)."""


class ReadOnlyBroadcastState(Protocol):
    """Broadcast state as the data side sees it: every subtask holds the same entries, read only."""

    def get(self, key: Any) -> Any: ...

    def contains(self, key: Any) -> bool: ...

    def items(self) -> list[tuple[Any, Any]]: ...

    def keys(self) -> list[Any]: ...

    def values(self) -> list[Any]: ...

    def is_empty(self) -> bool: ...


class BroadcastState(ReadOnlyBroadcastState, Protocol):
    """Broadcast state as the broadcast side sees it: read-write, the same updates on every subtask."""

    def put(self, key: Any, value: Any) -> None: ...

    def put_all(self, entries: dict[Any, Any]) -> None: ...

    def remove(self, key: Any) -> None: ...

    def clear(self) -> None: ...


class ReadOnlyContext(Protocol):
    """Context of ``process_element`` (the data side) and of ``on_timer``."""

    def get_broadcast_state(self, descriptor: Any) -> ReadOnlyBroadcastState: ...

    def timestamp(self) -> int | None: ...

    def current_watermark(self) -> int: ...

    def current_processing_time(self) -> int: ...


class BroadcastContext(Protocol):
    """Context of ``process_broadcast_element``: the broadcast state read-write."""

    def get_broadcast_state(self, descriptor: Any) -> BroadcastState: ...

    def timestamp(self) -> int | None: ...

    def current_watermark(self) -> int: ...

    def current_processing_time(self) -> int: ...


class KeyedBroadcastContext(BroadcastContext, Protocol):
    """``process_broadcast_element`` on a keyed data stream: also visits every key's state."""

    def apply_to_keyed_state(self, descriptor: Any, function: Callable[[Any, Any], None]) -> None: ...


class BroadcastProcessFunction(RichFunction, Generic[IN1, IN2, OUT]):
    """A non-keyed data stream (``process_element``) and a broadcast stream (``process_broadcast_element``).

    Recovery contract: the broadcast state is checkpointed once (by subtask 0) and restored to every
    subtask at any parallelism, so updates must be the same on every subtask: decide them from the
    broadcast record alone (never from the subtask index or the data side).
    """

    @abstractmethod
    def process_element(self, value: IN1, ctx: ReadOnlyContext, out: Collector[OUT]) -> None: ...

    @abstractmethod
    def process_broadcast_element(self, value: IN2, ctx: BroadcastContext, out: Collector[OUT]) -> None: ...


class KeyedBroadcastProcessFunction(RichFunction, Generic[KEY, IN1, IN2, OUT]):
    """A keyed data stream with keyed state and timers, and a broadcast stream updating broadcast state.

    ``ctx.apply_to_keyed_state(descriptor, f)`` in ``process_broadcast_element`` calls ``f(key, state)``
    for every key of this subtask that has a value in that state. Recovery contract: as
    ``BroadcastProcessFunction``'s for the broadcast state, as ``KeyedProcessFunction``'s for the rest.
    """

    @abstractmethod
    def process_element(self, value: IN1, ctx: ReadOnlyContext, out: Collector[OUT]) -> None: ...

    @abstractmethod
    def process_broadcast_element(self, value: IN2, ctx: KeyedBroadcastContext, out: Collector[OUT]) -> None: ...

    def on_timer(self, timestamp: int, ctx: ReadOnlyContext, out: Collector[OUT]) -> None:
        """A timer of the current key fired; the broadcast state is read only here."""


class JoinContext(Protocol):
    """Context of ``ProcessJoinFunction.process_element``: the two records' timestamps."""

    def get_left_timestamp(self) -> int: ...

    def get_right_timestamp(self) -> int: ...

    def get_timestamp(self) -> int: ...


class ProcessJoinFunction(RichFunction, Generic[IN1, IN2, OUT]):
    """Called once per pair of an interval join (the left record, the right record)."""

    @abstractmethod
    def process_element(self, left: IN1, right: IN2, ctx: JoinContext, out: Collector[OUT]) -> None: ...


class JoinFunction(Function, Generic[IN1, IN2, OUT]):
    """A window join's output for one pair of records of the same key and window."""

    @abstractmethod
    def join(self, first: IN1, second: IN2) -> OUT: ...


class FlatJoinFunction(Function, Generic[IN1, IN2, OUT]):
    """A window join's outputs (zero or more) for one pair of records."""

    @abstractmethod
    def join(self, first: IN1, second: IN2, out: Collector[OUT]) -> None: ...


class CoGroupFunction(Function, Generic[IN1, IN2, OUT]):
    """A window co-group: both inputs' records of one key and window (either side may be empty)."""

    @abstractmethod
    def co_group(self, first: Iterable[IN1], second: Iterable[IN2], out: Collector[OUT]) -> None: ...


__all__ = [
    "BroadcastContext",
    "BroadcastProcessFunction",
    "BroadcastState",
    "CoFlatMapFunction",
    "CoGroupFunction",
    "CoMapFunction",
    "CoProcessContext",
    "CoProcessFunction",
    "FlatJoinFunction",
    "JoinContext",
    "JoinFunction",
    "KeyedBroadcastContext",
    "KeyedBroadcastProcessFunction",
    "KeyedCoProcessFunction",
    "ProcessJoinFunction",
    "ReadOnlyBroadcastState",
    "ReadOnlyContext",
    "RichCoFlatMapFunction",
    "RichCoMapFunction",
]
