"""Sink contracts: plain sinks, print/discard, and the two-phase-commit sink framework.

A ``SinkFunction`` sees every record once per attempt; after a failure the records since the
last completed checkpoint are delivered again, so a plain sink is at-least-once. For
exactly-once output subclass ``TwoPhaseCommitSinkFunction``: records go into a transaction,
the transaction is pre-committed at the barrier (its handle is stored in the checkpoint) and
committed only when the checkpoint completes (``notify_checkpoint_complete``).
"""

from __future__ import annotations

import sys
from abc import abstractmethod
from typing import Any, Generic, TypeVar

from streamjob.worker.api.functions import Function, RichFunction

TXN = TypeVar("TXN")


class SinkFunction(Function):
    """Receives every record of its input."""

    @abstractmethod
    def invoke(self, value: Any) -> None: ...

    def invoke_batch(self, values: list[Any]) -> None:
        """Receives a batch; override for speed, the default calls ``invoke`` per record."""
        invoke = self.invoke
        for value in values:
            invoke(value)


class RichSinkFunction(RichFunction, SinkFunction):
    """A sink with open/close and a runtime context."""


class PrintSink(RichSinkFunction):
    """Prints records to stdout (or stderr), prefixed with the subtask number when parallel."""

    def __init__(self, prefix: str | None = None, to_stderr: bool = False) -> None:
        self.prefix = prefix
        self.to_stderr = to_stderr
        self._lead = ""

    def open(self, runtime_context: Any) -> None:
        parts = []
        if self.prefix:
            parts.append(self.prefix)
        if runtime_context.get_number_of_parallel_subtasks() > 1:
            parts.append(str(runtime_context.get_index_of_this_subtask() + 1))
        self._lead = ":".join(parts) + "> " if parts else ""

    def invoke(self, value: Any) -> None:
        stream = sys.stderr if self.to_stderr else sys.stdout
        stream.write(f"{self._lead}{value}\n")

    def invoke_batch(self, values: list[Any]) -> None:
        stream = sys.stderr if self.to_stderr else sys.stdout
        lead = self._lead
        stream.write("".join(f"{lead}{v}\n" for v in values))
        stream.flush()


class DiscardingSink(SinkFunction):
    """Drops every record (for benchmarks)."""

    def invoke(self, value: Any) -> None:
        return None

    def invoke_batch(self, values: list[Any]) -> None:
        return None


class TwoPhaseCommitSinkFunction(RichFunction, Generic[TXN]):
    """Exactly-once sinks: transactions pre-committed at the barrier, committed on completion.

    Recovery contract (what the runtime guarantees, as Flink's TwoPhaseCommitSinkFunction):

    - ``begin_transaction`` opens the transaction that the following records are written into.
    - At checkpoint ``n``'s barrier: ``pre_commit(txn)`` makes the data durable but invisible;
      the handle ``txn`` is stored in checkpoint ``n``; a new transaction begins.
    - When checkpoint ``n`` completes: ``commit`` is called for every pre-committed transaction
      up to ``n``, in order. ``commit`` must be idempotent: after a failure between the
      checkpoint's completion and the commit, the restored sink commits the same handle again
      (``recover_and_commit``).
    - Transactions that were open but not pre-committed when the job failed are never committed;
      ``recover_and_abort`` is called for the open transaction found in the restored state.

    Transaction handles must be serializable by the safe serializer (str, int, tuple, dict...).
    """

    @abstractmethod
    def begin_transaction(self) -> TXN: ...

    @abstractmethod
    def invoke(self, transaction: TXN, value: Any) -> None: ...

    @abstractmethod
    def pre_commit(self, transaction: TXN) -> None: ...

    @abstractmethod
    def commit(self, transaction: TXN) -> None: ...

    @abstractmethod
    def abort(self, transaction: TXN) -> None: ...

    def recover_and_commit(self, transaction: TXN) -> None:
        """Commits a transaction found pre-committed in restored state; defaults to ``commit``."""
        self.commit(transaction)

    def recover_and_abort(self, transaction: TXN) -> None:
        """Aborts a transaction found open in restored state; defaults to ``abort``."""
        self.abort(transaction)

    def invoke_batch(self, transaction: TXN, values: list[Any]) -> None:
        """Writes a batch; override for speed."""
        for value in values:
            self.invoke(transaction, value)
