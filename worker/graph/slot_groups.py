"""Slot sharing groups: which operators may share a slot, and where each subtask runs (pure).

Called by ``job_graph.build_job_graph`` (the group of every operator, chaining) and through
``JobGraph.slot_of`` by the JobMaster (restore plans per slot, ``deployment.py``) and the slots
(``slot.py``: which subtasks are theirs, local or remote channels). Flink's rules: an operator
without an explicit group (``DataStream.slot_sharing_group``) takes its inputs' group when they
all share one, else ``DEFAULT_GROUP``; operators of different groups never chain. Each group
takes as many slots as its largest parallelism, one after the other in the order the groups
first appear, so a job with only the default group runs subtask ``i`` in slot ``i`` as before.
"""

from __future__ import annotations

from collections.abc import Iterable

from streamjob.worker.graph.transformations import Transformation

#: The group of an operator that names none and whose inputs do not share one.
DEFAULT_GROUP = "default"


def resolve_groups(transformations: Iterable[Transformation]) -> dict[int, str]:
    """Transformation id → its slot sharing group (``transformations`` in topological order)."""
    groups: dict[int, str] = {}
    for t in transformations:
        if t.slot_sharing_group is not None:
            groups[t.id] = t.slot_sharing_group
            continue
        inherited = {groups[e.source_id] for e in t.inputs}
        groups[t.id] = inherited.pop() if len(inherited) == 1 else DEFAULT_GROUP
    return groups


def slot_offsets(groups_and_parallelism: Iterable[tuple[str, int]]) -> tuple[dict[str, int], int]:
    """Each group's first slot, and the slots of all groups.

    Groups take slots in first-appearance order, each as many as its largest parallelism
    (``groups_and_parallelism``: (group, parallelism) per vertex).
    """
    widths: dict[str, int] = {}
    for group, parallelism in groups_and_parallelism:
        widths[group] = max(widths.get(group, 0), parallelism)
    offsets: dict[str, int] = {}
    total = 0
    for group, width in widths.items():
        offsets[group] = total
        total += width
    return offsets, total
