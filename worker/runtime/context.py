"""The runtime context handed to user functions, and the contexts of process functions.

Created by ``operators`` for each operator instance; delegates keyed state to the operator's
keyed backend (available only after ``key_by``) and operator state to its store.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from streamjob.worker.api.metrics import MetricGroup, MetricRegistry
from streamjob.worker.api.side_outputs import emit_side_output
from streamjob.worker.errors import PipelineError


def with_job_types(descriptor: Any, job_types: tuple[type, ...]) -> Any:
    """Declares the job's own classes (dataclasses, named tuples, enums, plain classes) on a safe serializer.

    Types defined in the job's modules are part of the job's code, so state holding them is
    decoded without pickle; anything else still needs an explicit declaration.
    """
    from streamjob.worker.state.serializers import with_declared

    serializer = getattr(descriptor, "serializer", None)
    if job_types and serializer is not None:
        descriptor.serializer = with_declared(serializer, job_types)
    return descriptor


@dataclass(frozen=True)
class TaskInfo:
    """Where an operator instance runs."""

    job_id: str
    job_name: str
    task_name: str
    operator_uid: str
    subtask_index: int
    parallelism: int
    max_parallelism: int
    attempt: int
    job_types: tuple[type, ...] = ()
    metrics: MetricRegistry | None = None  # the task's user metrics (None: a registry nobody reports)


_processing_clock: contextvars.ContextVar[Callable[[], int] | None] = contextvars.ContextVar(
    "streamjob_processing_clock", default=None
)


def use_processing_clock(clock: Callable[[], int] | None) -> contextvars.Token[Callable[[], int] | None]:
    """Makes ``clock`` (epoch ms) the processing time of this context and the tasks started from it.

    For the in-process test kit (``testing.run_in_process(clock=...)``): a slot process never sets
    it, so processing time there is the wall clock. Returns the token to reset it with.
    """
    return _processing_clock.set(clock)


def now_ms() -> int:
    """Processing time: the wall clock in epoch milliseconds (or the clock a test installed)."""
    clock = _processing_clock.get()
    return int(time.time() * 1000) if clock is None else clock()


class StreamingRuntimeContext:
    """``RuntimeContext`` of rich functions."""

    def __init__(self, info: TaskInfo, backend: Any | None) -> None:
        self.info = info
        self.backend = backend

    def get_index_of_this_subtask(self) -> int:
        """0-based index of this parallel instance."""
        return self.info.subtask_index

    def get_number_of_parallel_subtasks(self) -> int:
        """The operator's parallelism."""
        return self.info.parallelism

    def get_max_number_of_parallel_subtasks(self) -> int:
        """The operator's max parallelism (key groups)."""
        return self.info.max_parallelism

    def get_attempt_number(self) -> int:
        """0 on the first run, then one more per restart."""
        return self.info.attempt

    def get_task_name(self) -> str:
        """The display name of the task."""
        return self.info.task_name

    def get_job_id(self) -> str:
        """The job's lineage id."""
        return self.info.job_id

    def get_metric_group(self) -> MetricGroup:
        """This operator's metric group: its metrics are exported on the JobMaster's ``/metrics``."""
        registry = self.info.metrics if self.info.metrics is not None else MetricRegistry()
        return MetricGroup(registry, (("operator", self.info.operator_uid),))

    def _keyed(self) -> Any:
        if self.backend is None:
            raise PipelineError(
                f"operator '{self.info.operator_uid}' asked for keyed state but its input is not keyed: "
                "call key_by(...) before this operator, or use operator state (CheckpointedFunction)"
            )
        return self.backend

    def get_state(self, descriptor: Any) -> Any:
        """The keyed state ``descriptor`` names, scoped to the current key."""
        return self._keyed().get_state(with_job_types(descriptor, self.info.job_types))

    get_list_state = get_state
    get_map_state = get_state
    get_reducing_state = get_state
    get_aggregating_state = get_state


