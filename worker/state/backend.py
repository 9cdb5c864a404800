"""The keyed state backend contract and its construction context (``factory`` builds one).

A keyed backend holds every keyed state and the processing- and event-time timers of one subtask of one
operator, for the keys of its key-group range. The runtime sets the current key before each
record and timer; states read and write the current key's values.

Recovery contract: ``snapshot()`` is called on the task thread when the barrier passes the
operator; it captures the state as of that instant (mutations made after it returns are not in
the snapshot) and returns a callable that encodes and writes it from a background thread.
``restore(handles, reader)`` accepts the handles of any number of old subtasks (any old
parallelism, same max parallelism) and keeps exactly the key groups of this backend's range:
across all new subtasks nothing is lost or duplicated. Restored state is decoded only when a
descriptor registers it, with that descriptor's serializer.

Callers: the runtime's keyed operators (``factory.create_keyed_backend`` at task start, ``restore``
before ``open``, ``snapshot`` at barriers, notifications after checkpoints).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from streamjob.worker.errors import ConfigError
from streamjob.worker.snapshot.handles import SnapshotReader, StateHandle
from streamjob.worker.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    ValueStateDescriptor,
)
from streamjob.worker.state.direct_map import DirectMap
from streamjob.worker.state.direct_rows import DirectRows
from streamjob.worker.state.key_groups import validate_max_parallelism
from streamjob.worker.state.primitives import (
    AggregatingState,
    ListState,
    MapState,
    ReducingState,
    State,
    ValueState,
)
from streamjob.worker.state.snapshot_runner import SnapshotRunner

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
IN = TypeVar("IN")
ACC = TypeVar("ACC")
OUT = TypeVar("OUT")

BackendKind = Literal["hashmap", "rocksdb"]


@dataclass(frozen=True)
class KeyedBackendContext:
    """Everything a keyed backend needs to know about its subtask.

    ``key_group_range`` is inclusive. ``key_groups_per_chunk`` (0 = about 8 chunk files per
    subtask, 32 when incremental) sets the granularity of snapshot files and of incremental
    uploads. ``clock``
    returns seconds (used by state TTL).
    """

    operator_uid: str
    subtask_index: int
    parallelism: int
    max_parallelism: int
    key_group_range: tuple[int, int]
    local_dir: Path
    incremental: bool = False
    key_groups_per_chunk: int = 0
    clock: Callable[[], float] = field(default=time.time, compare=False)

    def validate(self) -> None:
        """Raises ConfigError when the fields are inconsistent."""
        validate_max_parallelism(self.max_parallelism)
        start, end = self.key_group_range
        if not 0 <= start <= end < self.max_parallelism:
            raise ConfigError(
                f"operator {self.operator_uid!r}: key-group range {self.key_group_range} is not inside "
                f"[0, {self.max_parallelism - 1}]"
            )
        if not 0 <= self.subtask_index < self.parallelism <= self.max_parallelism:
            raise ConfigError(
                f"operator {self.operator_uid!r}: subtask {self.subtask_index} of parallelism "
                f"{self.parallelism} is invalid with max parallelism {self.max_parallelism}"
            )
        if self.key_groups_per_chunk < 0:
            raise ConfigError("key_groups_per_chunk must be >= 0")


class KeyedStateBackend(ABC):
    """Keyed state and processing-time timers of one subtask (see the module docstring)."""

    _key: Any
    """The current key (what ``set_current_key`` sets and every state reads)."""

    direct_key: bool = False
    """INTERNAL fast path: True if ``set_current_key`` does nothing but store ``_key``.

    Operators on the record path then assign ``backend._key = key`` (an attribute store instead of
    a Python call per record); a backend that does more when the key changes leaves it False.
    """

    @abstractmethod
    def set_current_key(self, key: Any) -> None:
        """Scopes every state of this backend to ``key`` (called per record; cheap)."""

    @property
    @abstractmethod
    def current_key(self) -> Any:
        """The key set last (None before the first record)."""

    @overload
    def get_state(self, descriptor: ValueStateDescriptor[T]) -> ValueState[T]: ...
    @overload
    def get_state(self, descriptor: ListStateDescriptor[T]) -> ListState[T]: ...
    @overload
    def get_state(self, descriptor: MapStateDescriptor[K, V]) -> MapState[K, V]: ...
    @overload
    def get_state(self, descriptor: ReducingStateDescriptor[T]) -> ReducingState[T]: ...
    @overload
    def get_state(self, descriptor: AggregatingStateDescriptor[IN, ACC, OUT]) -> AggregatingState[IN, OUT]: ...
    @overload
    def get_state(self, descriptor: StateDescriptor) -> State: ...
    def get_state(self, descriptor: StateDescriptor) -> State:
        """The state of ``descriptor.name`` (the same object for the same name)."""
        return self._get_state(descriptor)

    @abstractmethod
    def _get_state(self, descriptor: StateDescriptor) -> State: ...

    def keys(self, descriptor: StateDescriptor) -> list[Any]:
        """Every key of this backend that has a value in ``descriptor``'s state (registering it).

        For ``KeyedBroadcastProcessFunction``'s ``apply_to_keyed_state``: a scan, not for the record path.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot list keys")

    @abstractmethod
    def get_value_accessors(
        self, descriptor: StateDescriptor, *, mutable_values: bool = False
    ) -> tuple[Callable[[Any], Any], Callable[[Any, Any], None]]:
        """INTERNAL fast path: ``(get(key) -> stored value | None, put(key, value))``.

        For value, reducing and aggregating states; bypasses the current key and the default.
        On the hashmap backend (without incremental snapshots or TTL) these are bound methods
        of the state's dict, so a record costs one dict operation; the caller must then never
        mutate a value returned by ``get`` in place (a snapshot being written may share it).
        ``mutable_values=True`` makes ``get`` copy-on-write instead (a closure, slightly slower):
        use it when user functions may mutate the value they are given.
        """

    def direct_map(self, descriptor: MapStateDescriptor[Any, Any]) -> DirectMap | None:
        """INTERNAL fast path: the map state's table for dict access by key (``state/direct_map.py``).

        Registers the state. None when the backend keeps no such table (RocksDB, a state with a
        time-to-live): use the state's methods then.
        """
        return None

    def direct_rows(self, descriptor: MapStateDescriptor[Any, Any]) -> DirectRows | None:
        """INTERNAL fast path: the map state's RocksDB rows for access with prebuilt bytes (``state/direct_rows.py``).

        Registers the state. None when the backend keeps no such rows (hashmap, a state with a
        time-to-live): use the state's methods then.
        """
        return None

    def timer_registrar(self, *, event_time: bool) -> Callable[[int, Any], None]:
        """INTERNAL: ``register(timestamp, key)`` of a timer of any key, without setting the current key."""
        register = self.register_event_time_timer if event_time else self.register_processing_time_timer

        def register_for(timestamp_ms: int, key: Any) -> None:
            previous = self.current_key
            self.set_current_key(key)
            register(timestamp_ms)
            self.set_current_key(previous)

        return register_for

    @abstractmethod
    def register_processing_time_timer(self, timestamp_ms: int) -> None:
        """Registers a timer for the current key (deduplicated per ``(timestamp, key)``)."""

    @abstractmethod
    def delete_processing_time_timer(self, timestamp_ms: int) -> None:
        """Deletes the current key's timer at ``timestamp_ms`` if registered."""

    @abstractmethod
    def next_timer_time(self) -> int | None:
        """The earliest registered timer's timestamp, or None."""

    @abstractmethod
    def pop_due_timers(self, now_ms: int) -> list[tuple[int, Any]]:
        """Removes and returns the ``(timestamp, key)`` timers due at ``now_ms``, in time order."""

    @abstractmethod
    def register_event_time_timer(self, timestamp_ms: int) -> None:
        """Registers an event-time timer for the current key (fires once the watermark reaches it)."""

    @abstractmethod
    def delete_event_time_timer(self, timestamp_ms: int) -> None:
        """Deletes the current key's event-time timer at ``timestamp_ms`` if registered."""

    @abstractmethod
    def next_event_timer_time(self) -> int | None:
        """The earliest registered event-time timer's timestamp, or None."""

    @abstractmethod
    def pop_due_event_timers(self, watermark_ms: int) -> list[tuple[int, Any]]:
        """Removes and returns the event-time timers with ``timestamp <= watermark_ms``, in time order."""

    @abstractmethod
    def snapshot(self) -> SnapshotRunner[list[StateHandle]]:
        """Synchronous part of a snapshot; the returned runner prepares it (task thread) and writes it (any thread)."""

    @abstractmethod
    def restore(self, handles: Sequence[StateHandle], reader: SnapshotReader) -> None:
        """Loads the key groups of this backend's range from the handles of any old subtasks."""

    @abstractmethod
    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` completed (advances the incremental base)."""

    @abstractmethod
    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` was aborted (its incremental changes count again)."""

    @property
    @abstractmethod
    def is_restored(self) -> bool:
        """Whether ``restore`` was called with at least one handle."""

    @abstractmethod
    def close(self) -> None:
        """Releases memory and local files; the backend is unusable afterwards."""


__all__ = [
    "BackendKind",
    "KeyedBackendContext",
    "KeyedStateBackend",
    "SnapshotRunner",
]
