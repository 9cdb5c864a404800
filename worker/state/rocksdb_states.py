"""The rocksdb backend's state objects: rows in a local RocksDB, values in serialized form.

Row key layout (so that one key group is one contiguous range, and one key's map a sub-range)::

    key_group (2 bytes, big-endian) | state id (2 bytes) | len(key) (2 bytes) | key bytes [| user key bytes]

Key bytes are the safe encoding of the canonical key; map user keys are encoded (canonical
first) with the state's serializer. Values are the state's serializer bytes (list state: the
elements' bytes, each framed by a 4-byte length, so that ``add`` appends bytes without decoding
the list). Reads decode fresh objects: mutate them only to write them back. Every write
records the key's chunk as dirty when incremental snapshots are on.

Recovery contract: see ``primitives.py`` and ``backend.py``.

Callers: ``rocksdb.py`` (creates them in ``get_state``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, cast

from rocksdict import Rdict, ReadOptions

from streamjob.worker.errors import SerializationError
from streamjob.worker.state.descriptors import (
    AggregatingStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    ValueStateDescriptor,
)
from streamjob.worker.state.key_groups import canonical_key
from streamjob.worker.state.primitives import (
    AggregatingState,
    ListState,
    MapState,
    ReducingState,
    ValueState,
)

KeyEntry = tuple[bytes, bytes, Any]  # (key-group bytes, length-prefixed key bytes, the key as a dirty mark)


class RocksHolder(Protocol):
    """What a state needs from the rocksdb backend."""

    _key: Any
    _kc: dict[Any, KeyEntry]
    _dirty: set[Any] | None

    @property
    def operator_uid(self) -> str:
        """The operator whose state this is (named in errors)."""


def frame(data: bytes) -> bytes:
    """One list element's bytes, length-prefixed."""
    return len(data).to_bytes(4, "big") + data


def join_frames(items: Iterable[bytes]) -> bytes:
    """The stored form of a list of encoded elements."""
    return b"".join([len(item).to_bytes(4, "big") + item for item in items])


def split_frames(data: bytes) -> list[bytes]:
    """The encoded elements of a stored list."""
    out: list[bytes] = []
    offset, end = 0, len(data)
    while offset < end:
        size = int.from_bytes(data[offset : offset + 4], "big")
        offset += 4
        out.append(data[offset : offset + size])
        offset += size
    return out


def prefix_end(prefix: bytes) -> bytes:
    """The smallest byte string greater than every string starting with ``prefix``."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return b"\xff" * (len(prefix) + 1)
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def _named_encoder(descriptor: StateDescriptor, uid: str) -> Callable[[Any], bytes]:
    """The serializer's ``encode``, with the operator's and the state's names added to its errors."""
    encode, name = descriptor.serializer.encode, descriptor.name

    def encode_named(value: Any) -> bytes:
        try:
            return encode(value)
        except SerializationError as exc:
            raise SerializationError(f"operator {uid!r}: state {name!r}: {exc}") from exc

    return encode_named


class _RocksState:
    __slots__ = ("_b", "_db", "_dec", "_enc", "_sid")

    def __init__(self, backend: RocksHolder, db: Rdict, sid: bytes, descriptor: StateDescriptor) -> None:
        self._b = backend
        self._db = db
        self._sid = sid
        self._enc: Callable[[Any], bytes] = _named_encoder(descriptor, backend.operator_uid)
        self._dec: Callable[[bytes], Any] = descriptor.serializer.decode

    def _read_row(self) -> bytes:
        entry = self._b._kc[self._b._key]
        return entry[0] + self._sid + entry[1]

    def _write_row(self) -> bytes:
        backend = self._b
        entry = backend._kc[backend._key]
        if backend._dirty is not None:
            backend._dirty.add(entry[2])
        return entry[0] + self._sid + entry[1]

    def clear(self) -> None:
        """Removes the current key's value."""
        self._db.delete(self._write_row())


class RocksValueState(_RocksState, ValueState[Any]):
    """``ValueState`` as one row per key."""

    __slots__ = ("_default",)

    def __init__(self, backend: RocksHolder, db: Rdict, sid: bytes, descriptor: ValueStateDescriptor[Any]) -> None:
        super().__init__(backend, db, sid, descriptor)
        self._default = descriptor.default_value

    def value(self) -> Any:
        """The value or the default."""
        raw = self._db.get(self._read_row())
        return self._default() if raw is None else self._dec(raw)

    def update(self, value: Any) -> None:
        """Sets (None: clears) the value."""
        if value is None:
            self._db.delete(self._write_row())
        else:
            self._db.put(self._write_row(), self._enc(value))


