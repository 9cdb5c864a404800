"""Fakes of the checkpoint coordinator's collaborators, type-checked against their Protocols.

``make lint`` runs mypy on this module and the tests using it, where the fakes go into the typed
``CoordinatorParts`` and ``CompletedCheckpointStore``: a fake that drifts from the interface the
coordinator really uses fails lint.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

from streamjob.worker.checkpoint.clock import Cancellable
from streamjob.worker.errors import StorageError
from streamjob.worker.protocol.events import Barrier
from streamjob.worker.snapshot.metadata import CheckpointMetadata
from streamjob.worker.storage.retention import CheckpointEntry, RetentionPlan

P = ParamSpec("P")
T = TypeVar("T")


class Log:
    """What the fakes saw, in order across all of them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def kinds(self, kind: str) -> list[Any]:
        return [value for k, value in self.events if k == kind]


class FakeTimer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Monotonic seconds and wall milliseconds that move only in ``advance``, which fires due timers."""

    def __init__(self, start_s: float = 1000.0) -> None:
        self.now_s = start_s
        self._timers: list[tuple[float, int, FakeTimer, Callable[[], None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self.now_s

    def now_ms(self) -> int:
        return int(self.now_s * 1000)

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Cancellable:
        timer = FakeTimer()
        heapq.heappush(self._timers, (self.now_s + max(0.0, delay_s), next(self._order), timer, callback))
        return timer

    def advance(self, seconds: float) -> None:
        """Moves time forward, running every timer that falls due on the way, in time order."""
        until = self.now_s + seconds
        while self._timers and self._timers[0][0] <= until:
            due, _, timer, callback = heapq.heappop(self._timers)
            self.now_s = max(self.now_s, due)
            if not timer.cancelled:
                callback()
        self.now_s = until

    def pending_timers(self) -> list[float]:
        """When the timers not cancelled are due, soonest first."""
        return sorted(due for due, _, timer, _ in self._timers if not timer.cancelled)


class FakeGateway:
    def __init__(self, log: Log) -> None:
        self.log = log
        self.barriers: list[Barrier] = []

    def trigger(self, barrier: Barrier) -> None:
        self.barriers.append(barrier)
        self.log.events.append(("trigger", barrier.id))

    def notify_complete(self, checkpoint_id: int) -> None:
        self.log.events.append(("notify", checkpoint_id))

    def notify_aborted(self, checkpoint_id: int) -> None:
        self.log.events.append(("abort", checkpoint_id))


class FakeStorage:
    """The coordinator's storage view in memory: completed checkpoints, savepoints, discards, retention."""

    def __init__(self, log: Log, *, fail_metadata: bool = False, fail_deletes: bool = False) -> None:
        self.log = log
        self.fail_metadata = fail_metadata
        self.fail_deletes = fail_deletes
        self.metadata: dict[int, CheckpointMetadata] = {}
        self.checkpoints: dict[int, frozenset[str]] = {}
        """Completed checkpoints under the jobId and the shared files each references."""
        self.incomplete: set[int] = set()
        self.unreadable: set[int] = set()
        """Checkpoints whose ``_metadata`` cannot be read just now (listed as completed but invalid)."""

    def next_checkpoint_id(self, *, at_least: int = 1) -> int:
        return max([at_least, *(cid + 1 for cid in self.checkpoints), *(cid + 1 for cid in self.incomplete)])

    def new_savepoint_dir(self, target: str | None = None) -> str:
        return f"{target or 'file:///sp'}/savepoint-{len(self.metadata)}"

    def write_metadata(self, meta: CheckpointMetadata, *, savepoint_dir: str | None = None) -> str:
        if self.fail_metadata:
            raise StorageError("disk full")
        self.metadata[meta.checkpoint_id] = meta
        self.log.events.append(("metadata", meta.checkpoint_id))
        if savepoint_dir is not None:
            return f"{savepoint_dir}/_metadata"
        self.checkpoints[meta.checkpoint_id] = meta.referenced_shared_files()
        return f"file:///ck/chk-{meta.checkpoint_id}/_metadata"

    def discard(self, checkpoint_id: int, *, savepoint_dir: str | None = None) -> int:
        self.log.events.append(("discard", checkpoint_id))
        self.incomplete.discard(checkpoint_id)
        return 0

    def list_checkpoints(self) -> list[CheckpointEntry]:
        self.log.events.append(("list", sorted(self.checkpoints)))
        entries = [
            CheckpointEntry(cid, True, None if cid in self.unreadable else refs)
            for cid, refs in self.checkpoints.items()
        ]
        return sorted(
            [*entries, *(CheckpointEntry(cid, False) for cid in self.incomplete)], key=lambda e: e.checkpoint_id
        )

    def delete_checkpoints(self, plan: RetentionPlan) -> None:
        if self.fail_deletes:
            raise StorageError("access denied")
        self.log.events.append(("delete", plan.delete_ids))
        for cid in plan.delete_ids:
            self.checkpoints.pop(cid, None)
            self.incomplete.discard(cid)


class InlineExecutor(Executor):
    """Runs what is submitted at once, on the caller's thread: deterministic unit tests."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as err:
            future.set_exception(err)
        return future


async def until(what: str, condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Lets the event loop run until ``condition`` holds (an AssertionError after ``timeout`` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)
