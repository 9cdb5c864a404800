"""The keyed snapshot file format: one file per chunk of contiguous key groups.

A file holds, for each key group of its range, every state's entries and the timers of that
group's keys, so a restore at any parallelism reads only the files overlapping its range and keeps
the key groups inside it. A full snapshot writes one file for the subtask's whole key-group range
(one write and one fsync instead of one per chunk); incremental snapshots write chunks on a
global grid, each as a chain of a full file and deltas of the keys changed since. Both keyed backends write
and read this one format, so a savepoint taken with one restores into the other.

Layout, version 2 (msgpack, keys encoded natively with tuple extension types or as columns,
values as the bytes of the state's serializer or as columns; nothing is decoded with a user
serializer until a descriptor registers)::

    {"format": "streamjob-keyed", "version": 2, "max_parallelism": n, "key_groups": [start, end],
     "states": {name: [kind, serializer_id]},
     "groups": [[key_group, {name: block}, processing_timers, event_timers], ...]}

    block = ["rows", [entry, ...]]
          | ["columns", keys_column, values_column, written_at_ms | None]   value, reducing, aggregating
                                                     (hashmap backend; columns: see ``columns.py``)
    timers = [[timestamp_ms, key], ...]

    entry = [key, value_bytes]                       value, reducing, aggregating
          | [key, value_bytes, written_at_ms]        value state with the former ``ttl=`` (read only)
          | [key, [element_bytes, ...]]              list
          | [key, [[user_key_bytes, value_bytes], ...]]   map

A state with a time-to-live (``ttl.py``) keeps its timestamps inside its value bytes; the
``written_at_ms`` forms are only read (files of the former ``ttl=`` value state, which restore into
no TTL state now: their serializer id differs).
Version 1 (still read) had ``{name: [entry, ...]}`` in place of ``{name: block}``.

Version 3 is a *delta* file of an incremental hashmap snapshot (full files stay version 2)::

    {..., "version": 3, "delta": true, "states": {name: [kind, serializer_id]},   every state it covers
     "groups": [[key_group, {name: block}, processing_timers, event_timers, replaced_keys], ...]}

A delta follows its chunk's base (and earlier deltas) in a checkpoint's handles; ``read_groups``
applies it: in each key group the ``replaced_keys`` lose their entries in the states the delta
covers and their timers, then the delta's entries and timers are added (a key deleted since the
base is replaced by nothing). ``compact`` bounds a chain: after ``MAX_DELTAS`` deltas, or once the
deltas weigh half the base, the chunk is written whole again.

Callers: the keyed backends (encode in the asynchronous part of a snapshot, decode on restore)
and ``incremental.py`` (content-addressed names of shared chunks).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from streamjob.worker.errors import CorruptStateError, RestoreError, SerializationError
from streamjob.worker.snapshot.handles import SnapshotReader, StateHandle
from streamjob.worker.state.columns import (
    BYTES,
    Column,
    check_values,
    column_items,
    column_of,
    decode_keys,
    value_bytes,
)
from streamjob.worker.state.key_groups import ranges_overlap
from streamjob.worker.state.serializers import KEY_SERIALIZER

FORMAT: Final = "streamjob-keyed"
VERSION: Final = 2
DELTA_VERSION: Final = 3
READABLE_VERSIONS: Final = (1, 2, 3)
MAX_DELTAS: Final = 32
ROWS: Final = "rows"
COLUMNS: Final = "columns"
TARGET_CHUNKS_PER_SUBTASK: Final = 8

Chunk = tuple[int, int]
Entry = list[Any]


def default_chunk_size(max_parallelism: int, parallelism: int) -> int:
    """Key groups per chunk: about 8 chunk files per subtask.

    Incremental snapshots write deltas of the changed keys per chunk (``compact``), so they need
    no finer grid: fewer chunks mean fewer files (and fsyncs) per checkpoint.
    """
    return max(1, max_parallelism // (parallelism * TARGET_CHUNKS_PER_SUBTASK))


def chunks_of(key_group_range: Chunk, chunk_size: int) -> list[Chunk]:
    """The chunks of a range on the global grid ``[c * size, (c + 1) * size - 1]``, clipped."""
    start, end = key_group_range
    out: list[Chunk] = []
    index = start // chunk_size
    while index * chunk_size <= end:
        out.append((max(start, index * chunk_size), min(end, (index + 1) * chunk_size - 1)))
        index += 1
    return out


def safe_uid(operator_uid: str) -> str:
    """A file-name-safe, collision-free rendering of an operator uid."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", operator_uid)[:60]
    if cleaned == operator_uid:
        return cleaned
    return f"{cleaned}-{hashlib.sha256(operator_uid.encode()).hexdigest()[:8]}"


