"""Fakes for the task-side runtime's unit tests: a clock the test drives, in-memory storage, an inline executor.

Used by ``test_runtime_task.py``, ``test_subtask_checkpointer.py`` and ``test_barrier_overtaking.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from streamjob.worker.snapshot.handles import StateHandle
from streamjob.worker.storage.checkpoint_storage import WorkerStorageView

P = ParamSpec("P")
T = TypeVar("T")


class FakeClock:
    """A ``Clock`` that moves only when the test says so."""

    def __init__(self, wall_ms: int = 1_000_000) -> None:
        self.mono = 100.0
        self.wall_ms = wall_ms
        self.cpu = 0.0

    def monotonic(self) -> float:
        return self.mono

    def now_ms(self) -> int:
        return self.wall_ms

    def thread_time(self) -> float:
        return self.cpu

    def advance(self, seconds: float, *, cpu: float = 0.0) -> None:
        """Moves the monotonic and the wall clock by ``seconds``, the CPU clock by ``cpu``."""
        self.mono += seconds
        self.wall_ms += int(seconds * 1000)
        self.cpu += cpu


class InlineExecutor(Executor):
    """Runs a submitted call at once on the calling thread (a deterministic I/O "thread")."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as err:
            future.set_exception(err)
        return future


@dataclass
class FakeStorage:
    """A ``WorkerStorageView`` in memory; ``fail`` makes every write raise it."""

    files: dict[str, bytes] = field(default_factory=dict)
    flushed: list[str] = field(default_factory=list)
    fail: Exception | None = None

    @property
    def checkpoint_base_uri(self) -> str:
        return "memory://job"

    @property
    def local_disk(self) -> bool:
        return True

    def reader(self, base_uri: str) -> FakeReader:
        return FakeReader(self)

    def warm_up(self) -> None:
        pass

    def writer(
        self, checkpoint_id: int, operator_uid: str, subtask_index: int, *, savepoint_dir: str | None = None
    ) -> FakeWriter:
        return FakeWriter(self, checkpoint_id, f"chk-{checkpoint_id}/{operator_uid}/{subtask_index}")


@dataclass
class FakeWriter:
    storage: FakeStorage
    _checkpoint_id: int
    prefix: str

    @property
    def checkpoint_id(self) -> int:
        return self._checkpoint_id

    @property
    def is_savepoint(self) -> bool:
        return False

    def write(self, name: str, data: bytes, *, key_groups: tuple[int, int] | None = None) -> StateHandle:
        if self.storage.fail is not None:
            raise self.storage.fail
        path = f"{self.prefix}/{name}"
        self.storage.files[path] = data
        return StateHandle(path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest())

    def write_shared(self, name: str, data: bytes) -> StateHandle:
        return self.write(name, data)

    def shared_exists(self, name: str) -> bool:
        return False

    def flush(self) -> None:
        self.storage.flushed.append(self.prefix)


@dataclass
class FakeReader:
    storage: FakeStorage

    def read(self, handle: StateHandle) -> bytes:
        return self.storage.files[handle.path]


def _implements_the_worker_view(storage: FakeStorage) -> WorkerStorageView:
    return storage  # mypy proves the fake is a WorkerStorageView (``make lint`` type-checks this module)


def kinds(messages: list[Any]) -> list[str]:
    """The message types sent to the JobMaster, in order."""
    return [type(m).__name__ for m in messages]