class TimeDomain(StrEnum):
    """Which clock fired a timer (``ctx.time_domain()`` in ``on_timer``)."""

    EVENT_TIME = "event_time"
    PROCESSING_TIME = "processing_time"


class KeyedTimerService:
    """Processing- and event-time timers of the current key, backed by the keyed backend."""

    def __init__(self, backend: Any, context: ProcessContextImpl) -> None:
        self.backend = backend
        self._context = context

    def current_processing_time(self) -> int:
        """Epoch milliseconds."""
        return now_ms()

    def current_watermark(self) -> int:
        """The operator's event time: the last watermark it received (``MIN_WATERMARK`` before any)."""
        return self._context.watermark

    def register_event_time_timer(self, timestamp_ms: int) -> None:
        """Fires ``on_timer`` for the current key once the watermark reaches ``timestamp_ms``; kept across restarts."""
        self.backend.register_event_time_timer(int(timestamp_ms))

    def delete_event_time_timer(self, timestamp_ms: int) -> None:
        """Cancels an event-time timer of the current key."""
        self.backend.delete_event_time_timer(int(timestamp_ms))

    def register_processing_time_timer(self, timestamp_ms: int) -> None:
        """Fires ``on_timer`` for the current key at ``timestamp_ms``; kept across restarts."""
        self.backend.register_processing_time_timer(int(timestamp_ms))

    def delete_processing_time_timer(self, timestamp_ms: int) -> None:
        """Cancels a timer of the current key."""
        self.backend.delete_processing_time_timer(int(timestamp_ms))


class ProcessContextImpl:
    """``ProcessContext`` and ``OnTimerContext`` in one object, reused across records."""

    def __init__(self, backend: Any | None, side_outputs: dict[str, list[Any]] | None = None) -> None:
        self.backend = backend
        self._timers = KeyedTimerService(backend, self) if backend is not None else None
        self.fired_at: int | None = None
        self.domain: TimeDomain | None = None
        self.watermark = -(2**63)
        self.side_outputs: dict[str, list[Any]] = {} if side_outputs is None else side_outputs

    def get_current_key(self) -> Any:
        """The key of the record or timer being processed."""
        return None if self.backend is None else self.backend.current_key

    def timer_service(self) -> KeyedTimerService:
        """Timers of the current key."""
        if self._timers is None:
            raise PipelineError("timers need a keyed stream: call key_by(...) before process()")
        return self._timers

    def timestamp(self) -> int | None:
        """The record's event timestamp (None without event time), or the firing time inside ``on_timer``."""
        return self.fired_at

    def time_domain(self) -> TimeDomain | None:
        """Inside ``on_timer``: whether an event-time or a processing-time timer fired."""
        return self.domain

    def output(self, tag: Any, value: Any) -> None:
        """Emits ``value`` to the side output ``tag`` (``get_side_output(tag)``); dropped if no stream reads it."""
        emit_side_output(self.side_outputs, tag, value)


class StampingCollector:
    """Collects ``(ts, value)`` pairs: the outputs of the record, timer or window being processed carry ``ts``.

    Used by the operators that keep timestamps (``runtime/stamped_operators.py``) and by event-time
    windows, whose results carry ``window.max_timestamp()`` as in Flink.
    """

    __slots__ = ("out", "ts")

    def __init__(self) -> None:
        self.out: list[Any] = []
        self.ts: int | None = 0

    def collect(self, value: Any) -> None:
        self.out.append((self.ts, value))

    def reset(self) -> list[Any]:
        """Returns what was collected and starts a new batch."""
        out, self.out = self.out, []
        return out


class ListCollector:
    """A collector that appends to the current output batch."""

    __slots__ = ("collect", "out")

    def __init__(self) -> None:
        self.out: list[Any] = []
        self.collect = self.out.append

    def reset(self) -> list[Any]:
        """Returns what was collected and starts a new batch."""
        out = self.out
        self.out = []
        self.collect = self.out.append
        return out
