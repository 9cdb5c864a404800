"""What finalizing a checkpoint writes: the ``_metadata`` built from the tasks' acknowledgements.

Pure (the completion time is passed in). ``PendingCheckpoint.finalize`` calls ``build_metadata``
and ``aggregate_phases``; ``JobDescription`` is the part of the job they need, fixed for an attempt
and given to the coordinator by the JobMaster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamjob.worker.checkpoint.completed import CheckpointPhases
from streamjob.worker.graph.job_graph import JobGraph
from streamjob.worker.protocol.rest import CheckpointKind
from streamjob.worker.snapshot.handles import StateHandle
from streamjob.worker.snapshot.metadata import CheckpointMetadata, OperatorSnapshot, SubtaskSnapshot

if TYPE_CHECKING:
    from streamjob.worker.checkpoint.acks import TaskAck, TaskKey


@dataclass(frozen=True)
class JobDescription:
    """The job a checkpoint belongs to, as ``_metadata`` records it."""

    graph: JobGraph
    job_id: str
    name: str
    namespace: str
    mode: str
    """``EXACTLY_ONCE`` or ``AT_LEAST_ONCE``."""
    restored_from: str | None = None


@dataclass(frozen=True)
class SnapshotFacts:
    """What the pending checkpoint knows about itself when it is finalized."""

    checkpoint_id: int
    kind: CheckpointKind
    trigger_ms: int
    unaligned: bool


def build_metadata(
    facts: SnapshotFacts, acks: Mapping[TaskKey, TaskAck], job: JobDescription, completion_ms: int
) -> CheckpointMetadata:
    """The ``_metadata`` of a checkpoint every task of ``job.graph`` acknowledged."""
    operators: dict[str, OperatorSnapshot] = {}
    positions: dict[str, list[Any]] = {}
    for vertex in job.graph.vertices:
        for op in vertex.operators:
            uid = op.effective_uid()
            subtasks = []
            for i in range(vertex.parallelism):
                ack = acks[(vertex.id, i)]
                s = ack.states.get(uid, {})
                subtasks.append(
                    SubtaskSnapshot(
                        subtask_index=i,
                        keyed=s.get("keyed", []),
                        operator=s.get("operator", []),
                        channel=s.get("channel", []),
                    )
                )
                if op is vertex.head and vertex.is_source:
                    positions.setdefault(uid, []).append(ack.positions)
            operators[uid] = OperatorSnapshot(
                uid=uid,
                name=op.name,
                parallelism=vertex.parallelism,
                max_parallelism=vertex.max_parallelism,
                subtasks=subtasks,
            )
    handles: list[StateHandle] = [
        h for o in operators.values() for s in o.subtasks for h in (*s.keyed, *s.operator, *s.channel)
    ]
    return CheckpointMetadata(
        kind=facts.kind.value,
        checkpoint_id=facts.checkpoint_id,
        job_id=job.job_id,
        job_name=job.name,
        namespace=job.namespace,
        trigger_timestamp_ms=facts.trigger_ms,
        completion_timestamp_ms=completion_ms,
        duration_ms=max(0, completion_ms - facts.trigger_ms),
        total_size=sum(h.size for h in handles),
        max_parallelism=job.graph.max_parallelism,
        mode=job.mode,
        # Started unaligned, or switched to unaligned at some task (aligned timeout): in-flight data stored.
        unaligned=facts.unaligned or any(s.channel for o in operators.values() for s in o.subtasks),
        restored_from=job.restored_from,
        operators=operators,
        shared_files=sorted({h.path for h in handles if h.shared}),
        source_positions=positions,
    )


def written_size(meta: CheckpointMetadata, referenced: frozenset[str]) -> int:
    """Bytes this checkpoint wrote: its private files and the shared files ``referenced`` lacks.

    ``referenced``: the shared files of the previous completed checkpoint. A shared file an
    incremental snapshot references again was written by an earlier checkpoint; one it uploaded
    now is new. Without a previous checkpoint (or after a JobMaster restart) every file counts.
    """
    return sum(h.size for h in meta.handles() if not h.shared or h.path not in referenced)


def aggregate_phases(acks: Mapping[TaskKey, TaskAck]) -> CheckpointPhases:
    """Phases: the slowest task's (the checkpoint waits for it); CPU: the sum over tasks (what it costs)."""
    stats = [a.stats for a in acks.values()]
    return CheckpointPhases(
        alignment_ms=max((s.get("alignment_ms", 0.0) for s in stats), default=0.0),
        sync_ms=max((s.get("sync_ms", 0.0) for s in stats), default=0.0),
        async_ms=max((s.get("async_ms", 0.0) for s in stats), default=0.0),
        cpu_ms=round(sum(s.get("cpu_ms", 0.0) for s in stats), 3),
    )