class RocksListState(_RocksState, ListState[Any]):
    """``ListState`` as one row per key of length-framed encoded elements (append without decode)."""

    __slots__ = ()

    def get(self) -> list[Any]:
        """The elements."""
        raw = self._db.get(self._read_row())
        if raw is None:
            return []
        decode = self._dec
        return [decode(item) for item in split_frames(raw)]

    def add(self, value: Any) -> None:
        """Appends one element (appends its bytes to the row)."""
        row = self._write_row()
        raw = self._db.get(row)
        data = frame(self._enc(value))
        self._db.put(row, data if raw is None else raw + data)

    def add_all(self, values: Iterable[Any]) -> None:
        """Appends elements."""
        data = join_frames([self._enc(item) for item in values])
        if not data:
            return
        row = self._write_row()
        raw = self._db.get(row)
        self._db.put(row, data if raw is None else raw + data)

    def update(self, values: Iterable[Any]) -> None:
        """Replaces the elements."""
        data = join_frames([self._enc(item) for item in values])
        if data:
            self._db.put(self._write_row(), data)
        else:
            self._db.delete(self._write_row())


class RocksMapStateImpl(_RocksState, MapState[Any, Any]):
    """``MapState`` as one row per user key, under the current key's prefix."""

    __slots__ = ()

    def _rows(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        # A generator, so that ``options`` (which owns the upper bound) outlives the iteration.
        options = ReadOptions()
        options.set_iterate_upper_bound(prefix_end(prefix))
        yield from cast(Iterable[tuple[bytes, bytes]], self._db.items(from_key=prefix, read_opt=options))

    def get(self, key: Any) -> Any:
        """The value of a user key, or None."""
        raw = self._db.get(self._read_row() + self._enc(canonical_key(key)))
        return None if raw is None else self._dec(raw)

    def put(self, key: Any, value: Any) -> None:
        """Sets a user key."""
        self._db.put(self._write_row() + self._enc(canonical_key(key)), self._enc(value))

    def put_all(self, entries: dict[Any, Any] | Iterable[tuple[Any, Any]]) -> None:
        """Sets several user keys."""
        items = dict(entries)
        if not items:
            return
        prefix, enc = self._write_row(), self._enc
        for key, value in items.items():
            self._db.put(prefix + enc(canonical_key(key)), enc(value))

    def contains(self, key: Any) -> bool:
        """Whether the user key is present."""
        return self._db.get(self._read_row() + self._enc(canonical_key(key))) is not None

    def remove(self, key: Any) -> None:
        """Removes a user key."""
        self._db.delete(self._write_row() + self._enc(canonical_key(key)))

    def items(self) -> list[tuple[Any, Any]]:
        """The entries."""
        prefix = self._read_row()
        cut, dec = len(prefix), self._dec
        return [(dec(row[cut:]), dec(raw)) for row, raw in self._rows(prefix)]

    def keys(self) -> list[Any]:
        """The user keys."""
        prefix = self._read_row()
        cut, dec = len(prefix), self._dec
        return [dec(row[cut:]) for row, _ in self._rows(prefix)]

    def values(self) -> list[Any]:
        """The values."""
        return [self._dec(raw) for _, raw in self._rows(self._read_row())]

    def is_empty(self) -> bool:
        """Whether the current key has no entries."""
        return next(self._rows(self._read_row()), None) is None

    def clear(self) -> None:
        """Removes every entry of the current key."""
        prefix = self._write_row()
        self._db.delete_range(prefix, prefix_end(prefix))


class RocksReducingState(_RocksState, ReducingState[Any]):
    """``ReducingState`` as one row per key."""

    __slots__ = ("_reduce",)

    def __init__(self, backend: RocksHolder, db: Rdict, sid: bytes, descriptor: ReducingStateDescriptor[Any]) -> None:
        super().__init__(backend, db, sid, descriptor)
        self._reduce = descriptor.reduce

    def get(self) -> Any:
        """The reduced value, or None."""
        raw = self._db.get(self._read_row())
        return None if raw is None else self._dec(raw)

    def add(self, value: Any) -> None:
        """Folds a value in."""
        row = self._write_row()
        raw = self._db.get(row)
        self._db.put(row, self._enc(value if raw is None else self._reduce(self._dec(raw), value)))


class RocksAggregatingState(_RocksState, AggregatingState[Any, Any]):
    """``AggregatingState`` as one accumulator row per key."""

    __slots__ = ("_fn",)

    def __init__(
        self, backend: RocksHolder, db: Rdict, sid: bytes, descriptor: AggregatingStateDescriptor[Any, Any, Any]
    ) -> None:
        super().__init__(backend, db, sid, descriptor)
        self._fn = descriptor.aggregate_function

    def get(self) -> Any:
        """The result for the accumulator, or None."""
        raw = self._db.get(self._read_row())
        return None if raw is None else self._fn.get_result(self._dec(raw))

    def add(self, value: Any) -> None:
        """Adds a value to the accumulator."""
        row = self._write_row()
        raw = self._db.get(row)
        acc = self._fn.create_accumulator() if raw is None else self._dec(raw)
        self._db.put(row, self._enc(self._fn.add(value, acc)))


__all__ = [
    "frame",
    "join_frames",
    "split_frames",
    "KeyEntry",
    "RocksAggregatingState",
    "RocksHolder",
    "RocksListState",
    "RocksMapStateImpl",
    "RocksReducingState",
    "RocksValueState",
    "prefix_end",
]
