"""The ``deploy`` message of each slot of an attempt (pure): the job, the slots' addresses, its restore plan.

Built by ``attempt.Attempt`` once every slot registered; each slot gets the same job and token and
only the restore plans of its own subtasks (``JobGraph.slot_of``: subtask ``i`` of a vertex runs in slot
``i`` plus the first slot of the vertex's slot sharing group).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from streamjob.worker.checkpoint.restore import SubtaskRestorePlan
from streamjob.worker.config import CheckpointSettings, JobConfig
from streamjob.worker.protocol.messages import Deploy, SlotAddress, SubtaskRestore


@dataclass(frozen=True)
class DeploySpec:
    """What every slot of one attempt is told besides its own index and restore plans."""

    attempt: int
    job_id: str
    token: str
    config: JobConfig
    settings: CheckpointSettings
    backend: str
    incremental: bool
    batch_size: int
    fingerprint: str
    checkpoints_uri: str
    savepoints_uri: str | None
    restore_base: str | None


def deploy_messages(
    spec: DeploySpec,
    addresses: Mapping[int, tuple[str, int]],
    plans: Mapping[tuple[str, int], SubtaskRestorePlan],
    slot_of: Callable[[str, int], int],
) -> dict[int, Deploy]:
    """Slot index → its ``deploy`` (``addresses``: each slot's data address; ``slot_of``: ``JobGraph.slot_of``)."""
    slots = [SlotAddress(slot=i, host=host, port=port) for i, (host, port) in addresses.items()]
    return {
        index: Deploy(
            attempt=spec.attempt,
            job_id=spec.job_id,
            token=spec.token,
            config=spec.config,
            settings=spec.settings,
            backend=spec.backend,
            incremental=spec.incremental,
            batch_size=spec.batch_size,
            fingerprint=spec.fingerprint,
            slot_index=index,
            slots=slots,
            checkpoints_uri=spec.checkpoints_uri,
            savepoints_uri=spec.savepoints_uri,
            restore_base=spec.restore_base,
            restore=_restores_of(index, plans, slot_of),
        )
        for index in addresses
    }


def _restores_of(
    index: int, plans: Mapping[tuple[str, int], SubtaskRestorePlan], slot_of: Callable[[str, int], int]
) -> dict[str, SubtaskRestore]:
    return {
        f"{vertex}/{subtask}": SubtaskRestore(
            keyed=plan.keyed,
            operator=plan.operator,
            in_flight=plan.in_flight,
            filter_in_flight_by_key=plan.filter_in_flight_by_key,
        )
        for (vertex, subtask), plan in plans.items()
        if slot_of(vertex, subtask) == index
    }
