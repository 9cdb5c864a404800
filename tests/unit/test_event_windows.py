"""Window semantics on real keyed backends: expected outputs derived by hand from Flink's documented rules.

Each test states the derivation next to the data: which windows a timestamp falls in, when the
watermark fires them, which records are late.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.api.watermarks import MAX_WATERMARK
from streamjob.worker.api.windows import (
    EventTimeSessionWindows,
    ProcessWindowFunction,
    SlidingEventTimeWindows,
    TimeWindow,
    TumblingEventTimeWindows,
    WindowAssigner,
    WindowContext,
)
from streamjob.worker.runtime.direct_windows import direct_window_core
from streamjob.worker.runtime.event_windows import WindowAggregation, WindowCore
from streamjob.worker.state.backend import KeyedStateBackend
from streamjob.worker.state.descriptors import MapStateDescriptor
from streamjob.worker.state.key_groups import key_group_for, key_group_range
from tests.unit.test_state_support import MemoryStorage
from tests.unit.test_state_support import make_backend as make_state_backend

pytestmark = pytest.mark.unit


@pytest.fixture(params=["hashmap", "rocksdb", "hashmap-general", "rocksdb-general"])
def kind(request: pytest.FixtureRequest) -> str:
    """hashmap, rocksdb: tumbling and sliding aggregations take the fast paths (``runtime/direct_windows.py``,
    ``runtime/rocks_windows.py``); *-general: a backend without direct tables or rows, so ``WindowCore``'s own path."""
    return str(request.param)


def make_backend(kind: str, tmp_path: Path, **options: Any) -> KeyedStateBackend:
    backend = make_state_backend(kind.removesuffix("-general"), tmp_path, **options)
    if kind.endswith("-general"):
        backend.direct_map = lambda descriptor: None  # type: ignore[method-assign]
        backend.direct_rows = lambda descriptor: None  # type: ignore[method-assign]
    return backend


class CountSum:
    """count and sum of the values (the bench's count-and-mean aggregate, without the division)."""

    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: tuple[str, int], acc: tuple[int, int]) -> tuple[int, int]:
        return (acc[0] + 1, acc[1] + value[1])

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0] + b[0], a[1] + b[1])

    def get_result(self, acc: tuple[int, int]) -> tuple[int, int]:
        return acc


class Tagged(ProcessWindowFunction[Any, Any, Any]):
    """(key, start, end, what the window holds)."""

    def process(self, key: Any, context: WindowContext, elements: Iterable[Any], out: Any) -> None:
        w = context.window()
        out.collect((key, w.start, w.end, list(elements)))


def core(
    backend: KeyedStateBackend,
    assigner: WindowAssigner,
    aggregation: WindowAggregation | None = None,
    fn: ProcessWindowFunction[Any, Any, Any] | str | None = "tagged",
    lateness: int = 0,
) -> WindowCore:
    return direct_window_core(
        backend,
        assigner,
        aggregation or WindowAggregation.of_aggregate(CountSum()),
        Tagged() if fn == "tagged" else fn,  # type: ignore[arg-type]
        allowed_lateness_ms=lateness,
        descriptor=MapStateDescriptor("__windows__"),
        now=lambda: 0,
    )


def feed(c: WindowCore, records: list[tuple[str, int]]) -> None:
    """The operator's batch path (records ``(key, ts)``), as one batch."""
    c.process_batch(list(records), lambda r: r[0], lambda r: r[1], 0)


def test_tumbling_boundaries_fire_at_max_timestamp_and_drop_late_records(kind: str, tmp_path: Path) -> None:
    # size 10: 0 and 9 are in [0, 10), 10 in [10, 20). The window [0, 10) fires when the watermark
    # reaches 9 (its max timestamp), not at 8. Then 5 is late (window 9 + 0 <= 9, 5 + 0 <= 9).
    c = core(make_backend(kind, tmp_path), TumblingEventTimeWindows.of(10))
    feed(c, [("a", 0), ("a", 9), ("a", 10), ("b", 3)])
    c.advance_watermark(8)
    assert c.take() == ([], [])
    c.advance_watermark(9)
    out, _ = c.take()
    assert sorted(out) == [("a", 0, 10, [(2, 9)]), ("b", 0, 10, [(1, 3)])]
    feed(c, [("a", 5)])
    assert c.take() == ([], [("a", 5)])
    c.advance_watermark(MAX_WATERMARK)  # end of input: everything left fires
    assert c.take() == ([("a", 10, 20, [(1, 10)])], [])


def test_allowed_lateness_fires_again_then_drops_to_side_output(kind: str, tmp_path: Path) -> None:
    # lateness 5: [0, 10) fires at watermark 9 with {1}; 3 arriving at watermark 9 is within the
    # lateness (9 + 5 > 9): added, and the window fires again at once with {1, 3}. At watermark 14
    # (9 + 5) the window's state is dropped; 4 then is late (14 <= 14 and 4 + 5 <= 14).
    c = core(make_backend(kind, tmp_path), TumblingEventTimeWindows.of(10), lateness=5)
    feed(c, [("a", 1)])
    c.advance_watermark(9)
    assert c.take() == ([("a", 0, 10, [(1, 1)])], [])
    feed(c, [("a", 3)])
    assert c.take() == ([("a", 0, 10, [(2, 4)])], [])
    c.advance_watermark(13)
    feed(c, [("a", 2)])  # still inside: 9 + 5 = 14 > 13
    assert c.take() == ([("a", 0, 10, [(3, 6)])], [])
    c.advance_watermark(14)
    assert c.take() == ([], [])
    feed(c, [("a", 4)])
    assert c.take() == ([], [("a", 4)])
    c.advance_watermark(MAX_WATERMARK)
    assert c.take() == ([], [])


