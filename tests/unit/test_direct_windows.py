"""The window operator's fast paths on the hashmap (``runtime/direct_windows.py``) and RocksDB
(``runtime/rocks_windows.py``) backends.

Each must be the general path's twin: the same outputs and late records for tumbling and sliding
windows with and without lateness, snapshots that keep the accumulators they were taken with
although the user's ``add`` mutates them in place, and windows and timers that rescale by key
group (2 -> 3, 3 -> 1) to exactly the output of a run without a restore.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.api.watermarks import MAX_WATERMARK
from streamjob.worker.api.windows import (
    EventTimeSessionWindows,
    SlidingEventTimeWindows,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
    WindowAssigner,
)
from streamjob.worker.runtime import rocks_windows
from streamjob.worker.runtime.direct_windows import DirectWindowCore, direct_window_core
from streamjob.worker.runtime.event_windows import WindowAggregation, WindowCore
from streamjob.worker.runtime.rocks_windows import RocksWindowCore
from streamjob.worker.state.backend import KeyedStateBackend
from streamjob.worker.state.descriptors import MapStateDescriptor
from streamjob.worker.state.key_groups import key_group_for, key_group_range
from tests.unit.test_state_support import MemoryStorage, make_backend

pytestmark = pytest.mark.unit

MAX_PARALLELISM = 128


class CountAndSum:
    """The bench's accumulator: a list changed in place by ``add``."""

    def create_accumulator(self) -> list[int]:
        return [0, 0]

    def add(self, value: tuple[str, int, int], acc: list[int]) -> list[int]:
        acc[0] += 1
        acc[1] += value[2]
        return acc

    def merge(self, a: list[int], b: list[int]) -> list[int]:
        return [a[0] + b[0], a[1] + b[1]]

    def get_result(self, acc: list[int]) -> tuple[int, int]:
        return (acc[0], acc[1])


def make(
    backend: KeyedStateBackend, assigner: WindowAssigner, lateness: int = 0, *, general: bool = False
) -> WindowCore:
    if general:
        backend.direct_map = lambda descriptor: None  # type: ignore[method-assign]
        backend.direct_rows = lambda descriptor: None  # type: ignore[method-assign]
    return direct_window_core(
        backend,
        assigner,
        WindowAggregation.of_aggregate(CountAndSum()),
        None,
        allowed_lateness_ms=lateness,
        descriptor=MapStateDescriptor("__windows__"),
        now=lambda: 0,
    )


def stream(n: int, keys: int = 7) -> list[tuple[str, int, int]]:
    """``(key, ts, value)``: timestamps rise 3 ms a record, out of order by up to 40 ms, every 97th by 200 more."""
    return [(f"k{i % keys}", 3 * i - (i * 7919) % 41 - (200 if i % 97 == 0 else 0), i) for i in range(n)]


def run(c: WindowCore, records: list[tuple[str, int, int]], batch: int = 16) -> tuple[list[Any], list[Any]]:
    """Feeds batches, the watermark trailing the largest timestamp by 10 ms (so some records are late)."""
    out: list[Any] = []
    late: list[Any] = []
    top = -(2**62)
    for start in range(0, len(records), batch):
        piece = records[start : start + batch]
        c.process_batch(piece, lambda r: r[0], lambda r: r[1], 0)
        top = max(top, *(r[1] for r in piece))
        c.advance_watermark(top - 10)
        o, lt = c.take()
        out += o
        late += lt
    c.advance_watermark(MAX_WATERMARK)
    o, lt = c.take()
    return out + o, late + lt


def test_the_fast_path_is_taken_only_where_it_applies(tmp_path: Path) -> None:
    assert isinstance(make(make_backend("hashmap", tmp_path), TumblingEventTimeWindows.of(10)), DirectWindowCore)
    assert isinstance(make(make_backend("hashmap", tmp_path), SlidingEventTimeWindows.of(10, 5)), DirectWindowCore)
    assert type(make(make_backend("rocksdb", tmp_path), TumblingEventTimeWindows.of(10))) is RocksWindowCore
    assert type(make(make_backend("rocksdb", tmp_path), SlidingEventTimeWindows.of(10, 5))) is RocksWindowCore
    assert type(make(make_backend("rocksdb", tmp_path), EventTimeSessionWindows.with_gap(10))) is WindowCore
    assert type(make(make_backend("hashmap", tmp_path), EventTimeSessionWindows.with_gap(10))) is WindowCore
    records = direct_window_core(
        make_backend("hashmap", tmp_path),
        TumblingEventTimeWindows.of(10),
        WindowAggregation.of_records(),
        None,
        allowed_lateness_ms=0,
        descriptor=MapStateDescriptor("__windows__"),
        now=lambda: 0,
    )
    assert type(records) is WindowCore  # process() alone keeps records, not accumulators