def private_name(operator_uid: str, chunk: Chunk) -> str:
    """The name of a chunk file private to one checkpoint or savepoint."""
    return f"{safe_uid(operator_uid)}-kg{chunk[0]:05d}-{chunk[1]:05d}.keyed"


def shared_name(operator_uid: str, chunk: Chunk, data: bytes) -> str:
    """The content-addressed name of a shared (incremental) chunk file."""
    digest = hashlib.sha256(data).hexdigest()[:40]
    return f"{safe_uid(operator_uid)}-kg{chunk[0]:05d}-{chunk[1]:05d}-{digest}.keyed"


@dataclass(slots=True)
class ColumnData:
    """A state's entries in one key group as columns: keys decoded, values as stored (see ``columns.py``)."""

    keys: list[Any]
    values: Column
    written: list[int] | None = None


StateBlock = list[Entry] | ColumnData
"""A state's entries in one key group: rows (``Entry``) or columns."""


def column_block(keys: Column, values: Column, written: list[int] | None) -> list[Any]:
    """The encoded ``["columns", ...]`` block of a state in a key group."""
    return [COLUMNS, keys, values, written]


def block_rows(block: StateBlock, where: str) -> list[Entry]:
    """A block as rows of serializer bytes (columns re-encoded: for a backend that stores bytes per entry)."""
    if not isinstance(block, ColumnData):
        return block
    values = value_bytes(block.values, where)
    if len(values) != len(block.keys):
        raise RestoreError(f"{where}: {len(block.keys)} keys but {len(values)} values")
    if block.written is None:
        return [[key, value] for key, value in zip(block.keys, values, strict=True)]
    return [[key, value, at] for key, value, at in zip(block.keys, values, block.written, strict=True)]


@dataclass(slots=True)
class GroupData:
    """One key group's entries per state name (rows or encoded column blocks), and its timers."""

    states: dict[str, list[Entry]] = field(default_factory=dict)
    columns: dict[str, list[Any]] = field(default_factory=dict)
    timers: list[list[Any]] = field(default_factory=list)
    event_timers: list[list[Any]] = field(default_factory=list)


def encode_chunk(
    chunk: Chunk, max_parallelism: int, metas: dict[str, tuple[str, str]], groups: dict[int, GroupData]
) -> bytes | None:
    """The bytes of a chunk file, or None when the chunk holds nothing."""
    rows = []
    used: set[str] = set()
    for key_group in sorted(groups):
        group = groups[key_group]
        states: dict[str, list[Any]] = {name: [ROWS, entries] for name, entries in group.states.items() if entries}
        for name, block in group.columns.items():
            if name in states:
                raise SerializationError(f"state {name!r} has rows and columns in key group {key_group}")
            states[name] = block
        if not states and not group.timers and not group.event_timers:
            continue
        used.update(states)
        rows.append([key_group, states, group.timers, group.event_timers])
    if not rows:
        return None
    document = {
        "format": FORMAT,
        "version": VERSION,
        "max_parallelism": max_parallelism,
        "key_groups": [chunk[0], chunk[1]],
        "states": {name: list(metas[name]) for name in sorted(used)},
        "groups": rows,
    }
    return KEY_SERIALIZER.encode(document)


def encode_delta_chunk(
    chunk: Chunk,
    max_parallelism: int,
    metas: dict[str, tuple[str, str]],
    groups: dict[int, GroupData],
    replaced: dict[int, list[Any]],
) -> bytes:
    """The bytes of a delta file: the current entries and timers of the ``replaced`` keys per key group.

    ``metas``: every state the delta covers (a replaced key absent from one was deleted from it).
    """
    rows = []
    for key_group in sorted(replaced):
        group = groups.get(key_group) or GroupData()
        states: dict[str, list[Any]] = {name: [ROWS, entries] for name, entries in group.states.items() if entries}
        for name, block in group.columns.items():
            if name in states:
                raise SerializationError(f"state {name!r} has rows and columns in key group {key_group}")
            states[name] = block
        rows.append([key_group, states, group.timers, group.event_timers, replaced[key_group]])
    document = {
        "format": FORMAT,
        "version": DELTA_VERSION,
        "max_parallelism": max_parallelism,
        "key_groups": [chunk[0], chunk[1]],
        "delta": True,
        "states": {name: list(meta) for name, meta in sorted(metas.items())},
        "groups": rows,
    }
    return KEY_SERIALIZER.encode(document)