def test_sliding_windows_overlap(kind: str, tmp_path: Path) -> None:
    # size 10, slide 5: 7 is in [5, 15) and [0, 10); 12 in [10, 20) and [5, 15); -3 in [-5, 5) and
    # [-10, 0). Firing order is by max timestamp: -1, 4, 9, 14, 19.
    assigner = SlidingEventTimeWindows.of(10, 5)
    assert assigner.assign_windows(7) == [TimeWindow(5, 15), TimeWindow(0, 10)]
    assert assigner.assign_windows(-3) == [TimeWindow(-5, 5), TimeWindow(-10, 0)]
    c = core(make_backend(kind, tmp_path), assigner, WindowAggregation.of_records())
    feed(c, [("a", 7), ("a", 12), ("a", -3)])
    c.advance_watermark(MAX_WATERMARK)
    out, late = c.take()
    assert late == []
    assert out == [
        ("a", -10, 0, [("a", -3)]),
        ("a", -5, 5, [("a", -3)]),
        ("a", 0, 10, [("a", 7)]),
        ("a", 5, 15, [("a", 7), ("a", 12)]),
        ("a", 10, 20, [("a", 12)]),
    ]


def test_session_windows_merge_across_out_of_order_arrivals(kind: str, tmp_path: Path) -> None:
    # gap 10: 0 -> [0, 10); 25 -> [25, 35); 12 -> [12, 22) touches neither. 15 -> [15, 25) overlaps
    # [12, 22) and touches [25, 35): one session [12, 35) holding 12, 15, 25. Watermark 9 fires
    # [0, 10). Then 5 -> [5, 15) is not late (14 > 9) and overlaps [12, 35): session [5, 35).
    c = core(make_backend(kind, tmp_path), EventTimeSessionWindows.with_gap(10))
    feed(c, [("a", 0), ("a", 25), ("a", 12), ("b", 40), ("a", 15)])
    c.advance_watermark(9)
    assert c.take() == ([("a", 0, 10, [(1, 0)])], [])
    feed(c, [("a", 5)])
    c.advance_watermark(MAX_WATERMARK)
    out, _ = c.take()
    assert out == [("a", 5, 35, [(4, 57)]), ("b", 40, 50, [(1, 40)])]


def test_reduce_keeps_one_value_per_window(kind: str, tmp_path: Path) -> None:
    c = core(
        make_backend(kind, tmp_path),
        TumblingEventTimeWindows.of(1000),
        WindowAggregation.of_reduce(lambda a, b: (a[0], a[1] + b[1])),
        None,
    )
    for i in range(500):
        c.process("k", ("k", i), i)
    c.flush()  # the RocksDB fast path writes its cached accumulators at a flush (before every snapshot)
    c.backend.set_current_key("k")
    assert c.state.items() == [((0, 1000), ("k", sum(range(500))))]  # the accumulator, not 500 records
    c.advance_watermark(999)
    assert c.take() == ([("k", sum(range(500)))], [])
    assert c.state.items() == []  # cleaned up at max timestamp + lateness 0


def test_window_state_and_timers_survive_a_rescale(kind: str, tmp_path: Path) -> None:
    # Two subtasks with open windows and pending timers are snapshotted and restored into one:
    # every window still fires, once, at its watermark.
    storage = MemoryStorage()
    handles = []
    keys = [f"k{i}" for i in range(40)]
    for index in range(2):
        backend = make_backend(kind, tmp_path, parallelism=2, index=index)
        c = core(backend, TumblingEventTimeWindows.of(10), WindowAggregation.of_aggregate(CountSum()), None)
        for i, key in enumerate(keys):
            if backend_owns(index, key):
                c.process(key, (key, i), 3)
                c.process(key, (key, 1), 13)
        c.flush()  # as the operator does before every snapshot (the RocksDB fast path caches accumulators)
        handles += backend.snapshot()(storage.writer(1))
        backend.close()
    restored = make_backend(kind, tmp_path, uid="op")
    restored.restore(handles, storage.reader())
    c = core(restored, TumblingEventTimeWindows.of(10), WindowAggregation.of_aggregate(CountSum()), None)
    c.advance_watermark(9)
    assert sorted(c.take()[0]) == sorted((1, i) for i in range(40))
    c.advance_watermark(MAX_WATERMARK)
    assert c.take()[0] == [(1, 1)] * 40


def backend_owns(index: int, key: str) -> bool:
    return key_group_for(key, 128) in range(*_inclusive(key_group_range(128, 2, index)))


def _inclusive(r: tuple[int, int]) -> tuple[int, int]:
    return (r[0], r[1] + 1)
