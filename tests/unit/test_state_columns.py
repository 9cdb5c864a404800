"""Columnar snapshot encoding (state/columns.py) and the version 2 keyed file format (state/chunks.py)."""

from __future__ import annotations

import enum
import hashlib
from pathlib import Path
from typing import Any

import msgpack
import pytest

from streamjob.worker.errors import RestoreError
from streamjob.worker.snapshot.handles import StateHandle
from streamjob.worker.state.chunks import VERSION, decode_chunk
from streamjob.worker.state.columns import (
    BYTES,
    NATIVE,
    PLAIN,
    TUPLES,
    column_kind,
    decode_keys,
    decode_values,
    encode_keys,
    encode_values,
)
from streamjob.worker.state.descriptors import ReducingStateDescriptor, ValueStateDescriptor
from streamjob.worker.state.key_groups import key_group_for
from streamjob.worker.state.serializers import KEY_SERIALIZER, PickleSerializer, SafeSerializer
from tests.unit.test_state_support import MemoryStorage, make_backend

pytestmark = pytest.mark.unit

SAFE = SafeSerializer()


class Level(enum.IntEnum):
    LOW = 1


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([1, 2.5, "s", b"b", True, None, -(2**63)], PLAIN),
        ([(1, 2), ("a", 1.5, None), (), (b"x", False)], TUPLES),
        ([(1, (2, 3))], None),  # nested tuple: msgpack would return a list inside
        ([[1, 2]], None),
        ([Level.LOW], None),  # exact types only: an IntEnum is not an int
        ([(1,), 2], None),
    ],
)
def test_column_kind_admits_only_exact_plain_types(values: list[Any], kind: str | None) -> None:
    assert column_kind(values) == kind


@pytest.mark.parametrize(
    "values",
    [
        [1, 2.5, "s", b"b", True, None],
        [(1, 2), ("a", 1.5, None), (), (b"x", False)],
        [(1, (2, 3)), {1, 2}, [1, (2,)]],
        [2**70, 1],  # beyond 64 bits: the column falls back to serializer bytes
    ],
)
def test_value_columns_round_trip_with_exact_types(values: list[Any]) -> None:
    column = encode_values(values, SAFE, column_kind(values))
    decoded = decode_values(column, SAFE, "test")
    assert decoded == values
    assert [type(v) for v in decoded] == [type(v) for v in values]


def test_big_ints_and_undeclared_values_fall_back_to_serializer_bytes() -> None:
    assert encode_values([2**70], SAFE, column_kind([2**70]))[0] == BYTES
    pickled = encode_values([1, 2], PickleSerializer(), column_kind([1, 2]))
    assert pickled[0] == BYTES  # only serializers that opt in write msgpack columns


def test_key_columns() -> None:
    for keys in ([1, 2, 3], [("a", 1), ("b", 2)], ["x", (1, 2)]):
        column = encode_keys(keys, column_kind(keys))
        assert decode_keys(column, "test") == keys
    assert encode_keys(["x", (1, 2)], column_kind(["x", (1, 2)]))[0] == NATIVE


def test_a_msgpack_column_never_restores_into_a_pickle_state() -> None:
    column = encode_values([(1, 2)], SAFE, TUPLES)
    with pytest.raises(RestoreError, match="pickle"):
        decode_values(column, PickleSerializer(), "test")


def _one_subtask_snapshot(kind: str, tmp_path: Path, parallelism: int = 2) -> tuple[MemoryStorage, list[StateHandle]]:
    """The benchmark's state shape: int keys, ``(key, count)`` tuples in a reducing state."""
    storage = MemoryStorage()
    handles: list[StateHandle] = []
    for index in range(parallelism):
        backend = make_backend(kind, tmp_path, parallelism=parallelism, index=index)
        state = backend.get_state(ReducingStateDescriptor("sum", lambda a, b: (a[0], a[1] + b[1])))
        for key in range(2000):
            if key_group_for(key, 128) in range(*_range(parallelism, index)):
                backend.set_current_key(key)
                state.add((key, key * 3))
        handles.extend(backend.snapshot()(storage.writer(1)))
    return storage, handles


