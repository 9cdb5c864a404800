"""``TestingSource``: a bounded, checkpointed source of given items, with crash and end-of-input markers.

Part of the public test kit (``streamjob.worker.testing``), modelled on bytewax's: a test lists the
items a job reads and puts ``TestingSource.ABORT`` where the job attempt should crash and
``TestingSource.EOF`` where the input should end for this run. Meant for ``run_in_process``, where
one ``TestingSource`` object lives through every attempt of the run (the kit never copies it).

Recovery contract: the reader's position (the index of the next item, markers included) is its
split state, stored at every barrier; a restored reader resumes at that index, so every item
before it is never read again and every item from it is read again — exact output then rests on
the job's exactly-once path (keyed state and a two-phase-commit sink such as ``TestingSink``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streamjob.worker.api.sources import Source, SourceReader, SourceReaderContext

__all__ = ["TestingAbort", "TestingSource"]


class TestingAbort(RuntimeError):
    """Raised by a ``TestingSource`` reader at an ``ABORT`` marker: the job attempt fails there."""

    __test__ = False  # not a pytest test class


class _Marker:
    """One of ``TestingSource``'s markers; compared by identity, never copied."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"TestingSource.{self.name}"

    def __copy__(self) -> _Marker:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Marker:
        return self


class TestingSource(Source):
    """The given items in order, ``batch_size`` at a time, from one reader (parallelism 1, like ``from_collection``).

    - ``TestingSource.ABORT``: the first time the reader reaches it, it raises ``TestingAbort``, which
      fails the job attempt like a crashed process (the JobMaster restarts from the latest
      checkpoint). A restored reader that reaches the same marker again skips it, so the run goes on.
      The i-th ABORT (from 0) also fires only in attempts numbered i or lower: with real processes
      (``LocalJob``), where every attempt builds a fresh source, a marker can therefore never abort
      every attempt and loop for ever.
    - ``TestingSource.EOF``: the input ends there for this run (the job takes its final checkpoint
      and finishes). The position stored is the item after the marker, so a run restored from that
      checkpoint (``run_in_process(..., restore="latest")``) reads on from there.
    """

    __test__ = False  # not a pytest test class

    ABORT = _Marker("ABORT")
    EOF = _Marker("EOF")

    max_parallelism = 1

    def __init__(self, items: Iterable[Any], *, batch_size: int = 1) -> None:
        """``items``: the records and markers, read in order; ``batch_size``: records per poll at most."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"TestingSource batch_size must be an int >= 1, got {batch_size!r}")
        self.items = list(items)
        self.batch_size = batch_size
        self.aborted: set[int] = set()
        """Indexes of the ABORT markers that fired: they are skipped from then on."""

    def __copy__(self) -> TestingSource:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TestingSource:
        """The same object: its ABORT bookkeeping must outlive the attempt that fired the marker."""
        return self

    def create_reader(self, ctx: SourceReaderContext, restored: list[Any] | None) -> SourceReader:
        position = int(restored[0]) if restored else 0
        if not 0 <= position <= len(self.items):
            raise ValueError(
                f"TestingSource restored at position {position}, but it has {len(self.items)} items: "
                "restore it with the same item list it was checkpointed with"
            )
        return _TestingReader(self, position, ctx.attempt)

    def abort_ordinal(self, index: int) -> int:
        """How many ABORT markers come before the one at ``index``."""
        return sum(1 for item in self.items[:index] if item is TestingSource.ABORT)


class _TestingReader(SourceReader):
    """Reads ``source.items`` from ``position``; its split state is that position."""

    def __init__(self, source: TestingSource, position: int, attempt: int) -> None:
        self._source = source
        self._position = position
        self._attempt = attempt
        self._ended = False

    def poll(self, max_records: int) -> list[Any] | None:
        if self._ended:
            return None
        source, items = self._source, self._source.items
        limit = min(max_records, source.batch_size)
        batch: list[Any] = []
        while self._position < len(items) and len(batch) < limit:
            item = items[self._position]
            if item is TestingSource.EOF or item is TestingSource.ABORT:
                if batch:
                    return batch  # the records before a marker go first; the marker is handled at the next poll
                if item is TestingSource.EOF:
                    self._position += 1
                    self._ended = True
                    return None
                self._abort_or_skip()
                continue
            batch.append(item)
            self._position += 1
        if batch:
            return batch
        self._ended = self._position >= len(items)
        return None if self._ended else []

    def _abort_or_skip(self) -> None:
        index = self._position
        source = self._source
        if index in source.aborted or self._attempt > source.abort_ordinal(index):
            self._position += 1  # fired before: the run goes on
            return
        source.aborted.add(index)
        raise TestingAbort(f"TestingSource.ABORT at item {index}: the job attempt fails here (once)")

    def snapshot(self) -> list[Any]:
        return [self._position]

    def next_poll_delay_s(self) -> float:
        return 0.0
