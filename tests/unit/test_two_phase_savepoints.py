"""A two-phase-commit sink across an intermediate savepoint: its transaction stays pending, in the state of
the next checkpoint, and that checkpoint's completion (or its restore) commits it — once, in order.

The coordinator no longer notifies the tasks of an intermediate savepoint (``test_coordinator_knobs``);
this checks the operator side: a crash after checkpoint C completed but before its commit restores C,
whose state must hold the savepoint's transaction as pending.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.api.sinks import TwoPhaseCommitSinkFunction
from streamjob.worker.graph.transformations import Kind, Transformation
from streamjob.worker.runtime.context import TaskInfo
from streamjob.worker.runtime.operators import OperatorRestore, OperatorSetup, TwoPhaseCommitSinkOperator
from tests.unit.test_state_support import MemoryStorage

pytestmark = pytest.mark.unit


class Recording(TwoPhaseCommitSinkFunction[dict[str, Any]]):
    """Transactions are dicts of records; what was committed goes to ``committed`` (shared by instances)."""

    def __init__(self, committed: list[list[Any]]) -> None:
        self.committed = committed
        self.next = 0

    def begin_transaction(self) -> dict[str, Any]:
        self.next += 1
        return {"n": self.next, "records": []}

    def invoke(self, transaction: dict[str, Any], value: Any) -> None:
        transaction["records"].append(value)

    def pre_commit(self, transaction: dict[str, Any]) -> None:
        return None

    def commit(self, transaction: dict[str, Any]) -> None:
        if transaction["records"] not in self.committed:  # idempotent, as the contract asks
            self.committed.append(list(transaction["records"]))

    def abort(self, transaction: dict[str, Any]) -> None:
        return None


def _operator(
    tmp_path: Path, committed: list[list[Any]], restore: OperatorRestore | None
) -> TwoPhaseCommitSinkOperator:
    t = Transformation(1, Kind.TWO_PHASE_SINK, "sink", Recording(committed), uid="sink")
    info = TaskInfo("j", "job", "sink (1/1)", "sink", 0, 1, 128, 0)
    op = TwoPhaseCommitSinkOperator(OperatorSetup(info, t, (0, 127), "hashmap", False, tmp_path, restore))
    op.open()
    return op


def _snapshot(op: TwoPhaseCommitSinkOperator, storage: MemoryStorage, checkpoint_id: int, savepoint: bool) -> Any:
    runner = op.snapshot(checkpoint_id, 0)
    return runner(storage.writer(checkpoint_id, savepoint=savepoint))


def test_the_checkpoint_after_a_savepoint_holds_and_commits_its_transaction(tmp_path: Path) -> None:
    committed: list[list[Any]] = []
    storage = MemoryStorage()
    op = _operator(tmp_path, committed, None)
    op.process_batch([1, 2])
    _snapshot(op, storage, 1, savepoint=False)
    op.notify_complete(1)
    assert committed == [[1, 2]]
    op.process_batch([3, 4])
    _snapshot(op, storage, 2, savepoint=True)  # intermediate savepoint: never notified
    op.process_batch([5])
    handles = _snapshot(op, storage, 3, savepoint=False)
    assert committed == [[1, 2]], "nothing is committed at the savepoint"

    # a crash after checkpoint 3 completed, before the sink committed: restore checkpoint 3
    restored_commits: list[list[Any]] = list(committed)
    _operator(tmp_path, restored_commits, OperatorRestore(storage.reader(), [], [handles["operator"]]))
    assert restored_commits == [[1, 2], [3, 4], [5]], "checkpoint 3's state holds the savepoint's transaction"

    # no crash: checkpoint 3's completion commits the savepoint's transaction and its own, in order
    op.notify_complete(3)
    assert committed == [[1, 2], [3, 4], [5]]