@pytest.mark.parametrize(
    ("assigner", "lateness"),
    [
        (TumblingEventTimeWindows.of(50), 0),
        (TumblingEventTimeWindows.of(50, 20), 25),
        (SlidingEventTimeWindows.of(60, 20), 0),
        (SlidingEventTimeWindows.of(60, 20), 15),
    ],
    ids=["tumbling", "tumbling-offset-lateness", "sliding", "sliding-lateness"],
)
def test_same_output_and_late_records_as_the_general_path(
    assigner: WindowAssigner, lateness: int, tmp_path: Path
) -> None:
    records = stream(3000)
    fast = run(make(make_backend("hashmap", tmp_path), assigner, lateness), records)
    general = run(make(make_backend("hashmap", tmp_path), assigner, lateness, general=True), records)
    rocksdb = run(make(make_backend("rocksdb", tmp_path), assigner, lateness), records)
    rocksdb_general = run(make(make_backend("rocksdb", tmp_path), assigner, lateness, general=True), records)
    assert fast == general == rocksdb == rocksdb_general
    assert fast[1], "the stream has late records"
    if isinstance(assigner, TumblingEventTimeWindows):  # each record not late is counted once (again per late firing)
        counted = sum(count for count, _ in fast[0])
        assert counted == len(records) - len(fast[1]) if not lateness else counted > len(records) - len(fast[1])


