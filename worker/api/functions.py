"""User function contracts: map/filter/flat_map/reduce/process functions, rich functions, contexts.

Job authors subclass these (or pass plain callables); the runtime's operators
(``streamjob.worker.runtime.operators``) call them. Names follow Flink's DataStream API in
Python style so that Flink jobs port line by line.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from streamjob.worker.api.metrics import MetricGroup
    from streamjob.worker.api.state import (
        AggregatingState,
        ListState,
        MapState,
        ReducingState,
        ValueState,
    )

IN = TypeVar("IN")
OUT = TypeVar("OUT")
OUT_contra = TypeVar("OUT_contra", contravariant=True)
KEY = TypeVar("KEY")


class Collector(Protocol[OUT_contra]):
    """Where a function emits its outputs."""

    def collect(self, value: OUT_contra) -> None: ...


class RuntimeContext(Protocol):
    """What a rich function knows about where it runs, and its door to keyed state."""

    def get_index_of_this_subtask(self) -> int: ...

    def get_number_of_parallel_subtasks(self) -> int: ...

    def get_max_number_of_parallel_subtasks(self) -> int: ...

    def get_attempt_number(self) -> int: ...

    def get_task_name(self) -> str: ...

    def get_job_id(self) -> str: ...

    def get_metric_group(self) -> MetricGroup: ...

    def get_state(self, descriptor: Any) -> ValueState[Any]: ...

    def get_list_state(self, descriptor: Any) -> ListState[Any]: ...

    def get_map_state(self, descriptor: Any) -> MapState[Any, Any]: ...

    def get_reducing_state(self, descriptor: Any) -> ReducingState[Any]: ...

    def get_aggregating_state(self, descriptor: Any) -> AggregatingState[Any, Any]: ...


class Function:
    """Marker base of every user function."""


class RichFunction(Function):
    """A function with a lifecycle and a runtime context (subtask index, attempt, keyed state).

    ``open`` runs once per attempt before the first record, after state was restored, so state
    handles obtained there see the restored values.
    """

    _runtime_context: RuntimeContext | None = None

    def open(self, runtime_context: RuntimeContext) -> None:
        """Called once per attempt before the first record."""

    def close(self) -> None:
        """Called when the task ends or is cancelled; release resources here."""

    def get_runtime_context(self) -> RuntimeContext:
        """The context set by the runtime before ``open``."""
        if self._runtime_context is None:
            raise RuntimeError("get_runtime_context() is only available once the function runs in a task")
        return self._runtime_context

    def set_runtime_context(self, ctx: RuntimeContext) -> None:
        """Called by the runtime; not for user code."""
        self._runtime_context = ctx


class MapFunction(Function, Generic[IN, OUT]):
    """One output per input."""

    @abstractmethod
    def map(self, value: IN) -> OUT: ...


class RichMapFunction(RichFunction, MapFunction[IN, OUT]):
    """A map function with open/close and keyed state (after ``key_by``)."""


class FlatMapFunction(Function, Generic[IN, OUT]):
    """Zero or more outputs per input: return an iterable, or emit into ``out``."""

    @abstractmethod
    def flat_map(self, value: IN, out: Collector[OUT]) -> Iterable[OUT] | None: ...


class RichFlatMapFunction(RichFunction, FlatMapFunction[IN, OUT]):
    """A flat-map function with open/close and keyed state."""


class FilterFunction(Function, Generic[IN]):
    """Keeps the records for which ``filter`` returns true."""

    @abstractmethod
    def filter(self, value: IN) -> bool: ...


class RichFilterFunction(RichFunction, FilterFunction[IN]):
    """A filter function with open/close and keyed state."""


class KeySelector(Function, Generic[IN, KEY]):
    """Extracts the key of a record; must be deterministic (same record, same key, every run)."""

    @abstractmethod
    def get_key(self, value: IN) -> KEY: ...


class TimerService(Protocol):
    """Processing-time timers of the current key; registrations are part of the checkpoint."""

    def current_processing_time(self) -> int: ...

    def register_processing_time_timer(self, timestamp_ms: int) -> None: ...

    def delete_processing_time_timer(self, timestamp_ms: int) -> None: ...


class ProcessContext(Protocol):
    """Context of ``process_element``: the current key and the timer service."""

    def get_current_key(self) -> Any: ...

    def timer_service(self) -> TimerService: ...

    def timestamp(self) -> int | None: ...

    def output(self, tag: Any, value: Any) -> None:
        """Emits ``value`` to the side output ``tag`` (an ``OutputTag``; see ``get_side_output``)."""
        ...


class OnTimerContext(ProcessContext, Protocol):
    """Context of ``on_timer``."""


class KeyedProcessFunction(RichFunction, Generic[KEY, IN, OUT]):
    """The most general keyed function: per-record processing, keyed state and timers.

    Recovery contract: keyed state and registered timers are restored with the key group they
    belong to; a timer that was due while the job was down fires right after restore.
    """

    @abstractmethod
    def process_element(self, value: IN, ctx: ProcessContext, out: Collector[OUT]) -> None: ...

    def on_timer(self, timestamp: int, ctx: OnTimerContext, out: Collector[OUT]) -> None:
        """Called when a processing-time timer of the current key fires."""


class ProcessFunction(RichFunction, Generic[IN, OUT]):
    """Per-record processing on a non-keyed stream (no keyed state, no timers)."""

    @abstractmethod
    def process_element(self, value: IN, ctx: ProcessContext, out: Collector[OUT]) -> None: ...


class FunctionSnapshotContext(Protocol):
    """Passed to ``snapshot_state``: which checkpoint is being taken."""

    def get_checkpoint_id(self) -> int: ...

    def get_checkpoint_timestamp(self) -> int: ...


class OperatorStateStore(Protocol):
    """Non-keyed (operator) state: list state redistributed on rescale."""

    def get_list_state(self, descriptor: Any) -> ListState[Any]: ...

    def get_union_list_state(self, descriptor: Any) -> ListState[Any]: ...


class FunctionInitializationContext(Protocol):
    """Passed to ``initialize_state``: the state stores and whether this attempt was restored."""

    def is_restored(self) -> bool: ...

    def get_operator_state_store(self) -> OperatorStateStore: ...

    def get_keyed_state_store(self) -> RuntimeContext | None: ...


class CheckpointedFunction(ABC):
    """A function with its own operator state (e.g. a source's offset).

    Recovery contract: ``initialize_state`` runs before ``open`` on every attempt; when
    ``context.is_restored()`` the list states hold what ``snapshot_state`` left in them at the
    checkpoint being restored (redistributed if the parallelism changed). ``snapshot_state`` runs
    at the barrier, synchronously with processing, so it sees a consistent position.
    """

    @abstractmethod
    def snapshot_state(self, context: FunctionSnapshotContext) -> None: ...

    @abstractmethod
    def initialize_state(self, context: FunctionInitializationContext) -> None: ...


class CheckpointListener(ABC):
    """Told when a checkpoint completes (all tasks acknowledged, ``_metadata`` written) or aborts."""

    @abstractmethod
    def notify_checkpoint_complete(self, checkpoint_id: int) -> None: ...

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:  # noqa: B027 - optional hook
        """A checkpoint that will never complete; pending work for it can be dropped."""
