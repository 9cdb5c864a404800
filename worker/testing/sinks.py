"""``TestingSink`` and ``CommitRecordingSink``: exactly-once sinks that commit into a test's lists.

Part of the public test kit (``streamjob.worker.testing``), for ``run_in_process``. Both are
two-phase-commit sinks (``TwoPhaseCommitSinkFunction``), so what reaches the test's list went the
same way as a ``FileSink``'s output: written into a transaction, pre-committed at the barrier and
committed when the checkpoint completed. A transaction's records are kept under its handle (a random
string stored in the checkpoint) in ``STAGING``, one per process: it stands for the external system
a real sink writes to, so it outlives a crashed attempt and the sink objects of a run. A restored
attempt (or a later run restored from the same storage) can therefore commit a transaction that was
pre-committed before the crash (``recover_and_commit``), never commits one twice, and never commits
one that was still open.

Recovery contract: every record of a completed checkpoint's transactions is appended to ``out``
exactly once (a commit of a handle already committed does nothing); records of transactions that
were not pre-committed when an attempt failed never appear.
"""

from __future__ import annotations

import copy
import threading
import uuid
from typing import Any

from streamjob.worker.api.sinks import TwoPhaseCommitSinkFunction

__all__ = ["CommitRecordingSink", "TestingSink"]


class _Staging:
    """Transactions by handle: records staged and not yet committed, and the handles committed."""

    def __init__(self) -> None:
        self.staged: dict[str, list[Any]] = {}
        self.committed: set[str] = set()
        self.lock = threading.Lock()  # a slot's snapshot thread never calls a sink, but be safe


STAGING = _Staging()
"""The process's transactions of every ``TestingSink`` (the stand-in for a sink's external system)."""


class TestingSink(TwoPhaseCommitSinkFunction[str]):
    """Appends every committed record to ``out`` (the list stays the test's: the kit never copies it)."""

    __test__ = False  # not a pytest test class

    def __init__(self, out: list[Any]) -> None:
        """``out``: the list the committed records are appended to, in commit order."""
        if not isinstance(out, list):
            raise TypeError(f"TestingSink(out) needs a list to append to, got {type(out).__name__}")
        self.out = out

    def __deepcopy__(self, memo: dict[int, Any]) -> TestingSink:
        """A new sink instance (one per subtask) that appends to the same ``out``."""
        return copy.copy(self)

    def begin_transaction(self) -> str:
        handle = uuid.uuid4().hex
        with STAGING.lock:
            STAGING.staged[handle] = []
        return handle

    def invoke(self, transaction: str, value: Any) -> None:
        STAGING.staged[transaction].append(value)

    def invoke_batch(self, transaction: str, values: list[Any]) -> None:
        STAGING.staged[transaction].extend(values)

    def pre_commit(self, transaction: str) -> None:
        """Nothing to flush: staged records already stand for durable, invisible data."""

    def commit(self, transaction: str) -> None:
        with STAGING.lock:
            if transaction in STAGING.committed:
                return  # idempotent, as the contract requires: a restored attempt may commit it again
            records = STAGING.staged.pop(transaction, None)
            if records is None:
                raise RuntimeError(
                    f"TestingSink: transaction {transaction} is unknown to this process; a TestingSink's "
                    "transactions live in memory, so restore only checkpoints taken by this test process"
                )
            STAGING.committed.add(transaction)
        self.out.extend(records)
        self.on_commit(records)

    def on_commit(self, records: list[Any]) -> None:
        """Called with the records of each committed transaction (a hook for subclasses)."""

    def abort(self, transaction: str) -> None:
        with STAGING.lock:
            STAGING.staged.pop(transaction, None)


class CommitRecordingSink(TestingSink):
    """A ``TestingSink`` that also appends each committed transaction's records to ``commits``.

    One entry per non-empty transaction: a subtask's records between two checkpoints, so a test can
    see what each checkpoint made visible (``sum(commits, []) == out``).
    """

    def __init__(self, out: list[Any], commits: list[list[Any]]) -> None:
        """``commits``: the list each committed batch is appended to."""
        super().__init__(out)
        if not isinstance(commits, list):
            raise TypeError(f"CommitRecordingSink(commits) needs a list, got {type(commits).__name__}")
        self.commits = commits

    def on_commit(self, records: list[Any]) -> None:
        if records:
            self.commits.append(list(records))
