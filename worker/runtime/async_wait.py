"""The operator of async I/O (``AsyncDataStream``): requests as coroutines on the task's event loop.

Flink's AsyncWaitOperator, for a task whose chain is synchronous: ``process_batch`` starts one
coroutine per record (``AsyncFunction.async_invoke`` under the operator's timeout) while fewer than
``capacity`` are in flight, and keeps the others *waiting*; it returns nothing itself. The task
(``runtime/task.py``) asks for finished results between batches (``take_ready``), runs them through
the rest of its chain, and, while records wait, waits for a request to finish before it takes more
input (``wait_progress``): a slow service backpressures the task instead of growing memory. At
most ``capacity`` requests are in flight and at most one input slice waits.

Order: *ordered* emits results in input order; *unordered* as requests finish, but never across a
watermark: a watermark is queued behind the records before it and released, in order, once they
have all been emitted (``_Unordered``'s segments). The watermark the operator passes on is the
last one released.

Checkpoints: the records whose results were not emitted (in flight, finished but held back, or
waiting) are stored at every snapshot in operator list state (redistributed on rescale) and
invoked again after a restore, first of all. A barrier never overtakes a result: results emitted
before the snapshot are before the barrier, the others are re-issued after a restore.

A request that raises fails the task with the error; one that outlives the timeout is cancelled
and the function's ``timeout(value)`` gives its results (by default it raises ``AsyncTimeoutError``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from streamjob.worker.api.async_io import AsyncFunction
from streamjob.worker.api.watermarks import MIN_WATERMARK
from streamjob.worker.errors import PipelineError
from streamjob.worker.runtime.context import with_job_types
from streamjob.worker.runtime.operators import StreamOperator
from streamjob.worker.state.descriptors import ListStateDescriptor

log = logging.getLogger(__name__)

# A chunk of output: results of records, then (when not None) a watermark released after them.
Ready = tuple[list[Any], int | None]


class _Entry:
    """One record's request: its input, and its results or error once finished."""

    __slots__ = ("done", "error", "request", "result", "value")

    def __init__(self, value: Any) -> None:
        self.value = value
        self.done = False
        self.result: list[Any] = []
        self.error: BaseException | None = None
        self.request: asyncio.Task[None] | None = None


class _Watermark:
    """A watermark queued behind the records that arrived before it."""

    __slots__ = ("timestamp",)

    def __init__(self, timestamp: int) -> None:
        self.timestamp = timestamp


class _Ordered:
    """Entries and watermarks in arrival order; the finished head is emitted."""

    def __init__(self) -> None:
        self.items: deque[_Entry | _Watermark] = deque()

    def add(self, entry: _Entry) -> None:
        self.items.append(entry)

    def add_watermark(self, timestamp: int) -> None:
        self.items.append(_Watermark(timestamp))

    def finished(self, entry: _Entry) -> None:
        """Nothing to do: ``pop_ready`` walks the head."""

    def pop_ready(self) -> list[Ready]:
        items = self.items
        out: list[Ready] = []
        results: list[Any] = []
        while items:
            head = items[0]
            if type(head) is _Watermark:
                out.append((results, head.timestamp))
                results = []
            elif head.done:  # type: ignore[union-attr]
                results.extend(head.result)  # type: ignore[union-attr]
            else:
                break
            items.popleft()
        if results:
            out.append((results, None))
        return out

    def values(self) -> list[Any]:
        return [e.value for e in self.items if type(e) is _Entry]

    def entries(self) -> list[_Entry]:
        return [e for e in self.items if type(e) is _Entry]

    def __bool__(self) -> bool:
        return bool(self.items)


class _Segment:
    """Unordered: the records between two watermarks, and the watermark that closes them."""

    __slots__ = ("finished", "pending", "watermark")

    def __init__(self) -> None:
        self.pending: dict[int, _Entry] = {}  # insertion-ordered: snapshots keep arrival order
        self.finished: list[_Entry] = []
        self.watermark: int | None = None


class _Unordered:
    """Segments between watermarks; only the first segment emits, each result as soon as it finished."""

    def __init__(self) -> None:
        self.segments: deque[_Segment] = deque([_Segment()])

    def add(self, entry: _Entry) -> None:
        self.segments[-1].pending[id(entry)] = entry

    def add_watermark(self, timestamp: int) -> None:
        self.segments[-1].watermark = timestamp
        self.segments.append(_Segment())

    def finished(self, entry: _Entry) -> None:
        for segment in self.segments:
            if segment.pending.get(id(entry)) is entry:
                segment.finished.append(entry)
                return

    def pop_ready(self) -> list[Ready]:
        out: list[Ready] = []
        segments = self.segments
        while True:
            first = segments[0]
            results: list[Any] = []
            for entry in first.finished:
                del first.pending[id(entry)]
                results.extend(entry.result)
            first.finished = []
            if first.pending or first.watermark is None:
                if results:
                    out.append((results, None))
                return out
            out.append((results, first.watermark))
            segments.popleft()

    def entries(self) -> list[_Entry]:
        return [e for s in self.segments for e in s.pending.values()]

    def values(self) -> list[Any]:
        return [e.value for e in self.entries()]

    def __bool__(self) -> bool:
        return len(self.segments) > 1 or bool(self.segments[0].pending)


