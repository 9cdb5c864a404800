"""What a task is made of: the slot's services, its share of a snapshot, its chain's operators, its slices.

``TaskServices`` and ``TaskRestore`` are what the slot hands every ``runtime.task.Task``;
``create_operators`` turns the vertex's transformations into the chain's operators (the source,
time, two-input, stamped, async and plain operators); ``SliceSizer`` sizes the slices a consumer
task cuts its input batches into. Called by ``runtime.task`` (and the slot for the dataclasses).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamjob.worker.api.metrics import MetricRegistry
from streamjob.worker.config import CheckpointSettings
from streamjob.worker.graph.job_graph import JobVertex
from streamjob.worker.graph.transformations import Kind
from streamjob.worker.protocol.messages import ToJobMaster
from streamjob.worker.runtime.async_wait import AsyncWaitOperator
from streamjob.worker.runtime.context import TaskInfo
from streamjob.worker.runtime.inline_writes import InlineWritePolicy
from streamjob.worker.runtime.operators import OperatorRestore, OperatorSetup, StreamOperator, create_operator
from streamjob.worker.runtime.source_operators import LegacySourceOperator, SourceOperator
from streamjob.worker.runtime.stamped_operators import create_stamped_operator
from streamjob.worker.runtime.time_operators import TIME_KINDS, create_time_operator
from streamjob.worker.runtime.two_input import TWO_INPUT_KINDS, create_two_input_operator
from streamjob.worker.state.key_groups import key_group_range
from streamjob.worker.storage.checkpoint_storage import WorkerStorageView


@dataclass
class TaskServices:
    """What the slot gives every task: settings, storage, the JobMaster link, a thread pool."""

    job_id: str
    job_name: str
    attempt: int
    settings: CheckpointSettings
    backend_kind: str
    incremental: bool
    batch_size: int
    local_dir: Path
    storage: WorkerStorageView
    executor: Executor
    send: Callable[[ToJobMaster], None]
    record_types: tuple[type, ...] = ()
    local_recovery_dir: Path | None = None
    inline_writes: InlineWritePolicy = field(default_factory=lambda: InlineWritePolicy(local_disk=False))


@dataclass
class TaskRestore:
    """A task's share of the snapshot it restores: per operator uid, plus replayed in-flight records."""

    operators: dict[str, OperatorRestore] = field(default_factory=dict)
    in_flight: list[Any] = field(default_factory=list)


SLICE_CACHE_S = 0.0005
"""A consumer's slice is at most about this much work too (but never capped below ``SLICE_CACHE_RECORDS``).

A slice's records, the objects its operators build and their outputs then stay in the CPU's
caches until the sink has them: the user-function job (``bench/jobs/user_fn.py``, ~0.5 us a
record) measured about 7 % less CPU per record with slices of 1,024 than with whole batches of
4,096 (512 no better). A cheap chain (the keyed sum, ~0.1 us a record) gains less than the few
microseconds a slice costs the task (checks, clock reads), so the cap is time, not a count.
"""
SLICE_CACHE_RECORDS = 1024
"""The least a slice is capped to by ``SLICE_CACHE_S``."""


class SliceSizer:
    """How many records of an input batch to run through the chain at once: about ``budget_s`` of work.

    And at most about ``cache_s`` of work, but no fewer than ``cache_records`` for that cap: a cheap
    chain still runs in cache-sized slices.
    """

    def __init__(
        self,
        budget_s: float,
        first: int = 64,
        cache_s: float = SLICE_CACHE_S,
        cache_records: int = SLICE_CACHE_RECORDS,
    ) -> None:
        self.budget_s = budget_s
        self.size = first
        self._cache_s = cache_s
        self._cache_records = cache_records
        self._per_record_s = 0.0

    def record(self, records: int, seconds: float) -> None:
        """A slice of ``records`` took ``seconds`` (a moving average, weight 1/4, sets the next size)."""
        if records <= 0:
            return
        per = seconds / records
        self._per_record_s = per if self._per_record_s == 0.0 else self._per_record_s + (per - self._per_record_s) / 4
        if self._per_record_s <= 0:
            self.size = self._cache_records  # too fast for the clock: cache-sized
            return
        budget = max(1, int(self.budget_s / self._per_record_s))
        self.size = min(budget, max(self._cache_records, int(self._cache_s / self._per_record_s)))


def create_operators(
    vertex: JobVertex,
    subtask: int,
    name: str,
    services: TaskServices,
    restore: TaskRestore | None,
    user_metrics: MetricRegistry,
    into: list[StreamOperator],
) -> None:
    """Creates the chain's operators, each with its share of ``restore``, appending them to ``into``.

    Appends one at a time so that, when a constructor fails, the task still closes the ones created.
    The operators are not opened yet.
    """
    kg = key_group_range(vertex.max_parallelism, vertex.parallelism, subtask)
    for t in vertex.operators:
        uid = t.effective_uid()
        info = TaskInfo(
            services.job_id,
            services.job_name,
            name,
            uid,
            subtask,
            vertex.parallelism,
            vertex.max_parallelism,
            services.attempt,
            services.record_types,
            user_metrics,
        )
        restored = restore.operators.get(uid) if restore is not None else None
        setup = OperatorSetup(
            info,
            t,
            kg,
            services.backend_kind,
            services.incremental,
            services.local_dir / f"{uid}-{subtask}",
            restored,
        )
        if t.kind is Kind.SOURCE:
            op: StreamOperator = SourceOperator(setup)
        elif t.kind is Kind.LEGACY_SOURCE:
            op = LegacySourceOperator(setup)
        elif t.kind in TIME_KINDS:
            op = create_time_operator(setup)
        elif t.kind in TWO_INPUT_KINDS:
            op = create_two_input_operator(setup)
        elif "stamp" in t.options:
            op = create_stamped_operator(setup)  # keeps timestamps (event time after a map: api/stamped.py)
        elif t.kind is Kind.ASYNC_WAIT:
            op = AsyncWaitOperator(setup)
        else:
            op = create_operator(setup)
        into.append(op)
