"""Snapshot -> each new subtask's share of it: the restore plan, including rescaling.

Pure: the JobMaster computes the plan once from the loaded ``_metadata`` and the job graph and
sends each task its share. Keyed state goes by key-group overlap (so a restore at another
parallelism redistributes it), operator state goes to every subtask as the list of all old
subtasks' handles (the store splits or unions it), in-flight data of unaligned checkpoints goes
to the subtask that now owns it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streamjob.worker.errors import RestoreError
from streamjob.worker.graph.job_graph import JobGraph
from streamjob.worker.snapshot.handles import StateHandle
from streamjob.worker.snapshot.metadata import CheckpointMetadata
from streamjob.worker.state.key_groups import key_group_range


@dataclass
class SubtaskRestorePlan:
    """What one new subtask reads."""

    keyed: dict[str, list[StateHandle]] = field(default_factory=dict)
    operator: dict[str, list[list[StateHandle]]] = field(default_factory=dict)
    in_flight: list[StateHandle] = field(default_factory=list)
    filter_in_flight_by_key: bool = False


def plan_restore(
    meta: CheckpointMetadata, graph: JobGraph, *, allow_non_restored_state: bool, ignore_in_flight: bool = False
) -> dict[tuple[str, int], SubtaskRestorePlan]:
    """Maps every snapshot handle to the new subtasks; ``RestoreError`` names what cannot be restored."""
    ops = graph.operator_uids()
    unknown = sorted(uid for uid, snap in meta.operators.items() if uid not in ops and _has_state(snap))
    if unknown and not allow_non_restored_state:
        raise RestoreError(
            f"the snapshot has state for operator uid(s) {unknown} that this job does not have. Restore with "
            "allow-non-restored-state (--allow-non-restored-state, or allowNonRestoredState: true) to drop it, "
            "or give those operators their old uids with .uid(...)"
        )
    plans = {key: SubtaskRestorePlan() for key in graph.subtasks()}
    for uid, snap in meta.operators.items():
        if uid not in ops:
            continue
        vertex, op = ops[uid]
        keyed_handles = [h for s in snap.subtasks for h in s.keyed]
        if keyed_handles and snap.max_parallelism != vertex.max_parallelism:
            raise RestoreError(
                f"operator '{uid}' was snapshotted with max parallelism {snap.max_parallelism} but the job now has "
                f"{vertex.max_parallelism}; keyed state cannot change its number of key groups — set "
                f"set_max_parallelism({snap.max_parallelism}) again"
            )
        old_operator = [list(s.operator) for s in sorted(snap.subtasks, key=lambda s: s.subtask_index)]
        rescaled = snap.parallelism != vertex.parallelism
        for i in range(vertex.parallelism):
            plan = plans[(vertex.id, i)]
            start, end = key_group_range(vertex.max_parallelism, vertex.parallelism, i)
            mine = [h for h in keyed_handles if _overlaps(h, start, end)]
            if mine:
                plan.keyed[uid] = mine
            if any(old_operator):
                plan.operator[uid] = old_operator
            if op is vertex.head and not ignore_in_flight:
                for s in snap.subtasks:
                    if not s.channel:
                        continue
                    if not rescaled and s.subtask_index == i:
                        plan.in_flight.extend(s.channel)
                    elif rescaled and op.keyed:
                        plan.in_flight.extend(s.channel)
                        plan.filter_in_flight_by_key = True
                    elif rescaled and s.subtask_index % vertex.parallelism == i:
                        plan.in_flight.extend(s.channel)
    return plans


def _has_state(snap: Any) -> bool:
    return any(s.keyed or s.operator or s.channel for s in snap.subtasks)


def _overlaps(handle: StateHandle, start: int, end: int) -> bool:
    if handle.key_group_start is None or handle.key_group_end is None:
        return True
    return handle.key_group_start <= end and handle.key_group_end >= start