def _range(parallelism: int, index: int) -> tuple[int, int]:
    from streamjob.worker.state.key_groups import key_group_range

    low, high = key_group_range(128, parallelism, index)
    return low, high + 1


def test_full_snapshot_is_one_columnar_file_per_subtask(tmp_path: Path) -> None:
    storage, handles = _one_subtask_snapshot("hashmap", tmp_path)
    assert [(h.key_group_start, h.key_group_end) for h in handles] == [(0, 63), (64, 127)]
    _, _, groups, version = decode_chunk(storage.files[handles[0].path], "test", 128)
    assert version == VERSION == 2
    block = groups[0][1]["sum"]
    assert block[0] == "columns" and block[1][0] == PLAIN and block[2][0] == TUPLES


@pytest.mark.parametrize("kind", ["hashmap", "rocksdb"])
@pytest.mark.parametrize("new_p", [1, 3])
def test_columns_restore_rescaled_into_either_backend(tmp_path: Path, kind: str, new_p: int) -> None:
    storage, handles = _one_subtask_snapshot("hashmap", tmp_path)
    seen = 0
    for index in range(new_p):
        backend = make_backend(kind, tmp_path, parallelism=new_p, index=index, uid=f"r{index}")
        backend.restore(handles, storage.reader())
        state = backend.get_state(ReducingStateDescriptor("sum", lambda a, b: (a[0], a[1] + b[1])))
        for key in range(2000):
            if key_group_for(key, 128) in range(*_range(new_p, index)):
                backend.set_current_key(key)
                assert state.get() == (key, key * 3)  # a tuple again, not a list
                assert type(state.get()) is tuple
                seen += 1
    assert seen == 2000


def _version_1_file(rows: list[Any], states: dict[str, list[str]]) -> bytes:
    return KEY_SERIALIZER.encode(
        {
            "format": "streamjob-keyed",
            "version": 1,
            "max_parallelism": 128,
            "key_groups": [0, 127],
            "states": states,
            "groups": rows,
        }
    )


@pytest.mark.parametrize("kind", ["hashmap", "rocksdb"])
def test_version_1_files_still_restore(tmp_path: Path, kind: str) -> None:
    kg = key_group_for("k", 128)
    data = _version_1_file([[kg, {"v": [["k", SAFE.encode((1, "x"))]]}, [[5000, "k"]], []]], {"v": ["value", "safe"]})
    storage = MemoryStorage(files={"chk-1/old.keyed": data})
    handle = StateHandle(
        path="chk-1/old.keyed",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        key_group_start=0,
        key_group_end=127,
    )
    backend = make_backend(kind, tmp_path)
    backend.restore([handle], storage.reader())
    backend.set_current_key("k")
    assert backend.get_state(ValueStateDescriptor("v")).value() == (1, "x")
    assert backend.pop_due_timers(10**9) == [(5000, "k")]


def test_a_malformed_column_is_a_restore_error(tmp_path: Path) -> None:
    storage, handles = _one_subtask_snapshot("hashmap", tmp_path, parallelism=1)
    handle = handles[0]
    document = KEY_SERIALIZER.decode(storage.files[handle.path])
    block = document["groups"][0][1]["sum"]
    block[2] = [TUPLES, msgpack.packb([1, 2])]  # values that are not tuples
    data = KEY_SERIALIZER.encode(document)
    storage.files[handle.path] = data
    bad = handle.model_copy(update={"size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    backend = make_backend("hashmap", tmp_path, uid="bad")
    backend.restore([bad], storage.reader())
    with pytest.raises(RestoreError):
        backend.get_state(ReducingStateDescriptor("sum", lambda a, b: a))
