"""State time-to-live: Flink's ``StateTtlConfig`` and how a TTL state stores its values.

``StateTtlConfig.new_builder(Time.seconds(60)).set_update_type(...).set_state_visibility(...)
.cleanup_full_snapshot().build()`` makes a config; ``descriptor.enable_time_to_live(config)``
turns it on for any of the five keyed state kinds (operator state has no TTL, as in Flink).
Time is processing time, read from the keyed backend's clock (``KeyedBackendContext.clock``),
so tests inject a fake clock.

Stored form: a TTL state keeps ``TtlValue(value, last_access_ms)`` where a plain state keeps the
value (per element for list state, per entry value for map state); ``TtlSerializer`` encodes it
as a marker byte, the 8-byte timestamp and the user serializer's bytes. A value is expired once
``last_access_ms + ttl_ms <= now``. Because the stored bytes differ, state written without TTL
does not restore into a TTL descriptor or back (the serializer ids differ), as in Flink.

Cleanup: an expired value is never returned with ``NeverReturnExpired`` (and is removed when read);
``cleanup_full_snapshot()`` leaves expired values out of every snapshot (both backends);
``cleanup_incrementally(n, ...)`` checks ``n`` more entries of the state on every access and
removes the expired ones (both backends); ``cleanup_in_rocksdb_compact_filter(n)`` does the same
sweep on the RocksDB backend only (this runtime has no native compaction filter: the sweep stands
in for it). Neither background strategy is on unless configured (Flink turns them on by default).

Callers: job authors (through ``streamjob.worker.api``), ``descriptors.py`` (``enable_time_to_live``),
``ttl_states.py`` (the state wrappers) and the backends' snapshot code (full-snapshot cleanup).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, ClassVar, Final, NamedTuple

from streamjob.worker.errors import PipelineError, SerializationError
from streamjob.worker.state.serializers import Serializer

TS_BYTES: Final = 8
_PLAIN: Final = b"\x00"  # a map state's user key: no timestamp
_TIMED: Final = 1  # first byte of a TtlValue's encoding


class UpdateType(Enum):
    """When the last-access timestamp is refreshed (Flink's names)."""

    Disabled = "Disabled"
    OnCreateAndWrite = "OnCreateAndWrite"
    OnReadAndWrite = "OnReadAndWrite"


class StateVisibility(Enum):
    """Whether an expired value that is still stored may be returned (Flink's names)."""

    ReturnExpiredIfNotCleanedUp = "ReturnExpiredIfNotCleanedUp"
    NeverReturnExpired = "NeverReturnExpired"


class TtlTimeCharacteristic(Enum):
    """The time TTL is measured in: processing time only (as in Flink)."""

    ProcessingTime = "ProcessingTime"


@dataclass(frozen=True)
class CleanupStrategies:
    """Which background cleanups run (see the module docstring)."""

    full_snapshot: bool = False
    incremental_size: int = 0
    incremental_every_record: bool = False
    rocksdb_compact_filter_entries: int = 0

    def is_cleanup_in_background(self) -> bool:
        """Whether any strategy besides full-snapshot cleanup is on."""
        return bool(self.incremental_size or self.rocksdb_compact_filter_entries)


def _ttl_ms(ttl: Any) -> int:
    if isinstance(ttl, dt.timedelta):
        ms = ttl / dt.timedelta(milliseconds=1)
    elif isinstance(ttl, int | float) and not isinstance(ttl, bool):
        ms = float(ttl)
    else:
        raise PipelineError(
            f"StateTtlConfig.new_builder takes a duration in milliseconds (Time.seconds(n)) or a timedelta, got {ttl!r}"
        )
    if ms < 1:
        raise PipelineError(f"state TTL must be at least 1 ms, got {ttl!r}: use e.g. Time.seconds(60)")
    return int(ms)


_Update = UpdateType  # the getters' annotations (inside the class the names are its attributes)
_Visibility = StateVisibility
_Characteristic = TtlTimeCharacteristic


@dataclass(frozen=True)
class StateTtlConfig:
    """A state's time-to-live; build it with ``StateTtlConfig.new_builder(Time.seconds(n))``."""

    ttl_ms: int
    update_type: UpdateType = UpdateType.OnCreateAndWrite
    state_visibility: StateVisibility = StateVisibility.NeverReturnExpired
    ttl_time_characteristic: TtlTimeCharacteristic = TtlTimeCharacteristic.ProcessingTime
    cleanup_strategies: CleanupStrategies = CleanupStrategies()

    UpdateType: ClassVar[type[UpdateType]] = UpdateType
    StateVisibility: ClassVar[type[StateVisibility]] = StateVisibility
    TtlTimeCharacteristic: ClassVar[type[TtlTimeCharacteristic]] = TtlTimeCharacteristic

    @staticmethod
    def new_builder(ttl: int | float | dt.timedelta) -> StateTtlConfigBuilder:
        """A builder for a TTL of ``ttl`` milliseconds (``Time.seconds(n)``) or a timedelta."""
        return StateTtlConfigBuilder(StateTtlConfig(_ttl_ms(ttl)))

    def get_ttl(self) -> int:
        """The time-to-live in milliseconds."""
        return self.ttl_ms

    def get_update_type(self) -> _Update:
        """When the timestamp is refreshed."""
        return self.update_type

    def get_state_visibility(self) -> _Visibility:
        """Whether expired values may be returned."""
        return self.state_visibility

    def get_ttl_time_characteristic(self) -> _Characteristic:
        """Always processing time."""
        return self.ttl_time_characteristic

    def get_cleanup_strategies(self) -> CleanupStrategies:
        """The configured cleanups."""
        return self.cleanup_strategies

    def is_enabled(self) -> bool:
        """False for ``UpdateType.Disabled`` (then the state has no TTL)."""
        return self.update_type is not UpdateType.Disabled


class StateTtlConfigBuilder:
    """Flink's ``StateTtlConfig.Builder`` in Python style; every setter returns the builder."""

    def __init__(self, config: StateTtlConfig) -> None:
        self._config = config

    def _with(self, **changes: Any) -> StateTtlConfigBuilder:
        self._config = replace(self._config, **changes)
        return self

    def set_update_type(self, update_type: UpdateType) -> StateTtlConfigBuilder:
        """``UpdateType.OnCreateAndWrite`` (default) or ``UpdateType.OnReadAndWrite``."""
        if not isinstance(update_type, UpdateType):
            raise PipelineError(f"set_update_type takes a StateTtlConfig.UpdateType, got {update_type!r}")
        return self._with(update_type=update_type)

    def update_ttl_on_create_and_write(self) -> StateTtlConfigBuilder:
        """Refresh the timestamp on writes only."""
        return self.set_update_type(UpdateType.OnCreateAndWrite)

    def update_ttl_on_read_and_write(self) -> StateTtlConfigBuilder:
        """Refresh the timestamp on reads too."""
        return self.set_update_type(UpdateType.OnReadAndWrite)

    def set_state_visibility(self, visibility: StateVisibility) -> StateTtlConfigBuilder:
        """``StateVisibility.NeverReturnExpired`` (default) or ``ReturnExpiredIfNotCleanedUp``."""
        if not isinstance(visibility, StateVisibility):
            raise PipelineError(f"set_state_visibility takes a StateTtlConfig.StateVisibility, got {visibility!r}")
        return self._with(state_visibility=visibility)

    def never_return_expired(self) -> StateTtlConfigBuilder:
        """An expired value reads as absent."""
        return self.set_state_visibility(StateVisibility.NeverReturnExpired)

    def return_expired_if_not_cleaned_up(self) -> StateTtlConfigBuilder:
        """An expired value still stored may be returned."""
        return self.set_state_visibility(StateVisibility.ReturnExpiredIfNotCleanedUp)

    def set_ttl_time_characteristic(self, characteristic: TtlTimeCharacteristic) -> StateTtlConfigBuilder:
        """Only ``TtlTimeCharacteristic.ProcessingTime`` exists."""
        if characteristic is not TtlTimeCharacteristic.ProcessingTime:
            raise PipelineError("state TTL is measured in processing time only (TtlTimeCharacteristic.ProcessingTime)")
        return self

    def use_processing_time(self) -> StateTtlConfigBuilder:
        """Processing time (the only choice)."""
        return self

    def set_ttl(self, ttl: int | float | dt.timedelta) -> StateTtlConfigBuilder:
        """Changes the time-to-live."""
        return self._with(ttl_ms=_ttl_ms(ttl))

    def cleanup_full_snapshot(self) -> StateTtlConfigBuilder:
        """Leave expired values out of every snapshot."""
        return self._with(cleanup_strategies=replace(self._config.cleanup_strategies, full_snapshot=True))

    def cleanup_incrementally(
        self, cleanup_size: int, run_cleanup_for_every_record: bool = False
    ) -> StateTtlConfigBuilder:
        """Check ``cleanup_size`` more entries on every state access (hashmap backend).

        ``run_cleanup_for_every_record`` is accepted for compatibility: the sweep runs on every
        access of the state, which is every record that uses it.
        """
        if not isinstance(cleanup_size, int) or cleanup_size <= 0:
            raise PipelineError(f"cleanup_incrementally needs a cleanup_size > 0, got {cleanup_size!r}")
        strategies = replace(
            self._config.cleanup_strategies,
            incremental_size=cleanup_size,
            incremental_every_record=bool(run_cleanup_for_every_record),
        )
        return self._with(cleanup_strategies=strategies)

    def cleanup_in_rocksdb_compact_filter(
        self, query_time_after_num_entries: int, periodic_compaction_time: Any = None
    ) -> StateTtlConfigBuilder:
        """On RocksDB, check ``query_time_after_num_entries`` more rows of the state on every access.

        This runtime's RocksDB has no native compaction filter; the sweep removes the expired
        rows instead. ``periodic_compaction_time`` is accepted and ignored.
        """
        if not isinstance(query_time_after_num_entries, int) or query_time_after_num_entries <= 0:
            raise PipelineError(
                f"cleanup_in_rocksdb_compact_filter needs a number of entries > 0, got {query_time_after_num_entries!r}"
            )
        strategies = replace(
            self._config.cleanup_strategies, rocksdb_compact_filter_entries=query_time_after_num_entries
        )
        return self._with(cleanup_strategies=strategies)

    def disable_cleanup_in_background(self) -> StateTtlConfigBuilder:
        """Turns the incremental and RocksDB sweeps off (full-snapshot cleanup stays as set)."""
        strategies = replace(self._config.cleanup_strategies, incremental_size=0, rocksdb_compact_filter_entries=0)
        return self._with(cleanup_strategies=strategies)

    def build(self) -> StateTtlConfig:
        """The config."""
        return self._config


class TtlValue(NamedTuple):
    """A stored value and the time (epoch ms) it was last written (or read, with ``OnReadAndWrite``)."""

    value: Any
    ts: int


class TtlSerializer(Serializer):
    """Stores ``TtlValue`` as ``0x01 | ts (8 bytes) | user bytes``; map user keys as ``0x00 | user bytes``."""

    def __init__(self, inner: Serializer) -> None:
        self.inner = inner

    @property
    def serializer_id(self) -> str:
        """Differs from the user serializer's: TTL and non-TTL state never restore into each other."""
        return f"ttl+{self.inner.serializer_id}"

    def encode(self, value: Any) -> bytes:
        """The stored bytes of a ``TtlValue`` (or of a plain map key)."""
        if type(value) is TtlValue:
            return b"\x01" + value.ts.to_bytes(TS_BYTES, "big") + self.inner.encode(value.value)
        return _PLAIN + self.inner.encode(value)

    def decode(self, data: bytes) -> Any:
        """A ``TtlValue`` (or a plain map key)."""
        if not data:
            raise SerializationError("TTL state bytes are empty")
        if data[0] == _TIMED:
            if len(data) < 1 + TS_BYTES:
                raise SerializationError("TTL state bytes are truncated")
            return TtlValue(self.inner.decode(data[1 + TS_BYTES :]), int.from_bytes(data[1 : 1 + TS_BYTES], "big"))
        if data[0] == 0:
            return self.inner.decode(data[1:])
        raise SerializationError(f"TTL state bytes start with an unknown marker {data[0]}")


def stored_ts(data: bytes) -> int | None:
    """The timestamp in ``TtlSerializer`` bytes, without decoding the value (None for a plain key)."""
    if len(data) > TS_BYTES and data[0] == _TIMED:
        return int.from_bytes(data[1 : 1 + TS_BYTES], "big")
    return None


def alive_from(config: StateTtlConfig, now_ms: int) -> int:
    """The oldest timestamp that is not expired at ``now_ms``."""
    return now_ms - config.ttl_ms + 1


__all__ = [
    "CleanupStrategies",
    "StateTtlConfig",
    "StateTtlConfigBuilder",
    "StateVisibility",
    "TtlSerializer",
    "TtlTimeCharacteristic",
    "TtlValue",
    "UpdateType",
    "alive_from",
    "stored_ts",
]
