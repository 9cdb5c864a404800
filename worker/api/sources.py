"""Source contracts and the built-in sources (collection, number sequence, data generator, files).

A ``Source`` is pull-based and split-based: each parallel reader owns a list of splits and
``snapshot()`` returns their positions, which the runtime stores as operator state at the barrier.
Recovery contract: a reader created with ``restored`` split states resumes exactly after the last
record it emitted before that checkpoint's barrier — nothing skipped, nothing repeated. On a
restore at another parallelism the split states are redistributed (even split, or union for
sources that pick their own splits, such as the file source).

``SourceFunction`` is Flink's push-style legacy contract (``run(ctx)`` with ``ctx.collect``),
kept so that sources like the seeds' SensorSource port unchanged; the runtime runs it on its own
thread under the checkpoint lock.
"""

from __future__ import annotations

import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol

from streamjob.worker.api.functions import Function, RichFunction


@dataclass(frozen=True)
class SourceReaderContext:
    """Where a reader runs."""

    subtask_index: int
    parallelism: int
    attempt: int


READER_SPLIT = ""
"""The split id of a reader that does not tell its records' splits: the whole reader is one split."""


class SourceReader(ABC):
    """Reads the splits of one parallel source instance.

    With a ``WatermarkStrategy`` on ``from_source`` the runtime generates watermarks per split: it reads
    through ``poll_splits`` and ``active_splits``, which a reader of several splits overrides (the
    built-in ones do); the defaults make the whole reader one split.
    """

    @abstractmethod
    def poll(self, max_records: int) -> list[Any] | None:
        """Up to ``max_records`` records; ``[]`` when nothing is available now; ``None`` at the end."""

    def poll_splits(self, max_records: int) -> list[tuple[Any, list[Any]]] | None:
        """``poll`` with each record's split: runs of ``(split_id, records)`` in reading order; None at the end.

        A split id is a safe-serializable value (str, int, tuples of them) naming the split the same way
        in every subtask and run (it keys the split's watermark in checkpoints).
        """
        batch = self.poll(max_records)
        if batch is None:
            return None
        return [(READER_SPLIT, batch)] if batch else []

    def active_splits(self) -> list[Any]:
        """The ids of the splits this reader owns and has not finished: each holds the watermark back."""
        return [READER_SPLIT]

    @abstractmethod
    def snapshot(self) -> list[Any]:
        """The positions of this reader's splits (safe-serializable values: tuples, str, int...)."""

    def next_poll_delay_s(self) -> float:
        """How long the task may wait before polling again after an empty poll."""
        return 0.01

    def close(self) -> None:  # noqa: B027 - optional hook
        """Releases connections and files."""


class Source(ABC):
    """A factory of readers; the definition in the pipeline."""

    redistribution: Literal["even-split", "union"] = "even-split"
    bounded: bool = True
    max_parallelism: int | None = None

    @abstractmethod
    def create_reader(self, ctx: SourceReaderContext, restored: list[Any] | None) -> SourceReader:
        """A reader for subtask ``ctx.subtask_index``; ``restored`` are its split states, if any."""


# -- built-in sources -----------------------------------------------------------------------------


def _even_range(start: int, end: int, index: int, parallelism: int) -> tuple[int, int]:
    """The contiguous slice ``[a, b)`` of ``[start, end)`` for subtask ``index``."""
    total = end - start
    a = start + total * index // parallelism
    b = start + total * (index + 1) // parallelism
    return a, b


_RATE_BATCH_S = 0.005
"""A rate-limited generator emits about this much time's records at once (its poll delay)."""