@pytest.mark.parametrize(
    ("assigner", "lateness"), [(TumblingEventTimeWindows.of(50, 20), 25), (SlidingEventTimeWindows.of(60, 20), 15)]
)
def test_rocksdb_write_back_cache_overflowing_keeps_the_output(
    assigner: WindowAssigner, lateness: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cache of 4 rows overflows on nearly every batch (23 keys): accumulators are flushed and
    # read back from RocksDB, fired from either place, and deleted from both.
    monkeypatch.setattr(rocks_windows, "_CACHE_LIMIT", 4)
    records = stream(2000, keys=23)
    c = make(make_backend("rocksdb", tmp_path), assigner, lateness)
    assert isinstance(c, RocksWindowCore)
    assert run(c, records) == run(make(make_backend("hashmap", tmp_path), assigner, lateness), records)
    assert not c._cache and not c._dirty  # every window fired and dropped by the final watermark
    c.backend.set_current_key("k1")
    assert c.state.items() == []


@pytest.mark.parametrize("kind", ["hashmap", "rocksdb"])
@pytest.mark.parametrize("lateness", [0, 25])
def test_results_carry_the_window_max_timestamp_as_on_the_general_path(
    lateness: int, kind: str, tmp_path: Path
) -> None:
    records = stream(1500)
    sides = []
    for general in (False, True):
        c = make(make_backend(kind, tmp_path), TumblingEventTimeWindows.of(50), lateness, general=general)
        c.stamp_results_with_window_end()
        sides.append(run(c, records))
    assert sides[0] == sides[1]
    # record 0 is at -200 (every 97th is 200 ms late): alone in [-200, -150), stamped -151, (count 1, sum 0)
    assert sides[0][0][0] == (-151, (1, 0))
    assert all(ts % 50 == 49 for ts, _ in sides[0][0])


@pytest.mark.parametrize("kind", ["hashmap", "rocksdb"])
def test_processing_time_windows_fire_by_the_clock(kind: str, tmp_path: Path) -> None:
    c = make(make_backend(kind, tmp_path), TumblingProcessingTimeWindows.of(100))
    assert isinstance(c, DirectWindowCore | RocksWindowCore)
    c.process_batch([("a", 0, 1), ("b", 0, 2), ("a", 0, 3)], lambda r: r[0], None, 150)
    c.fire_processing_time(198)
    assert c.take() == ([], [])
    c.fire_processing_time(199)
    assert c.take() == ([(2, 4), (1, 2)], [])
    assert c.backend.next_timer_time() is None


@pytest.mark.parametrize("kind", ["hashmap", "rocksdb"])
@pytest.mark.parametrize("incremental", [False, True])
def test_a_snapshot_keeps_the_accumulators_it_was_taken_with(kind: str, incremental: bool, tmp_path: Path) -> None:
    # Records added (and windows fired) between the barrier and the write must not reach the
    # snapshot, although CountAndSum.add mutates its list in place.
    storage = MemoryStorage()
    backend = make_backend(kind, tmp_path, incremental=incremental)
    c = make(backend, TumblingEventTimeWindows.of(100))
    before = [(f"k{i % 5}", i, 1) for i in range(150)]  # windows [0, 100) and [100, 200) of 5 keys
    c.process_batch(before, lambda r: r[0], lambda r: r[1], 0)
    c.flush()  # as the operator does before every snapshot (the RocksDB fast path caches accumulators)
    runner = backend.snapshot()
    c.process_batch([(f"k{i % 5}", 100 + i, 10) for i in range(50)], lambda r: r[0], lambda r: r[1], 0)
    c.advance_watermark(99)
    assert sorted(c.take()[0]) == [(20, 20)] * 5
    handles = runner(storage.writer(1))
    c.advance_watermark(MAX_WATERMARK)
    assert sorted(c.take()[0]) == [(20, 110)] * 5  # 10 before + 10 after the snapshot per key

    restored = make_backend(kind, tmp_path, incremental=incremental, uid="op")
    restored.restore(handles, storage.reader())
    again = make(restored, TumblingEventTimeWindows.of(100))
    again.advance_watermark(MAX_WATERMARK)
    assert sorted(again.take()[0]) == [(10, 10)] * 5 + [(20, 20)] * 5  # as they were at the snapshot


def _owner(key: str, parallelism: int) -> int:
    group = key_group_for(key, MAX_PARALLELISM)
    for index in range(parallelism):
        low, high = key_group_range(MAX_PARALLELISM, parallelism, index)
        if low <= group <= high:
            return index
    raise AssertionError(key)


@pytest.mark.parametrize("kind", ["hashmap", "rocksdb"])
@pytest.mark.parametrize(("old", "new"), [(2, 3), (3, 1)])
@pytest.mark.parametrize("assigner", [TumblingEventTimeWindows.of(50), SlidingEventTimeWindows.of(60, 20)])
def test_windows_and_timers_rescale_to_the_output_of_a_run_without_restore(
    old: int, new: int, assigner: WindowAssigner, kind: str, tmp_path: Path
) -> None:
    # A run at ``old`` parallelism is snapshotted halfway (windows open, their timers pending, some
    # fired), restored at ``new`` and run to the end: every window fires once with exactly the
    # records it holds in a run that never stopped.
    records = stream(2000, keys=23)
    half, rest = records[:1000], records[1000:]
    watermark = max(r[1] for r in half) - 30

    def select(r: Any) -> Any:
        return r[0]

    def timestamp(r: Any) -> int:
        return int(r[1])

    reference = make(make_backend("hashmap", tmp_path, uid="ref"), assigner, 10)
    reference.process_batch(half, select, timestamp, 0)
    reference.advance_watermark(watermark)
    reference.process_batch(rest, select, timestamp, 0)
    reference.advance_watermark(MAX_WATERMARK)
    expected = Counter(reference.take()[0])

    storage = MemoryStorage()
    handles = []
    out: Counter[Any] = Counter()
    for index in range(old):
        backend = make_backend(kind, tmp_path, parallelism=old, index=index)
        c = make(backend, assigner, 10)
        c.process_batch([r for r in half if _owner(r[0], old) == index], select, timestamp, 0)
        c.advance_watermark(watermark)
        out.update(c.take()[0])
        c.flush()
        handles += backend.snapshot()(storage.writer(1))
        backend.close()
    assert sum(out.values()) > 0, "some windows fired before the snapshot"
    for index in range(new):
        backend = make_backend(kind, tmp_path, parallelism=new, index=index)
        backend.restore(handles, storage.reader())
        c = make(backend, assigner, 10)
        c.watermark = watermark  # the operator restores the smallest old watermark (time_operators.py)
        c.process_batch([r for r in rest if _owner(r[0], new) == index], select, timestamp, 0)
        c.advance_watermark(MAX_WATERMARK)
        out.update(c.take()[0])
    assert out == expected
