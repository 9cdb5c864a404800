"""The exactly-once Kafka sink's write-ahead log: one interval's records as one compact blob.

Layout (little-endian): ``b"SJKW"``, version byte, flags byte (1: keys present), record count
(u32); the value lengths (i32 each, -1 for None), the key lengths when flagged, then the value
bytes and the key bytes, concatenated. The overhead is 10 bytes per blob plus 4 bytes per record
(8 with keys): the checkpoint holds each record's own bytes, never a base64 or JSON copy.
Callers: ``kafka_sink`` (encode at the barrier; ``plain_values`` or ``decode`` when the transaction is produced).
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterator
from itertools import accumulate, pairwise, starmap

from streamjob.worker.connectors.kafka_common import KafkaConnectorError

_MAGIC = b"SJKW"
_HEADER = struct.Struct("<4sBBI")
_VERSION = 1
_KEYS = 1


def _lengths(items: list[bytes | None]) -> array[int]:
    try:
        found = array("i", map(len, items))  # type: ignore[arg-type]
    except TypeError:  # a None (tombstone value or absent key) among them
        found = array("i", [-1 if item is None else len(item) for item in items])
    if sys.byteorder != "little":
        found.byteswap()
    return found


def encode(values: list[bytes | None], keys: list[bytes | None] | None) -> bytes:
    """The blob of one interval's records (``keys`` None: no record has a key)."""
    header = _HEADER.pack(_MAGIC, _VERSION, _KEYS if keys is not None else 0, len(values))
    parts = [header, _lengths(values).tobytes()]
    if keys is not None:
        parts.append(_lengths(keys).tobytes())
    parts.append(_joined(values))
    if keys is not None:
        parts.append(_joined(keys))
    return b"".join(parts)


def _joined(items: list[bytes | None]) -> bytes:
    try:
        return b"".join(items)  # type: ignore[arg-type]
    except TypeError:  # a None among them (its length says -1, it has no bytes)
        return b"".join(item for item in items if item is not None)


def count(blob: bytes) -> int:
    """How many records a blob holds."""
    return int(_HEADER.unpack_from(blob)[3])


def plain_values(blob: bytes) -> Iterator[bytes] | None:
    """The values of a blob without keys and tombstones; None for any other blob (use ``decode``).

    Sliced by C-level iterators, no Python frame per record: about twice as fast as ``decode``.
    """
    _, _, flags, n = _check(blob)
    if flags & _KEYS:
        return None
    lengths = array("i")
    lengths.frombytes(blob[_HEADER.size : _HEADER.size + 4 * n])
    if sys.byteorder != "little":
        lengths.byteswap()
    if n and min(lengths) < 0:
        return None
    bounds = pairwise(accumulate(lengths, initial=_HEADER.size + 4 * n))
    return map(blob.__getitem__, starmap(slice, bounds))


def _check(blob: bytes) -> tuple[bytes, int, int, int]:
    if len(blob) < _HEADER.size:
        raise KafkaConnectorError("Kafka sink: a write-ahead log blob in the checkpoint is truncated")
    magic, version, flags, n = _HEADER.unpack_from(blob)
    if magic != _MAGIC or version != _VERSION:
        raise KafkaConnectorError(
            f"Kafka sink: the checkpoint holds a write-ahead log blob of an unknown format "
            f"({magic!r} v{version}); restore it with the streamjob version that wrote it"
        )
    return magic, version, flags, n


def decode(blob: bytes) -> Iterator[tuple[bytes | None, bytes | None]]:
    """The ``(key, value)`` pairs of a blob, in order."""
    _, _, flags, n = _check(blob)
    pos = _HEADER.size
    values = array("i")
    values.frombytes(blob[pos : pos + 4 * n])
    pos += 4 * n
    keys = array("i")
    if flags & _KEYS:
        keys.frombytes(blob[pos : pos + 4 * n])
        pos += 4 * n
    if sys.byteorder != "little":
        values.byteswap()
        keys.byteswap()
    key_pos = pos + sum(v for v in values if v > 0)
    for i, size in enumerate(values):
        value = None if size < 0 else blob[pos : pos + size]
        pos += max(size, 0)
        key = None
        if keys:
            ks = keys[i]
            if ks >= 0:
                key = blob[key_pos : key_pos + ks]
                key_pos += ks
        yield key, value