class _RangeReader(SourceReader):
    """Emits ``fn(i)`` for i over its ranges; split state is ``(next, end)``."""

    def __init__(
        self, splits: list[tuple[int, int]], fn: Callable[[int], Any] | None, rate_per_subtask: float | None
    ) -> None:
        self._splits = [list(s) for s in splits if s[0] < s[1]]
        self._fn = fn
        self._rate = rate_per_subtask
        self._started = time.monotonic()
        self._emitted = 0

    def poll(self, max_records: int) -> list[Any] | None:
        if not self._splits:
            return None
        if self._rate is not None:
            allowed = int((time.monotonic() - self._started) * self._rate) - self._emitted
            if allowed <= 0 or (allowed < max_records and allowed < self._rate * _RATE_BATCH_S and self._emitted):
                return []  # the task waits next_poll_delay_s: a batch per ~5 ms, not a busy loop of a few records
            max_records = min(max_records, allowed)
        split = self._splits[0]
        a = split[0]
        b = min(split[1], a + max_records)
        split[0] = b
        if b >= split[1]:
            self._splits.pop(0)
        self._emitted += b - a
        fn = self._fn
        if fn is None:
            return list(range(a, b))
        return [fn(i) for i in range(a, b)]

    def poll_splits(self, max_records: int) -> list[tuple[Any, list[Any]]] | None:
        """A poll reads from one split, named by its end (ranges of a source never overlap)."""
        if not self._splits:
            return None
        end = self._splits[0][1]
        batch = self.poll(max_records)
        if batch is None:
            return None
        return [(end, batch)] if batch else []

    def active_splits(self) -> list[Any]:
        return [s[1] for s in self._splits]

    def snapshot(self) -> list[Any]:
        return [(s[0], s[1]) for s in self._splits]

    def next_poll_delay_s(self) -> float:
        return _RATE_BATCH_S if self._rate is not None else 0.0


class NumberSequenceSource(Source):
    """The numbers ``start..end`` inclusive (Flink's ``fromSequence``), split evenly over subtasks."""

    def __init__(self, start: int, end: int) -> None:
        if end < start:
            raise ValueError(f"from_sequence: end ({end}) must be >= start ({start})")
        self.start = start
        self.end = end

    def create_reader(self, ctx: SourceReaderContext, restored: list[Any] | None) -> SourceReader:
        if restored is not None:
            return _RangeReader([(int(a), int(b)) for a, b in restored], None, None)
        return _RangeReader([_even_range(self.start, self.end + 1, ctx.subtask_index, ctx.parallelism)], None, None)


class DataGeneratorSource(Source):
    """Records ``generator(i)`` for ``i`` in ``[0, count)`` (unbounded when count is None).

    ``records_per_second`` throttles the whole source (shared evenly by its subtasks).
    """

    def __init__(
        self, generator: Callable[[int], Any], count: int | None = None, records_per_second: float | None = None
    ) -> None:
        self.generator = generator
        self.count = count
        self.records_per_second = records_per_second
        self.bounded = count is not None

    def create_reader(self, ctx: SourceReaderContext, restored: list[Any] | None) -> SourceReader:
        rate = None if self.records_per_second is None else self.records_per_second / ctx.parallelism
        if restored is not None:
            return _RangeReader([(int(a), int(b)) for a, b in restored], self.generator, rate)
        end = self.count if self.count is not None else 2**62
        return _RangeReader([_even_range(0, end, ctx.subtask_index, ctx.parallelism)], self.generator, rate)


class CollectionSource(Source):
    """The given elements in order; non-parallel (parallelism 1), as Flink's ``fromCollection``."""

    max_parallelism = 1

    def __init__(self, elements: Sequence[Any]) -> None:
        self.elements = list(elements)

    def create_reader(self, ctx: SourceReaderContext, restored: list[Any] | None) -> SourceReader:
        offset = int(restored[0]) if restored else 0
        return _CollectionReader(self.elements, offset)


class _CollectionReader(SourceReader):
    def __init__(self, elements: list[Any], offset: int) -> None:
        self._elements = elements
        self._offset = offset

    def poll(self, max_records: int) -> list[Any] | None:
        if self._offset >= len(self._elements):
            return None
        batch = self._elements[self._offset : self._offset + max_records]
        self._offset += len(batch)
        return batch

    def snapshot(self) -> list[Any]:
        return [self._offset]


