"""Columns: many keys or state values of one key group encoded at once instead of one by one.

A full snapshot of 10,000 keys used to call the state's serializer once per value (and build a
list per entry): ~25 ms of Python under the GIL in the snapshot thread, competing with the task
thread for the same core. Most keyed state holds plain values — numbers, strings, flat tuples of
them (a running ``sum``, a count, a balance) — which msgpack encodes in one C call for a whole
list. A column is therefore one of::

    ["p", bin]          plain scalars (int, float, str, bytes, bool, None), packed as one msgpack array
    ["t", bin]          tuples of plain scalars, packed as an array of arrays (tuples again on decode)
    ["b", [bytes, ...]] one serializer-encoded bytes value per entry (anything else)
    ["n", [key, ...]]   keys only: the keys themselves, encoded by the snapshot document's serializer

Only exact types qualify (``type(v) is int``, not an ``IntEnum``), so decoding returns values of
the same types that ``SafeSerializer`` would; an int outside 64 bits makes the column fall back to
"b". Decoding "p" and "t" instantiates nothing but built-in scalars and tuples, and "b" is decoded
only by the serializer of a registered descriptor whose id matches the snapshot's, so the rule
"never unpickle from storage unless declared" holds for columns as it does for entries.

Callers: ``hashmap.py`` (encodes columns in the background part of a snapshot, decodes them on
restore), ``rocksdb.py`` (re-encodes restored columns to per-value bytes), ``chunks.py`` (reads
them from snapshot files).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from itertools import chain
from typing import Any, Final

import msgpack

from streamjob.worker.errors import CorruptStateError, RestoreError
from streamjob.worker.state.serializers import KEY_SERIALIZER, Serializer

PLAIN: Final = "p"
TUPLES: Final = "t"
BYTES: Final = "b"
NATIVE: Final = "n"

_PLAIN_TYPES: Final = frozenset({int, float, str, bytes, bool, type(None)})

Column = list[Any]


def column_kind(items: Collection[Any]) -> str | None:
    """``PLAIN`` or ``TUPLES`` when every item qualifies for a msgpack column, else None.

    The type checks run in C (``map(type, ...)``): about 20 ns per item.
    """
    types = set(map(type, items))
    if types <= _PLAIN_TYPES:
        return PLAIN
    if types == {tuple} and set(map(type, chain.from_iterable(items))) <= _PLAIN_TYPES:
        return TUPLES
    return None


_local = threading.local()  # one Packer per thread: Packers are not thread-safe, and a new one costs µs


def _pack(kind: str, items: Sequence[Any]) -> Column | None:
    try:
        packer = _local.packer
    except AttributeError:
        # Not strict: tuples become msgpack arrays (restored as tuples for a TUPLES column).
        packer = _local.packer = msgpack.Packer(use_bin_type=True)
    try:
        return [kind, packer.pack(items)]
    except (OverflowError, ValueError, TypeError):  # an int beyond 64 bits, a too-long value
        del _local.packer  # its buffer may hold a partial value
        return None


def encode_values(items: Sequence[Any], serializer: Serializer, kind: str | None) -> Column:
    """A column of ``items`` (``kind`` from ``column_kind``, only if the serializer allows columns)."""
    if kind is not None and serializer.plain_columns:
        packed = _pack(kind, items)
        if packed is not None:
            return packed
    return [BYTES, list(map(serializer.encode, items))]


def encode_keys(keys: Sequence[Any], kind: str | None) -> Column:
    """A column of keys; keys that no msgpack column fits stay native (``NATIVE``)."""
    if kind is not None:
        packed = _pack(kind, keys)
        if packed is not None:
            return packed
    return [NATIVE, list(keys)]


class _Unpacked(list[Any]):
    """A column's items already decoded and checked in memory (a merged chunk chain).

    Its own type, so that nothing read from a file can pass for it.
    """


def _unpack(column: Column, where: str) -> list[Any]:
    tag, payload = column[0], column[1]
    if type(payload) is _Unpacked:
        return payload
    if not isinstance(payload, bytes):
        raise RestoreError(f"{where}: a {tag!r} column holds {type(payload).__name__}, not bytes")
    try:
        items = msgpack.unpackb(payload, use_list=True, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types for malformed bytes
        raise CorruptStateError(f"{where}: a {tag!r} column is corrupted: {exc}") from exc
    if not isinstance(items, list):
        raise RestoreError(f"{where}: a {tag!r} column is not an array")
    if tag == TUPLES:
        if not set(map(type, items)) <= {list} or not set(map(type, chain.from_iterable(items))) <= _PLAIN_TYPES:
            raise RestoreError(f"{where}: a tuple column holds something other than tuples of plain values")
        return list(map(tuple, items))
    if not set(map(type, items)) <= _PLAIN_TYPES:
        raise RestoreError(f"{where}: a plain column holds something other than plain values")
    return items


def decode_keys(column: Column, where: str) -> list[Any]:
    """The keys of a column read from a snapshot file."""
    tag = column[0] if isinstance(column, list) and len(column) == 2 else None
    if tag == NATIVE:
        return list(column[1])
    if tag in (PLAIN, TUPLES):
        return _unpack(column, where)
    raise RestoreError(f"{where}: unknown key column {str(column)[:40]!r}")


def check_values(column: Column, where: str) -> None:
    """Raises RestoreError unless ``column`` is a value column this version can decode."""
    if not (isinstance(column, list) and len(column) == 2 and column[0] in (PLAIN, TUPLES, BYTES)):
        raise RestoreError(f"{where}: unknown value column {str(column)[:40]!r}")
    if column[0] == BYTES and not isinstance(column[1], list):
        raise RestoreError(f"{where}: a 'b' column is not a list")


def decode_values(column: Column, serializer: Serializer, where: str) -> list[Any]:
    """The values of a column; ``serializer`` (the registered descriptor's) decodes "b" columns.

    A msgpack column restores only into a state whose serializer writes such columns itself.
    """
    if column[0] == BYTES:
        return list(map(serializer.decode, column[1]))
    if not serializer.plain_columns:
        raise RestoreError(
            f"{where}: a {column[0]!r} value column cannot restore into a state serialized with "
            f"{serializer.serializer_id!r}"
        )
    return _unpack(column, where)


def value_bytes(column: Column, where: str) -> list[bytes]:
    """The values of a column as ``SafeSerializer`` bytes (for a backend that stores bytes per value)."""
    if column[0] == BYTES:
        return list(column[1])
    return list(map(KEY_SERIALIZER.encode, _unpack(column, where)))


def column_items(column: Column, where: str) -> list[Any]:
    """A value column's items as stored: plain values and tuples decoded, serializer bytes as they are."""
    if column[0] == BYTES:
        return list(column[1])
    return _unpack(column, where)


def column_of(tag: str, items: Sequence[Any], where: str) -> Column:
    """The column of ``items`` taken from columns tagged ``tag`` (``column_items``), kept decoded.

    Only for a restore: the decoded items are not packed again to be unpacked at once.
    """
    return [tag, list(items) if tag == BYTES else _Unpacked(items)]


__all__ = [
    "BYTES",
    "NATIVE",
    "PLAIN",
    "TUPLES",
    "Column",
    "check_values",
    "column_kind",
    "decode_keys",
    "decode_values",
    "encode_keys",
    "encode_values",
    "column_items",
    "column_of",
    "value_bytes",
]