def _results(fn: Any, result: Any) -> list[Any]:
    if result is None:
        return []
    if isinstance(result, str | bytes | dict) or not hasattr(result, "__iter__"):
        raise PipelineError(
            f"{type(fn).__name__}.async_invoke must return a collection of results (e.g. [result]; [] for none), "
            f"got {type(result).__name__}"
        )
    return list(result)


class AsyncWaitOperator(StreamOperator):
    """Runs an ``AsyncFunction`` over its input with bounded concurrency (see the module docstring)."""

    fn: AsyncFunction[Any, Any]

    def open(self) -> None:
        super().open()
        options = self.setup.transformation.options
        self._capacity: int = options["async_capacity"]
        self._timeout_s: float = options["async_timeout_s"]
        self._queue: _Ordered | _Unordered = _Ordered() if options["async_ordered"] else _Unordered()
        self._in_flight = 0
        self._waiting: deque[Any] = deque()  # records (and _Watermarks) not issued yet: capacity was full
        self._last_watermark = MIN_WATERMARK  # the last queued or passed watermark
        self._released = MIN_WATERMARK  # the last watermark passed on
        self._failure: BaseException | None = None
        self.progress = asyncio.Event()  # set when a request finishes
        self._signal: Callable[[], None] = lambda: None
        descriptor = with_job_types(ListStateDescriptor("__async_in_flight__"), self.setup.info.job_types)
        self._state = self.op_state.get_list_state(descriptor)
        if self.restored:
            self._waiting.extend(self._state.get())
            if self._waiting:
                log.info("%s: re-issuing %d async requests of the restored checkpoint", self.uid, len(self._waiting))
        self._state.clear()
        self._issue_waiting()

    def set_signal(self, signal: Callable[[], None]) -> None:
        """``signal`` is called when a request finishes (it wakes the task)."""
        self._signal = signal

    # -- input ----------------------------------------------------------------------------------
    def process_batch(self, batch: list[Any]) -> list[Any]:
        if self._waiting:
            self._waiting.extend(batch)
            return []
        free = self._capacity - self._in_flight
        issue = self._issue
        for value in batch if len(batch) <= free else batch[:free]:
            issue(value)
        if len(batch) > free:
            self._waiting.extend(batch[free:])
        return []

    def on_watermark(self, watermark: int) -> tuple[int, list[Any]]:
        if watermark <= self._last_watermark:
            return self._released, []
        self._last_watermark = watermark
        if not self._queue and not self._waiting:
            self._released = watermark
            return watermark, []
        if self._waiting:
            self._waiting.append(_Watermark(watermark))
        else:
            self._queue.add_watermark(watermark)
        return self._released, []

    def _issue(self, value: Any) -> None:
        entry = _Entry(value)
        self._queue.add(entry)
        self._in_flight += 1
        entry.request = asyncio.ensure_future(self._call(entry))

    def _issue_waiting(self) -> None:
        waiting = self._waiting
        while waiting and (self._in_flight < self._capacity or type(waiting[0]) is _Watermark):
            item = waiting.popleft()
            if type(item) is _Watermark:
                self._queue.add_watermark(item.timestamp)
            else:
                self._issue(item)

    async def _call(self, entry: _Entry) -> None:
        fn = self.fn
        result: Any
        try:
            try:
                async with asyncio.timeout(self._timeout_s) as deadline:
                    result = await fn.async_invoke(entry.value)
            except TimeoutError:
                if not deadline.expired():
                    raise
                result = fn.timeout(entry.value)
                if inspect.isawaitable(result):
                    result = await result
            entry.result = _results(fn, result)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # handed to the task, which fails with it
            entry.error = error
            if self._failure is None:
                self._failure = error
        entry.done = True
        self._in_flight -= 1
        self._queue.finished(entry)
        self.progress.set()
        self._signal()

    # -- output (called by the task) -------------------------------------------------------------
    def take_ready(self) -> list[Ready]:
        """The results (and watermarks) that may be emitted now, in order; issues waiting records.

        Raises the first error of a request: the task fails with it.
        """
        if self._failure is not None:
            raise self._failure
        ready = self._queue.pop_ready()
        for _, watermark in ready:
            if watermark is not None:
                self._released = watermark
        if self._waiting:
            self._issue_waiting()
        return ready

    def blocked(self) -> bool:
        """Records wait for capacity: the task must not take more input before they are issued."""
        return bool(self._waiting)

    def pending(self) -> bool:
        """Records or watermarks not emitted yet."""
        return bool(self._queue) or bool(self._waiting)

    def in_flight(self) -> int:
        """Requests started and not finished."""
        return self._in_flight

    # -- checkpoints and lifecycle ---------------------------------------------------------------
    def before_snapshot(self, checkpoint_id: int) -> None:
        waiting = [v for v in self._waiting if type(v) is not _Watermark]
        self._state.update(self._queue.values() + waiting)

    def close(self) -> None:
        try:
            for entry in self._queue.entries():
                if entry.request is not None and not entry.done:
                    entry.request.cancel()
        finally:
            super().close()