def stable_path_owner(path: str, parallelism: int) -> int:
    """Which subtask reads a file: a hash that is the same in every process and run."""
    return zlib.crc32(path.encode()) % parallelism


# -- legacy push-style sources ----------------------------------------------------------------------


class CheckpointLockLike(Protocol):
    """What ``SourceContext.get_checkpoint_lock()`` returns: a reentrant lock for ``with``."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool: ...

    def release(self) -> None: ...

    def __enter__(self) -> bool: ...

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None: ...


class SourceContext(ABC):
    """Given to ``SourceFunction.run``: emit records (and, for event time, timestamps and watermarks)."""

    @abstractmethod
    def collect(self, record: Any) -> None: ...

    def collect_with_timestamp(self, record: Any, timestamp_ms: int) -> None:
        """Emits a record with its event timestamp (epoch ms): ``ctx.timestamp()`` and event-time windows read it."""
        self.collect(record)

    def emit_watermark(self, watermark: Any) -> None:  # noqa: B027 - optional, as in Flink
        """Event time of this source reached ``watermark`` (ms, or an object with ``timestamp_ms``)."""

    def mark_as_temporarily_idle(self) -> None:  # noqa: B027 - optional, as in Flink
        """No records for a while: consumers stop waiting for this source's watermark until it emits again."""

    @abstractmethod
    def get_checkpoint_lock(self) -> CheckpointLockLike: ...


_EVENT_TIME_CALLS = frozenset({"collect_with_timestamp", "emit_watermark"})


def _code_names(code: Any) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _code_names(const)
    return names


def emits_timestamps(source: SourceFunction) -> bool:
    """Whether ``source`` gives its records timestamps (``SourceFunction.emits_timestamps``).

    Unless the class says so, whether its code calls ``collect_with_timestamp`` or ``emit_watermark``
    (the methods of its own classes, nested functions included).
    """
    declared = source.emits_timestamps
    if declared is not None:
        return bool(declared)
    for cls in type(source).__mro__:
        if cls.__module__ == __name__ or cls.__module__.startswith("streamjob.worker.api."):
            continue
        for member in vars(cls).values():
            code = getattr(getattr(member, "__func__", member), "__code__", None)
            if code is not None and _code_names(code) & _EVENT_TIME_CALLS:
                return True
    return False


class SourceFunction(Function):
    """Flink's legacy source: ``run`` loops emitting records until ``cancel`` is called.

    Recovery contract: implement ``CheckpointedFunction`` too and keep the position in operator
    state; emit and update the position inside ``with ctx.get_checkpoint_lock():`` so a snapshot
    never sees a record emitted but not yet counted.

    Event time: a source whose code calls ``ctx.collect_with_timestamp`` or ``ctx.emit_watermark``
    gives its records their timestamps (found when the pipeline is built; set ``emits_timestamps =
    True`` when those calls live outside the class). Its stream then carries them: ``ctx.timestamp()``
    downstream and event-time windows without an assigner, as in Flink.
    """

    parallel: bool = False
    emits_timestamps: bool | None = None
    """True: records carry the timestamps of ``collect_with_timestamp``; None: found from the class's code."""

    @abstractmethod
    def run(self, ctx: SourceContext) -> None: ...

    @abstractmethod
    def cancel(self) -> None: ...


class ParallelSourceFunction(SourceFunction):
    """A legacy source that runs with the operator's parallelism."""

    parallel = True


class RichSourceFunction(RichFunction, SourceFunction):
    """A legacy source with open/close and a runtime context (see ``RichFunction``)."""


class RichParallelSourceFunction(RichFunction, ParallelSourceFunction):
    """A parallel legacy source with open/close and a runtime context."""
