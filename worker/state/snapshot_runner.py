"""The background part of a snapshot: CPU work in slices on the task thread, then I/O on a thread.

Under the GIL a snapshot thread that encodes state does not run beside the task thread: it takes
turns with it, and every time it releases the GIL for a system call it waits up to a switch
interval to get it back (a "convoy"). Encoding 10,000 keys is ~5 ms of CPU but took 30-100 ms of
wall time in a thread while the task was saturated. So a runner may carry *preparation steps*
(a generator that encodes a slice per step): the task runs them between its batches for a small
time budget each (``prepare``), and only the writing — system calls that release the GIL — goes
to the snapshot thread. Processing still continues while the snapshot is prepared and written
(an asynchronous snapshot); it just shares the task's thread in slices instead of competing for
the GIL.

A runner may also say how many bytes it will write (``size_hint``, known once it is prepared):
the task writes a small snapshot to a local disk itself instead of handing it to the thread
(``runtime/inline_writes.py``).

A runner called before its steps are done (a test, or a task that ends) finishes them first, in
the calling thread. An exception raised by a step is kept and raised by the call, in the
background part: a write failure declines the checkpoint, while a value its serializer refuses
(``SerializationError``, a final failure in ``failures.classify``) fails the job once. The
same holds for an incremental snapshot, which encodes its changed keys in the call itself.

Callers: ``keyed_base.py`` (keyed snapshots), ``runtime/operators.py`` (an operator's snapshot
combines its keyed and operator state), ``runtime/subtask_checkpointer.py`` (runs the steps between
the task's batches, then the call).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from streamjob.worker.snapshot.handles import SnapshotWriter

T = TypeVar("T")


class SnapshotRunner(Generic[T]):
    """``runner.prepare(budget_s)`` on the task thread until True, then ``runner(writer)`` on any thread."""

    __slots__ = ("_error", "_size", "_steps", "_write")

    def __init__(
        self,
        write: Callable[[SnapshotWriter], T],
        steps: Iterator[None] | None = None,
        size: Callable[[], int | None] | None = None,
    ) -> None:
        """``steps``: the CPU-bound preparation, one slice per item; ``size``: bytes ``write`` will write.

        ``size`` is asked only once the runner is prepared and may return None (not known).
        """
        self._write = write
        self._steps = steps
        self._size = size
        self._error: Exception | None = None

    def size_hint(self) -> int | None:
        """About how many bytes the write will produce; None if unknown (or not prepared yet)."""
        if self._steps is not None or self._size is None or self._error is not None:
            return None
        return self._size()

    @property
    def prepared(self) -> bool:
        """Whether no preparation step is left."""
        return self._steps is None

    def prepare(self, budget_s: float) -> bool:
        """Runs steps until about ``budget_s`` seconds passed (at least one step); True when all are done."""
        steps = self._steps
        if steps is None:
            return True
        deadline = time.perf_counter() + budget_s
        try:
            for _ in steps:
                if time.perf_counter() >= deadline:
                    return False
        except Exception as err:  # raised again by __call__, in the background part
            self._error = err
        self._steps = None
        return True

    def steps(self) -> Iterator[None]:
        """This runner's preparation as steps of another runner (one slice each)."""
        while not self.prepare(0.0):
            yield

    def __call__(self, writer: SnapshotWriter) -> T:
        """Finishes any preparation left, then writes; raises what a step raised."""
        self.prepare(float("inf"))
        if self._error is not None:
            raise self._error
        return self._write(writer)


__all__ = ["SnapshotRunner"]
