"""The logical pipeline: what the DataStream API records, before chaining and scheduling.

Transformations are plain data built by ``streamjob.worker.api``; ``streamjob.worker.graph.job_graph``
turns them into the job graph. Every stateful transformation has a uid (set by the user or
derived deterministically from its position), which keys its state in checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Partitioning(StrEnum):
    """How records travel from one transformation to the next."""

    FORWARD = "forward"
    HASH = "hash"
    REBALANCE = "rebalance"
    BROADCAST = "broadcast"


class Kind(StrEnum):
    """What an operator does; the runtime picks the operator implementation from it."""

    SOURCE = "source"
    LEGACY_SOURCE = "legacy_source"
    MAP = "map"
    FLAT_MAP = "flat_map"
    FILTER = "filter"
    REDUCE = "reduce"
    PROCESS = "process"
    KEYED_PROCESS = "keyed_process"
    EVENT_WINDOW = "event_window"
    TIMESTAMPS = "timestamps"
    TAG = "tag"  # marks which input of a two-input operator a record is for (api/connected.py)
    CO_PROCESS = "co_process"  # two inputs: co-functions, broadcast state, interval join
    ASYNC_WAIT = "async_wait"
    SINK = "sink"
    TWO_PHASE_SINK = "two_phase_sink"


@dataclass(frozen=True)
class Edge:
    """An input of a transformation: where records come from and how they are partitioned."""

    source_id: int
    partitioning: Partitioning
    key_selector: Any = None
    tag: str | None = None  # the side output (OutputTag name) this edge carries, None: the main output


@dataclass(eq=False)
class Transformation:
    """One operator of the pipeline."""

    id: int
    kind: Kind
    name: str
    function: Any
    inputs: list[Edge] = field(default_factory=list)
    parallelism: int | None = None
    max_parallelism: int | None = None
    uid: str | None = None
    key_selector: Any = None  # set when the operator runs on a keyed stream
    options: dict[str, Any] = field(default_factory=dict)
    slot_sharing_group: str | None = None  # None: inherited from the inputs (graph/slot_groups.py)

    @property
    def keyed(self) -> bool:
        """Whether the operator has keyed state and timers (it follows a ``key_by``)."""
        return self.key_selector is not None

    def effective_uid(self) -> str:
        """The user's uid, else one derived from the kind and position (stable for a fixed pipeline)."""
        return self.uid if self.uid else f"{self.kind.value}-{self.id}"