def compact(chain: Sequence[StateHandle], stagger: int = 0) -> bool:
    """Whether a chunk whose chain is ``chain`` (base first) must be written whole, not as a delta.

    Whole once its deltas weigh half its base (a restore reads at most 1.5 times the state) or
    after ``MAX_DELTAS`` deltas. ``stagger`` (0..3) lowers the count for some chunks, so that chunks
    changing at every checkpoint are not all written whole by the same one.
    """
    if not chain:
        return True
    deltas = chain[1:]
    return len(deltas) >= MAX_DELTAS - 4 * stagger or 2 * sum(h.size for h in deltas) > chain[0].size


@dataclass(slots=True)
class RestoredGroup:
    """A key group read from a chunk file: state metadata, entries and timers."""

    key_group: int
    metas: dict[str, tuple[str, str]]
    states: dict[str, StateBlock]
    timers: list[tuple[int, Any]]
    event_timers: list[tuple[int, Any]]


def decode_chunk(
    data: bytes, where: str, max_parallelism: int
) -> tuple[Chunk, dict[str, tuple[str, str]], list[Any], int]:
    """Parses a chunk file (and its format version); RestoreError when it is not one this version can read.

    A delta file (version 3) has five fields per group row, the last its replaced keys.
    """
    try:
        document = KEY_SERIALIZER.decode(data)
    except SerializationError as exc:
        raise CorruptStateError(f"keyed state file {where} is corrupted or not a state file: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CorruptStateError(f"keyed state file {where} is corrupted: it is not a streamjob keyed state file")
    version = document.get("version")
    if version not in READABLE_VERSIONS:
        raise RestoreError(
            f"keyed state file {where} has format version {version!r}; this streamjob reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    if document.get("max_parallelism") != max_parallelism:
        raise RestoreError(
            f"keyed state file {where} was written with max parallelism {document.get('max_parallelism')!r}, "
            f"but the job now has max parallelism {max_parallelism}; keyed state cannot move to a different "
            "max parallelism: restore with the old value"
        )
    start, end = document["key_groups"]
    metas = {name: (str(meta[0]), str(meta[1])) for name, meta in document["states"].items()}
    return (int(start), int(end)), metas, document["groups"], int(version)


def _block(raw: Any, version: int, where: str) -> StateBlock:
    """A state's entries in a key group as read: version 1 rows, or a version 2 block."""
    if version == 1:
        return list(raw)
    if not isinstance(raw, list):
        raise RestoreError(f"{where}: a state block is {type(raw).__name__}, not a list")
    tag = raw[0] if isinstance(raw, list) and raw else None
    if tag == ROWS and len(raw) == 2:
        return list(raw[1])
    if tag == COLUMNS and len(raw) == 4:
        _, keys, values, written = raw
        check_values(values, where)
        decoded = decode_keys(keys, where)
        if values[0] == BYTES and len(values[1]) != len(decoded):  # msgpack columns: checked when decoded
            raise RestoreError(f"{where}: a column block has {len(decoded)} keys but {len(values[1])} values")
        if written is not None and len(written) != len(decoded):
            raise RestoreError(f"{where}: a column block has {len(decoded)} keys but {len(written)} write times")
        return ColumnData(keys=decoded, values=values, written=None if written is None else list(written))
    raise RestoreError(f"{where}: unknown state block {str(raw)[:40]!r}")


def read_groups(
    handles: Sequence[StateHandle], reader: SnapshotReader, key_group_range: Chunk, max_parallelism: int
) -> Iterator[RestoredGroup]:
    """The key groups inside ``key_group_range`` from every handle that overlaps it.

    Handles of any old parallelism are accepted; a key group found in two full files is an
    error (the handles do not come from one consistent snapshot). A delta file is applied to the
    key groups of the files before it (module docstring); they are yielded once the next full
    file starts, so only one chunk's chain is held at a time.
    """
    seen: dict[int, str] = {}
    held: dict[int, RestoredGroup] = {}
    deltas: dict[int, list[Delta]] = {}
    low, high = key_group_range

    def flush() -> Iterator[RestoredGroup]:
        for key_group in sorted(held):
            base = held.pop(key_group)
            chain = deltas.pop(key_group, None)
            yield base if chain is None else apply_deltas(base, chain, seen[key_group])

    for handle in handles:
        start, end = handle.key_group_start, handle.key_group_end
        if start is not None and end is not None and not ranges_overlap((start, end), key_group_range):
            continue
        _, metas, rows, version = decode_chunk(reader.read(handle), handle.path, max_parallelism)
        if version != DELTA_VERSION:
            yield from flush()
        for row in rows:
            key_group, states, timers, event_timers = row[:4]
            if not low <= key_group <= high:
                continue
            group = RestoredGroup(
                key_group=key_group,
                metas={name: metas[name] for name in states},
                states={name: _block(raw, version, handle.path) for name, raw in states.items()},
                timers=[(int(ts), key) for ts, key in timers],
                event_timers=[(int(ts), key) for ts, key in event_timers],
            )
            if version == DELTA_VERSION and key_group in held:
                deltas.setdefault(key_group, []).append(Delta(group, frozenset(row[4]), frozenset(metas)))
                continue
            if key_group in seen:
                raise RestoreError(
                    f"key group {key_group} is in two state files ({seen[key_group]} and "
                    f"{handle.path}): the handles are not from one snapshot"
                )
            seen[key_group] = handle.path
            held[key_group] = group
    yield from flush()


@dataclass(frozen=True, slots=True)
class Delta:
    """A key group read from a delta file: its entries, the keys it replaces, the states it covers."""

    group: RestoredGroup
    replaced: frozenset[Any]
    covers: frozenset[str]


def apply_deltas(base: RestoredGroup, chain: Sequence[Delta], where: str) -> RestoredGroup:
    """``base`` with each delta of ``chain`` applied in order.

    A delta drops its replaced keys' entries (in the states it covers) and timers, then adds its own.
    """
    names = list(base.states)
    for delta in chain:
        names.extend(name for name in delta.group.states if name not in names)
    states: dict[str, StateBlock] = {}
    metas: dict[str, tuple[str, str]] = {}
    for name in names:
        block = _merge_state(name, base.states.get(name), chain, where)
        if block is not None:
            states[name] = block
            metas[name] = (
                next((d.group.metas[name] for d in reversed(chain) if name in d.group.metas), None) or base.metas[name]
            )
    timers, event_timers = list(base.timers), list(base.event_timers)
    for delta in chain:
        if delta.replaced:
            timers = [t for t in timers if t[1] not in delta.replaced]
            event_timers = [t for t in event_timers if t[1] not in delta.replaced]
        timers += delta.group.timers
        event_timers += delta.group.event_timers
    return RestoredGroup(base.key_group, metas, states, timers, event_timers)


def _merge_state(name: str, base: StateBlock | None, chain: Sequence[Delta], where: str) -> StateBlock | None:
    """One state's entries after the chain: columns stay one column when every part is alike, else rows."""
    parts = [base, *(d.group.states.get(name) for d in chain)]
    present = [p for p in parts if p is not None]
    first = present[0] if present else None
    columnar = isinstance(first, ColumnData) and all(
        isinstance(p, ColumnData) and p.values[0] == first.values[0] and (p.written is None) == (first.written is None)
        for p in present
    )
    table: dict[Any, Any] = {}

    def add(block: StateBlock) -> None:
        if columnar and isinstance(block, ColumnData):
            values = column_items(block.values, where)
            if len(values) != len(block.keys):
                raise RestoreError(f"{where}: {len(block.keys)} keys but {len(values)} values")
            if block.written is None:
                table.update(zip(block.keys, values, strict=True))
            else:
                table.update(zip(block.keys, zip(values, block.written, strict=True), strict=True))
        else:
            table.update((entry[0], entry) for entry in block_rows(block, where))

    if base is not None:
        add(base)
    for delta in chain:
        if delta.replaced and name in delta.covers:
            for key in delta.replaced:
                table.pop(key, None)
        block = delta.group.states.get(name)
        if block is not None:
            add(block)
    if not table:
        return None
    if not columnar or not isinstance(first, ColumnData):
        return list(table.values())
    if first.written is None:
        return ColumnData(keys=list(table), values=column_of(first.values[0], list(table.values()), where))
    pairs = list(table.values())
    return ColumnData(
        keys=list(table),
        values=column_of(first.values[0], [value for value, _ in pairs], where),
        written=[at for _, at in pairs],
    )


__all__ = [
    "COLUMNS",
    "ROWS",
    "Chunk",
    "ColumnData",
    "GroupData",
    "RestoredGroup",
    "chunks_of",
    "decode_chunk",
    "default_chunk_size",
    "encode_chunk",
    "encode_delta_chunk",
    "Delta",
    "apply_deltas",
    "compact",
    "DELTA_VERSION",
    "MAX_DELTAS",
    "private_name",
    "read_groups",
    "safe_uid",
    "shared_name",
    "StateBlock",
    "block_rows",
    "column_block",
]
